"""Check a written dataset against the contract (DESIGN.md §3, §5); `microturn validate DIR` prints the report.

    microturn validate demo-out/dataset

Checks: manifest present and readable; every shard's sha256 and size; index.parquet schema, unique keys, and
index rows == shard samples (same keys, shard, byte offsets); every sample's members, dtypes, shapes and code
ranges; meta agreeing with the arrays; per conversation and perspective, windows contiguous and the micro-turn
count equal to ceil(samples / 3200); counts (inputs = written + rejected) and the rejected list.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import storage
from schemas.shard import ARRAY_MEMBERS, REQUIRED_MEMBERS, decode_array, decode_json
from schemas.tables import INDEX_FILE, INDEX_SCHEMA, MANIFEST_FILE, REJECTED_FILE, REJECTED_SCHEMA
from schemas.units import DMEL_CHANNELS, DMEL_LEVELS, FRAMES_PER_MICROTURN, num_microturns


@dataclass
class Report:
    """Violations found (the first `limit` are kept with their text, all are counted)."""

    limit: int = 20
    violations: list[str] = field(default_factory=list)
    count: int = 0
    samples_checked: int = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.violations) < self.limit:
            self.violations.append(message)

    @property
    def ok(self) -> bool:
        return self.count == 0

    def render(self) -> str:
        if self.ok:
            return f"OK: {self.samples_checked} samples checked, no violations"
        lines = [f"FAILED: {self.count} violation(s); the first {len(self.violations)}:"]
        lines += [f"  - {v}" for v in self.violations]
        return "\n".join(lines)


def _sha256(path: str) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with storage.open_read(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _check_arrays(key: str, members: dict[str, bytes], report: Report) -> dict[str, Any] | None:
    try:
        meta = decode_json(members["meta.json"])
        words = decode_json(members["words.json"])
        arrays = {name: decode_array(members[name]) for name in ARRAY_MEMBERS if name in members}
    except (ValueError, KeyError) as e:
        report.add(f"{key}: a member does not decode: {e}")
        return None
    w = meta.get("window_microturns")
    for name, arr in arrays.items():
        dtype, ndim = ARRAY_MEMBERS[name]
        if arr.dtype != dtype or arr.ndim != ndim:
            report.add(f"{key}.{name}: dtype {arr.dtype} ndim {arr.ndim}, expected {np.dtype(dtype)} ndim {ndim}")
            continue
        if arr.shape[0] != w:
            report.add(f"{key}.{name}: {arr.shape[0]} micro-turns, meta says window_microturns={w}")
        if name.endswith("dmel.npy"):
            if arr.shape[1:] != (FRAMES_PER_MICROTURN, DMEL_CHANNELS):
                report.add(f"{key}.{name}: shape {arr.shape}, expected (W, 16, 80)")
            if arr.size and arr.max() >= DMEL_LEVELS:
                report.add(f"{key}.{name}: code {int(arr.max())} outside 0..15")
    mask = arrays.get("mask.npy")
    if mask is not None:
        n = int(mask.sum())
        if n != meta.get("num_microturns") or not (mask[:n] == 1).all() or (mask[n:] != 0).any():
            report.add(f"{key}: mask is not {meta.get('num_microturns')} ones followed by zeros")
    act = arrays.get("activity.npy")
    if act is not None and (act.shape[1:] != (3,) or (act < 0).any() or (act > 1).any()):
        report.add(f"{key}.activity.npy: shape {act.shape} or values outside [0, 1]")
    for stream in meta.get("streams", []):
        if f"{stream}.dmel.npy" not in members:
            report.add(f"{key}: meta lists stream {stream!r} but {stream}.dmel.npy is missing")
    index = arrays.get("frames.index.npy")
    if index is not None:
        mjpeg = members.get("frames.mjpeg", b"")
        stored = int((index[:, 1] > 0).sum())
        if index.shape[1:] != (2,) or (index[:, 0] + index[:, 1] > len(mjpeg)).any() or (index < 0).any():
            report.add(f"{key}.frames.index.npy: shape {index.shape} or offsets outside frames.mjpeg")
        elif stored != (meta.get("video") or {}).get("frames"):
            report.add(f"{key}: {stored} frames stored, meta.video says {(meta.get('video') or {}).get('frames')}")
        elif mask is not None and (index[:, 1][mask == 0] > 0).any():
            report.add(f"{key}: a frame is stored for a padding micro-turn")
    if any(not (0 <= wd.get("microturn", -1) < meta.get("num_microturns", 0)) for wd in words):
        report.add(f"{key}.words.json: a word's micro-turn is outside the window's real micro-turns")
    return meta


def _read_shard(path: str, report: Report) -> dict[str, tuple[int, dict[str, bytes]]]:
    """{key: (offset of its first header, {member: bytes})}."""
    samples: dict[str, tuple[int, dict[str, bytes]]] = {}
    try:
        with storage.open_read(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if "." not in member.name:
                    report.add(f"{posixpath.basename(path)}: member {member.name!r} has no extension")
                    continue
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member)
                payload = data.read() if data is not None else b""
                if key not in samples:
                    samples[key] = (member.offset, {})
                samples[key][1][ext] = payload
    except (tarfile.TarError, OSError) as e:
        report.add(f"{posixpath.basename(path)}: not a readable tar: {e}")
    return samples


def _read_table(path: str) -> pa.Table:
    with storage.open_read(path) as f:
        return pq.read_table(f)


def validate(dataset_dir: str, *, limit: int = 20) -> Report:
    """Validate the dataset in `dataset_dir` (a local directory or an s3:// prefix); see the module docstring."""
    report = Report(limit=limit)
    manifest_path = posixpath.join(dataset_dir, MANIFEST_FILE)
    try:
        manifest = storage.read_json(manifest_path)
    except (OSError, json.JSONDecodeError) as e:
        report.add(f"{MANIFEST_FILE}: cannot read: {e}")
        return report
    counts = manifest.get("counts", {})
    if counts.get("inputs") != counts.get("conversations_written", -1) + counts.get("rejected", -1):
        report.add(f"manifest counts: inputs {counts.get('inputs')} != conversations_written "
                   f"{counts.get('conversations_written')} + rejected {counts.get('rejected')}")
    try:
        index = _read_table(posixpath.join(dataset_dir, INDEX_FILE))
        rejected = _read_table(posixpath.join(dataset_dir, REJECTED_FILE))
    except (OSError, ValueError) as e:
        report.add(f"cannot read {INDEX_FILE} or {REJECTED_FILE}: {e}")
        return report
    if not index.schema.equals(INDEX_SCHEMA, check_metadata=False):
        report.add(f"{INDEX_FILE}: schema differs from schemas.tables.INDEX_SCHEMA")
    if not rejected.schema.equals(REJECTED_SCHEMA, check_metadata=False):
        report.add(f"{REJECTED_FILE}: schema differs from schemas.tables.REJECTED_SCHEMA")
    if rejected.num_rows != counts.get("rejected"):
        report.add(f"{REJECTED_FILE}: {rejected.num_rows} rows, manifest says {counts.get('rejected')}")
    rows = {r["key"]: r for r in index.to_pylist()}
    if len(rows) != index.num_rows:
        report.add(f"{INDEX_FILE}: keys are not unique")
    if len(rows) != counts.get("samples"):
        report.add(f"{INDEX_FILE}: {len(rows)} rows, manifest says {counts.get('samples')} samples")

    seen: set[str] = set()
    per_perspective: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for shard in manifest.get("shards", []):
        path = posixpath.join(dataset_dir, shard["name"])
        if not storage.exists(path):
            report.add(f"{shard['name']}: listed in the manifest but missing")
            continue
        digest, size = _sha256(path)
        if digest != shard["sha256"] or size != shard["size_bytes"]:
            report.add(f"{shard['name']}: sha256/size {digest[:12]}/{size} != manifest {shard['sha256'][:12]}/"
                       f"{shard['size_bytes']}")
        samples = _read_shard(path, report)
        if len(samples) != shard.get("samples"):
            report.add(f"{shard['name']}: {len(samples)} samples, manifest says {shard.get('samples')}")
        for key, (offset, members) in samples.items():
            report.samples_checked += 1
            seen.add(key)
            missing = [m for m in REQUIRED_MEMBERS if m not in members]
            if missing:
                report.add(f"{key}: missing members {missing}")
                continue
            row = rows.get(key)
            if row is None:
                report.add(f"{key}: in {shard['name']} but not in {INDEX_FILE}")
            elif row["shard"] != shard["name"] or row["offset"] != offset:
                report.add(f"{key}: index says {row['shard']}@{row['offset']}, found in {shard['name']}@{offset}")
            meta = _check_arrays(key, members, report)
            if meta is not None:
                if meta.get("key") != key:
                    report.add(f"{key}: meta.key is {meta.get('key')!r}")
                per_perspective[(meta["conversation_key"], meta["perspective"])].append(meta)
    for key in sorted(set(rows) - seen):
        report.add(f"{key}: in {INDEX_FILE} but in no shard")
    for (conv, persp), metas in sorted(per_perspective.items()):
        metas.sort(key=lambda m: m["window"])
        if [m["window"] for m in metas] != list(range(len(metas))):
            report.add(f"{conv}/{persp}: windows are not 0..{len(metas) - 1}")
        expected = num_microturns(metas[0]["conversation_samples"])
        got = sum(m["num_microturns"] for m in metas)
        if got != expected:
            report.add(f"{conv}/{persp}: {got} micro-turns, expected ceil(samples / 3200) = {expected}")
    return report
