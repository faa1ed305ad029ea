"""Write samples into WebDataset tar shards, byte-reproducibly, through Beam's FileSystems.

    python -c "from pipeline.write import write_part; help(write_part)"

Two steps keep memory flat whatever the dataset size: each conversation's samples go to a *part* (a small tar in
the work directory, written to a temporary name and renamed when complete); then every shard is assembled by
streaming its parts, in conversation-key order, into one tar. Member headers are fixed (mtime 0, owner
microturn, members sorted by name), so the same input and configuration give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from apache_beam.io.filesystems import FileSystems

from pipeline.windows import Sample
from schemas.shard import FIXED_MTIME

OWNER = "microturn"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartInfo:
    """A finished part: one conversation's samples. `rows` are index rows without shard and offset."""

    conversation_id: str
    conversation_key: str
    shard: int
    path: str
    rows: tuple[Mapping[str, Any], ...]
    summary: Mapping[str, Any]  # conversation-level figures (duration, turn-taking) for the manifest


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardInfo:
    name: str
    sha256: str
    size_bytes: int
    rows: tuple[Mapping[str, Any], ...]  # index rows with shard and offset
    summaries: tuple[Mapping[str, Any], ...]


class _HashingWriter:
    """A write-only file wrapper that counts and hashes what passes through."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size


def _tar_writer(f: Any) -> Any:
    import webdataset as wds  # imported here: it loads torch, which the job's coordinating process never needs

    return wds.TarWriter(f, user=OWNER, group=OWNER, mode=0o444, encoder=False, mtime=FIXED_MTIME)


def _commit(tmp: str, path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".partial"
    with FileSystems.create(tmp) as f:
        f.write(json.dumps(obj, sort_keys=True).encode("utf-8"))
    _commit(tmp, path)


def read_json(path: str) -> Any:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def write_part(
    samples: Iterable[Sample],
    *,
    path: str,
    conversation_id: str,
    conversation_key: str,
    shard: int,
    summary: Mapping[str, Any],
) -> PartInfo:
    """Write one conversation's samples to `path` (temporary name, then rename) and its sidecar `path`.json.
    The sidecar is written last: a part counts as finished only when it exists."""
    tmp = path + ".partial"
    rows = []
    with FileSystems.create(tmp) as f:
        writer = _tar_writer(f)
        for sample in samples:
            writer.write({"__key__": sample.key, **sample.members})
            rows.append(dict(sample.row))
        writer.close()
    _commit(tmp, path)
    info = PartInfo(
        conversation_id=conversation_id,
        conversation_key=conversation_key,
        shard=shard,
        path=path,
        rows=tuple(rows),
        summary=dict(summary),
    )
    _write_json(
        path + ".json",
        {
            "conversation_id": conversation_id,
            "conversation_key": conversation_key,
            "shard": shard,
            "path": path,
            "rows": rows,
            "summary": summary,
        },
    )
    return info


def finished_part(path: str) -> PartInfo | None:
    """The PartInfo of a part finished by an earlier (interrupted) run, or None."""
    if not (FileSystems.exists(path + ".json") and FileSystems.exists(path)):
        return None
    obj = read_json(path + ".json")
    return PartInfo(
        conversation_id=obj["conversation_id"],
        conversation_key=obj["conversation_key"],
        shard=obj["shard"],
        path=obj["path"],
        rows=tuple(obj["rows"]),
        summary=obj["summary"],
    )


def _samples_of(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a tar, streamed."""
    with FileSystems.open(path, mime_type="application/x-tar", compression_type="uncompressed") as f:
        key, members = None, {}
        with tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                name_key, ext = member.name.split(".", 1)
                if key is not None and name_key != key:
                    yield key, members
                    members = {}
                key = name_key
                data = tar.extractfile(member)
                members[ext] = data.read() if data is not None else b""
        if key is not None:
            yield key, members


def write_shard(parts: Iterable[PartInfo], *, path: str) -> ShardInfo:
    """Assemble a shard from its parts (sorted by conversation key), streaming one sample at a time.

    Returns the shard's sha256, size and index rows with byte offsets (the offset of each sample's first header).
    """
    ordered = sorted(parts, key=lambda p: p.conversation_key)
    tmp = path + ".partial"
    rows = []
    name = path.rsplit("/", 1)[-1]
    with FileSystems.create(tmp) as f:
        out = _HashingWriter(f)
        writer = _tar_writer(out)
        for part in ordered:
            part_rows = {r["key"]: r for r in part.rows}
            for key, members in _samples_of(part.path):
                offset = writer.tarstream.offset
                writer.write({"__key__": key, **members})
                rows.append({**part_rows[key], "shard": name, "offset": offset})
        writer.close()
        digest, size = out.sha.hexdigest(), out.size
    _commit(tmp, path)
    info = ShardInfo(
        name=name, sha256=digest, size_bytes=size, rows=tuple(rows), summaries=tuple(p.summary for p in ordered)
    )
    return info


def shard_sidecar(info: ShardInfo) -> dict:
    return {
        "name": info.name,
        "sha256": info.sha256,
        "size_bytes": info.size_bytes,
        "rows": list(info.rows),
        "summaries": list(info.summaries),
    }


def save_shard_info(path: str, info: ShardInfo) -> None:
    _write_json(path, shard_sidecar(info))


def finished_shard(path: str, sidecar: str) -> ShardInfo | None:
    """The ShardInfo of a shard finished by an earlier run (its sidecar exists), or None."""
    if not (FileSystems.exists(sidecar) and FileSystems.exists(path)):
        return None
    obj = read_json(sidecar)
    return ShardInfo(
        name=obj["name"],
        sha256=obj["sha256"],
        size_bytes=obj["size_bytes"],
        rows=tuple(obj["rows"]),
        summaries=tuple(obj["summaries"]),
    )
