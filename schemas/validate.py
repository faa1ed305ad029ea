"""Check a written dataset against the contract (DESIGN.md §3, §5); `microturn validate DIR` prints the report.

    microturn validate demo-out/dataset

Checks: manifest present and readable; every shard's sha256 and size, and (shards sized by shard_size_mb) no shard
over the target unless it holds a single conversation; the index (index/, one file per shard, schemas/tables.py):
one file per listed shard and none other, its schema, one row per (key, perspective), and each file's rows == its
shard's samples (same keys, shard, byte offsets); shards.txt listing the manifest's shards; the format version (another
one: re-run the job); every sample's members, dtypes and shapes (decoded through
schemas.sample.WindowSample.from_members), code ranges, and each perspective's view: meta agreeing with the arrays; per
conversation and perspective, windows contiguous and the micro-turn count equal to ceil(samples / 3200); counts
(inputs = written + rejected) and the rejected list; timed events (events.json: kind and side agree, targets only on
the output side, each in the micro-turn that holds its time) and their counts in the index.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from schemas import storage
from schemas.dmel import DMEL_LEVELS
from schemas.sample import LABEL_BITS, MicroTurnSample, SampleMeta, WindowSample
from schemas.shard import version_problem
from schemas.tables import (
    INDEX_DIR,
    INDEX_SCHEMA,
    MANIFEST_FILE,
    REJECTED_FILE,
    REJECTED_SCHEMA,
    SHARD_LIST_FILE,
    event_counts,
    index_file_name,
    index_files,
    read_index,
    read_manifest,
    read_rejected,
    shard_list_text,
)
from schemas.units import num_microturns


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


def _check_window(key: str, members: dict[str, bytes], report: Report) -> list[MicroTurnSample]:
    """Decode a stored window through its record (members, dtypes, shapes, rows), then check each perspective's
    view: values and meta agreement. Returns the views (none when the window does not decode)."""
    try:
        window = WindowSample.from_members(members)
    except ValueError as e:
        report.add(f"{key}: {e}")
        return []
    except Exception as e:  # noqa: BLE001 - any malformed member (meta.json a list, ...) is a violation, not a crash
        report.add(f"{key}: malformed sample ({type(e).__name__}: {e})")
        return []
    for name, arr in (("dmel.npy", window.dmel), ("others.dmel.npy", window.others_dmel)):
        if arr is not None and arr.size and arr.max() >= DMEL_LEVELS:
            report.add(f"{key}.{name}: code {int(arr.max())} outside 0..{DMEL_LEVELS - 1}")
    views = [window.view(p) for p in range(len(window.meta.perspectives))]
    for sample in views:
        _check_view(f"{key} ({sample.meta.perspective})", sample, report)
    return views


def _check_view(key: str, sample: MicroTurnSample, report: Report) -> None:
    """Values and meta agreement of one perspective's view of a window."""
    meta = sample.meta
    mask = sample.mask
    n = int(mask.sum())
    if n != meta.num_microturns or not (mask[:n] == 1).all() or (mask[n:] != 0).any():
        report.add(f"{key}: mask is not {meta.num_microturns} ones followed by zeros")
    if (sample.activity < 0).any() or (sample.activity > 1).any():
        report.add(f"{key}.activity.npy: values outside [0, 1]")
    if sample.frames is not None:
        stored = sum(1 for jpeg in sample.frames if jpeg)
        if stored != (meta.video.frames if meta.video is not None else None):
            report.add(f"{key}: {stored} frames stored, meta.video says {meta.video and meta.video.frames}")
        elif any(jpeg for jpeg, real in zip(sample.frames, mask, strict=True) if not real):
            report.add(f"{key}: a frame is stored for a padding micro-turn")
    if any(not (0 <= w.microturn < meta.num_microturns) for w in sample.words):
        report.add(f"{key}.words.json: a word's micro-turn is outside the window's real micro-turns")
    for x in meta.interruptions:
        if not (0 <= x.microturn < meta.num_microturns) or not sample.labels[x.microturn] & LABEL_BITS.get(x.label, 0):
            report.add(f"{key}: meta.interruptions has {x.label} at micro-turn {x.microturn} without its label bit")


