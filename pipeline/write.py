"""Write samples into WebDataset tar shards, byte-reproducibly, through Beam's FileSystems.

    python -c "from pipeline.write import plan_shards; help(plan_shards)"

Two steps keep memory flat whatever the dataset size: each conversation's samples go to a *part* (a small tar in
the work directory; its index rows and summary go to a JSON sidecar next to it); then every shard is assembled by
streaming its parts, in conversation-key order, into one tar. Member headers are fixed (mtime 0, owner
microturn, members sorted by name), so the same input and configuration give byte-identical shards.

Every file is written to a hidden temporary name unique to the attempt (`.NAME.<uuid>.partial`, in the same
directory) and renamed when complete: the rename is the commit, so a retried or duplicated Beam bundle never
leaves a half file nor shares a temporary file with another attempt; a failed attempt removes its temporary file.
On S3 an object is written once, under its own name (schemas.s3.ObjectWriter): an upload becomes the object only
when it completes, and a failed attempt aborts it, so the commit is the completion and no copy is made.
`MICROTURN_FAIL_ONCE=part,shard` with `MICROTURN_FAIL_ONCE_DIR=DIR` is a test-only fault: the first part (shard)
written anywhere fails half-way through with an OSError, once (a marker file in DIR records it); `shard:ENOSPC`
makes that error a full disk's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from apache_beam.io.filesystems import FileSystems

from pipeline.windows import Sample
from schemas.s3 import ObjectWriter, is_s3
from schemas.shard import FIXED_MTIME

OWNER = "microturn"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartInfo:
    """A finished part: one conversation's samples. Its index rows (without shard and offset) and its summary
    (duration, turn-taking, ... for the manifest) stay in its sidecar `path`.json (`part_contents`), so that the
    PCollections of parts stay small."""

    conversation_id: str
    conversation_key: str
    path: str
    size_bytes: int  # bytes its samples take in a shard: the tar members, without the archive's end blocks
    samples: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardInfo:
    """A shard just written, in the memory of its writer only (rows of one shard; see pipeline.manifest)."""

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


TAR_END_BYTES = 10_240
"""Upper bound of what a tar adds after its members (two zero blocks, padded to tarfile's 10 KiB record)."""
FAIL_ONCE, FAIL_ONCE_DIR = "MICROTURN_FAIL_ONCE", "MICROTURN_FAIL_ONCE_DIR"


def temp_name(path: str) -> str:
    """A hidden temporary name next to `path`, unique to this attempt; on S3 `path` itself (module docstring)."""
    if is_s3(path):
        return path
    directory, base = posixpath.split(path)
    return posixpath.join(directory, f".{base}.{uuid.uuid4().hex}.partial")


def create(tmp: str) -> Any:
    """A binary writer for the temporary name `tmp` (on S3: an upload that a failure inside ``with`` aborts)."""
    return ObjectWriter(tmp) if is_s3(tmp) else FileSystems.create(tmp)


def _commit(tmp: str, path: str) -> None:
    if tmp == path:  # S3: the completed upload is the object
        return
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def _discard(tmp: str) -> None:
    if is_s3(tmp):  # the failed upload was aborted; `tmp` is the object's own name, which may hold an older object
        return
    try:
        if FileSystems.exists(tmp):
            FileSystems.delete([tmp])
    except OSError:
        pass  # best effort: the job's end sweeps leftover temporary files


def commit_file(local_path: str, path: str) -> None:
    """Copy the local file `local_path` to `path` (any file system) through a temporary name and a rename."""
    tmp = temp_name(path)
    try:
        with open(local_path, "rb") as src, create(tmp) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        _commit(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def commit_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary name and a rename."""
    tmp = temp_name(path)
    try:
        with create(tmp) as f:
            f.write(data)
        _commit(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def _fail_once(what: str) -> None:
    """The test-only fault (module docstring): raise OSError the first time `what` gets here, in any process; an
    entry `what:ENOSPC` (any errno name) raises that error, as a full disk would."""
    faults = dict((entry.split(":", 1) + [""])[:2] for entry in os.environ.get(FAIL_ONCE, "").split(",") if entry)
    if what not in faults:
        return
    code = getattr(errno, faults[what], None) if faults[what] else None
    try:
        fd = os.open(os.path.join(os.environ[FAIL_ONCE_DIR], what), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    message = f"injected fault: {what} writer failed half-way ({FAIL_ONCE})"
    if isinstance(code, int):
        raise OSError(code, f"{os.strerror(code)}: {message}")
    raise OSError(message)


def write_json(path: str, obj: Any) -> None:
    commit_bytes(path, json.dumps(obj, sort_keys=True).encode("utf-8"))


def read_json(path: str) -> Any:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def write_part(
    samples: Iterable[Sample],
    *,
    path: str,
    conversation_id: str,
    conversation_key: str,
    summary: Mapping[str, Any],
) -> PartInfo:
    """Write one conversation's samples to `path` (temporary name, then rename) and its sidecar `path`.json with
    the index rows and `summary`. The sidecar is written last: a part counts as finished only when it exists."""
    tmp = temp_name(path)
    rows = []
    try:
        with create(tmp) as f:
            writer = _tar_writer(f)
            try:
                for i, sample in enumerate(samples):
                    writer.write({"__key__": sample.key, **sample.members})
                    rows.extend(dict(row) for row in sample.rows)  # one per perspective
                    if i == 0:
                        _fail_once("part")
                size = writer.tarstream.offset
            finally:
                writer.close()  # on failure too, before the file closes; the temporary file is then discarded
        _commit(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    info = PartInfo(
        conversation_id=conversation_id,
        conversation_key=conversation_key,
        path=path,
        size_bytes=size,
        samples=len(rows),
    )
    write_json(
        path + ".json",
        {
            "conversation_id": conversation_id,
            "conversation_key": conversation_key,
            "path": path,
            "size_bytes": size,
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
        path=obj["path"],
        size_bytes=obj["size_bytes"],
        samples=len(obj["rows"]),
    )


def part_contents(part: PartInfo) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(index rows without shard and offset, summary) of a part, from its sidecar."""
    obj = read_json(part.path + ".json")
    return obj["rows"], obj["summary"]


def plan_shards(parts: Iterable[PartInfo], target_bytes: int | None) -> list[list[PartInfo]]:
    """The shards of one bucket: its parts in conversation-key order, cut into consecutive runs whose tar stays
    within `target_bytes` (a run always takes at least one part, so a conversation bigger than the target gets a
    shard of its own). `target_bytes` None: one shard. Deterministic: it depends only on the parts."""
    ordered = sorted(parts, key=lambda p: p.conversation_key)
    if target_bytes is None:
        return [ordered] if ordered else []
    shards: list[list[PartInfo]] = []
    size = 0
    for part in ordered:
        if shards and size + part.size_bytes + TAR_END_BYTES <= target_bytes:
            shards[-1].append(part)
            size += part.size_bytes
        else:
            shards.append([part])
            size = part.size_bytes
    return shards


def parts_digest(parts: Iterable[PartInfo]) -> str:
    """sha256 of the sorted conversation keys and part sizes: what a shard was made from (resume checks it)."""
    ids = sorted(f"{p.conversation_key}:{p.size_bytes}" for p in parts)
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


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

    Returns the shard's sha256, size, index rows with byte offsets (the offset of each sample's first header) and
    its conversations' summaries.
    """
    ordered = sorted(parts, key=lambda p: p.conversation_key)
    tmp = temp_name(path)
    rows, summaries = [], []
    name = path.rsplit("/", 1)[-1]
    try:
        with create(tmp) as f:
            out = _HashingWriter(f)
            writer = _tar_writer(out)
            try:
                for i, part in enumerate(ordered):
                    part_rows, summary = part_contents(part)
                    summaries.append(summary)
                    by_key: dict[str, list[dict[str, Any]]] = {}
                    for r in part_rows:  # one row per perspective of a sample
                        by_key.setdefault(r["key"], []).append(r)
                    for key, members in _samples_of(part.path):
                        offset = writer.tarstream.offset
                        writer.write({"__key__": key, **members})
                        rows.extend({**r, "shard": name, "offset": offset} for r in by_key[key])
                    if i == 0:
                        _fail_once("shard")
            finally:
                writer.close()  # on failure too, before the file closes; the temporary file is then discarded
            digest, size = out.sha.hexdigest(), out.size
        _commit(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    return ShardInfo(name=name, sha256=digest, size_bytes=size, rows=tuple(rows), summaries=tuple(summaries))


def finished_shard(paths: Iterable[str], sidecar: str) -> dict[str, Any] | None:
    """The summary a shard's writer left in `sidecar` when the shard's files `paths` all exist, or None."""
    if not (FileSystems.exists(sidecar) and all(FileSystems.exists(p) for p in paths)):
        return None
    return read_json(sidecar)