def _check_target_counts(key: str, sample: MicroTurnSample, row: dict, report: Report) -> None:
    """The index row's n_targets / target_categories agree with the perspective's targets (absent: none)."""
    targets = sample.targets or ()
    counts = dict(Counter(t.category for t in targets))
    got = (len(targets), sorted(counts), counts)
    row_counts = dict(row.get("target_counts") or {})
    if (row.get("n_targets"), row.get("target_categories"), row_counts) != got:
        report.add(
            f"{key}: index says {row.get('n_targets')} target(s) {row_counts}, targets.json has {got[0]} {counts}"
        )


def _check_event_counts(key: str, sample: MicroTurnSample, row: dict, report: Report) -> None:
    """The index's event counts agree with the perspective's events (schemas/events.py; checked on decoding)."""
    counts = event_counts(list(sample.events or ()))
    if any(row.get(c) != n for c, n in counts.items()):
        report.add(f"{key}: index event counts {[row.get(c) for c in counts]} != events.json {list(counts.values())}")


def _read_shard(path: str, report: Report) -> dict[str, tuple[int, dict[str, bytes]]]:
    """{key: (offset of its first header, {member: bytes})}."""
    samples: dict[str, tuple[int, dict[str, bytes]]] = {}
    name = posixpath.basename(path)
    try:
        file_size = storage.size(path)
        with storage.open_read(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    report.add(f"{name}: member {member.name!r} is not a regular file (a link or directory)")
                    continue
                if member.offset_data + member.size > file_size:
                    report.add(f"{name}: member {member.name!r} claims {member.size} bytes, past the end of the file")
                    break
                if "." not in member.name:
                    report.add(f"{name}: member {member.name!r} has no extension")
                    continue
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member)
                payload = data.read() if data is not None else b""
                if key not in samples:
                    samples[key] = (member.offset, {})
                samples[key][1][ext] = payload
    except (tarfile.TarError, OSError, ValueError) as e:
        report.add(f"{name}: not a readable tar: {e}")
    return samples


def validate(dataset_dir: str, *, limit: int = 20) -> Report:
    """Validate the dataset in `dataset_dir` (a local directory or an s3:// prefix); see the module docstring. Never
    raises on a malformed dataset: whatever cannot be read is a violation."""
    report = Report(limit=limit)
    try:
        _validate(dataset_dir, report)
    except Exception as e:  # noqa: BLE001 - a malformed manifest or table the checks did not foresee
        report.add(f"{dataset_dir}: cannot be checked further ({type(e).__name__}: {e})")
    return report


def _read_manifest_checked(dataset_dir: str, report: Report) -> dict | None:
    """The manifest, or None (reported) when it is unreadable, not an object or of another format version."""
    try:
        manifest = read_manifest(dataset_dir)
    except (OSError, ValueError) as e:
        report.add(f"{MANIFEST_FILE}: cannot read: {e}")
        return None
    if not isinstance(manifest, dict):
        report.add(f"{MANIFEST_FILE}: not a JSON object")
        return None
    version_message = version_problem(manifest.get("format_version"), dataset_dir)
    if version_message:
        report.add(version_message)
        return None
    return manifest


def _read_index_rows(dataset_dir: str, manifest: dict, report: Report) -> dict[tuple[str, str], dict] | None:
    """The index rows by (key, perspective), after checking the manifest's counts, the index's and the rejected
    list's schemas and row counts; None (reported) when either table cannot be read."""
    counts = manifest.get("counts", {})
    if counts.get("inputs") != counts.get("conversations_written", -1) + counts.get("rejected", -1):
        report.add(
            f"manifest counts: inputs {counts.get('inputs')} != conversations_written "
            f"{counts.get('conversations_written')} + rejected {counts.get('rejected')}"
        )
    try:
        index = read_index(dataset_dir, missing_ok=not manifest.get("shards"))  # no shards: no index/ either
        rejected = read_rejected(dataset_dir)
    except (OSError, ValueError) as e:
        report.add(f"cannot read {INDEX_DIR} or {REJECTED_FILE}: {e}")
        return None
    if not index.schema.equals(INDEX_SCHEMA, check_metadata=False):
        report.add(f"{INDEX_DIR}: schema differs from schemas.tables.INDEX_SCHEMA")
    if not rejected.schema.equals(REJECTED_SCHEMA, check_metadata=False):
        report.add(f"{REJECTED_FILE}: schema differs from schemas.tables.REJECTED_SCHEMA")
    if rejected.num_rows != counts.get("rejected"):
        report.add(f"{REJECTED_FILE}: {rejected.num_rows} rows, manifest says {counts.get('rejected')}")
    rows = {(r["key"], r["perspective"]): r for r in index.to_pylist()}  # one row per window and perspective
    if len(rows) != index.num_rows:
        report.add(f"{INDEX_DIR}: (key, perspective) pairs are not unique")
    if len(rows) != counts.get("samples"):  # a sample is a window seen from one perspective (the tar: windows)
        report.add(f"{INDEX_DIR}: {len(rows)} rows, manifest says {counts.get('samples')} samples")
    return rows


def _check_listings(dataset_dir: str, manifest: dict, report: Report) -> None:
    """One index file per listed shard and none other; shards.txt lists the manifest's shards."""
    listed = {index_file_name(s["name"]) for s in manifest.get("shards", [])}
    present = {f"{INDEX_DIR}/{posixpath.basename(path)}" for path in index_files(dataset_dir)}
    for name in sorted(listed - present):
        report.add(f"{name}: the index file of a listed shard is missing")
    for name in sorted(present - listed):
        report.add(f"{name}: an index file of no listed shard")
    shard_list = posixpath.join(dataset_dir, SHARD_LIST_FILE)
    if not storage.exists(shard_list):
        report.add(f"{SHARD_LIST_FILE}: missing (the manifest's shard names, sorted, one a line)")
    elif storage.read_bytes(shard_list) != shard_list_text(s["name"] for s in manifest.get("shards", [])).encode():
        report.add(f"{SHARD_LIST_FILE}: does not list the manifest's shards, sorted, one a line")


def _check_shard_file(path: str, shard: dict, target_mb: float | None, report: Report) -> None:
    """The shard's sha256 and size in bytes agree with the manifest; with a target size in MB (10^6 bytes), only
    a shard of one conversation exceeds it."""
    digest, size = _sha256(path)
    if digest != shard["sha256"] or size != shard["size_bytes"]:
        report.add(
            f"{shard['name']}: sha256/size {digest[:12]}/{size} != manifest {shard['sha256'][:12]}/"
            f"{shard['size_bytes']}"
        )
    if target_mb is not None and size > target_mb * 1_000_000 and shard.get("conversations", 0) > 1:
        report.add(f"{shard['name']}: {size} bytes, over shard_size_mb {target_mb} with several conversations")


@dataclass
class _Seen:
    """What the shards held, gathered across shards for the dataset-wide checks."""

    pairs: set[tuple[str, str]] = field(default_factory=set)  # (key, perspective) found in some shard
    per_perspective: dict[tuple[str, str], list[SampleMeta]] = field(default_factory=lambda: defaultdict(list))


def _check_shard_samples(
    shard: dict,
    samples: dict[str, tuple[int, dict[str, bytes]]],
    rows: dict[tuple[str, str], dict],
    keys: set[str],
    seen: _Seen,
    report: Report,
) -> list[tuple[str, str]]:
    """Check each window of the shard and each perspective's index row (place, byte offset, targets, events);
    `keys`: the index's keys. Returns the (key, perspective) of the shard's samples, in shard order."""
    found: list[tuple[str, str]] = []
    for key, (offset, members) in samples.items():
        if key not in keys:
            report.add(f"{key}: in {shard['name']} but not in {INDEX_DIR}")
        for sample in _check_window(key, members, report):
            meta = sample.meta
            row = rows.get((key, meta.perspective))
            seen.pairs.add((key, meta.perspective))
            found.append((key, meta.perspective))
            report.samples_checked += 1
            if row is None:
                report.add(f"{key}: perspective {meta.perspective} in {shard['name']} but not in {INDEX_DIR}")
            else:
                if row["shard"] != shard["name"] or row["offset"] != offset:
                    report.add(f"{key}: index says {row['shard']}@{row['offset']}, found in {shard['name']}@{offset}")
                _check_target_counts(key, sample, row, report)
                _check_event_counts(key, sample, row, report)
            if meta.key != key:
                report.add(f"{key}: meta.key is {meta.key!r}")
            seen.per_perspective[(meta.conversation_key, meta.perspective)].append(meta)
    if len(found) != shard.get("samples"):
        report.add(
            f"{shard['name']}: {len(found)} samples (window x perspective), manifest says {shard.get('samples')}"
        )
    return found


def _check_shard_index(
    dataset_dir: str,
    shard: dict,
    samples: dict[str, tuple[int, dict[str, bytes]]],
    found: list[tuple[str, str]],
    report: Report,
) -> None:
    """The shard's index file (when present) holds its samples' keys in key order, one row per perspective."""
    index_path = posixpath.join(dataset_dir, index_file_name(shard["name"]))
    if not storage.exists(index_path):
        return
    with storage.open_read(index_path) as f:
        table = pq.read_table(f, columns=["key", "perspective"])
    in_file = list(zip(table.column("key").to_pylist(), table.column("perspective").to_pylist(), strict=True))
    keys_in_file = [k for k, _ in in_file]
    if sorted(set(keys_in_file)) != sorted(samples) or keys_in_file != sorted(keys_in_file):
        report.add(f"{index_file_name(shard['name'])}: rows are not {shard['name']}'s samples in key order")
    elif sorted(in_file) != sorted(found):
        report.add(f"{index_file_name(shard['name'])}: rows are not the perspectives of {shard['name']}'s samples")


def _check_conversations(rows: dict[tuple[str, str], dict], seen: _Seen, report: Report) -> None:
    """Every index row was found in a shard; per conversation and perspective, windows 0..n-1 covering
    ceil(samples / 3200) micro-turns."""
    for key, persp in sorted(set(rows) - seen.pairs):
        report.add(f"{key}: perspective {persp} in {INDEX_DIR} but in no shard")
    for (conv, persp), metas in sorted(seen.per_perspective.items()):
        metas.sort(key=lambda m: m.window)
        if [m.window for m in metas] != list(range(len(metas))):
            report.add(f"{conv}/{persp}: windows are not 0..{len(metas) - 1}")
        expected = num_microturns(metas[0].conversation_samples)
        got = sum(m.num_microturns for m in metas)
        if got != expected:
            report.add(f"{conv}/{persp}: {got} micro-turns, expected ceil(samples / 3200) = {expected}")


def _validate(dataset_dir: str, report: Report) -> None:
    manifest = _read_manifest_checked(dataset_dir, report)
    if manifest is None:
        return
    rows = _read_index_rows(dataset_dir, manifest, report)
    if rows is None:
        return
    _check_listings(dataset_dir, manifest, report)
    config = manifest.get("config", {})
    target = None if config.get("num_shards") is not None else config.get("shard_size_mb")
    keys = {key for key, _ in rows}
    seen = _Seen()
    for shard in manifest.get("shards", []):
        path = posixpath.join(dataset_dir, shard["name"])
        if not storage.exists(path):
            report.add(f"{shard['name']}: listed in the manifest but missing")
            continue
        _check_shard_file(path, shard, target, report)
        samples = _read_shard(path, report)
        found = _check_shard_samples(shard, samples, rows, keys, seen, report)
        _check_shard_index(dataset_dir, shard, samples, found, report)
    _check_conversations(rows, seen, report)
