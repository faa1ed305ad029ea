"""The dataset's tables: index.parquet, rejected.parquet and manifest.json, written once at the end of a job.

python -c "from pipeline.manifest import config_hash; print(config_hash({'a': 1}))"
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.rejects import Rejection
from pipeline.write import ShardInfo
from schemas.shard import FORMAT_VERSION
from schemas.tables import (
    INDEX_FILE,
    INDEX_SCHEMA,
    LABEL_COUNT_COLUMNS,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    REJECTED_FILE,
    REJECTED_SCHEMA,
)


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def code_version() -> str:
    try:
        return metadata.version("microturn")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_parquet(path: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    with FileSystems.create(path + ".partial") as f:
        f.write(buf.getvalue())
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([path + ".partial"], [path])


def _sum_bins(dicts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return {k: total[k] for k in sorted(total, key=int)}


def turn_taking(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Dataset turn-taking statistics from the conversations' summaries (see pipeline.labels.turn_taking_counts)."""
    minutes = sum(s["duration_s"] for s in summaries) / 60.0
    events: Counter = Counter()
    for s in summaries:
        events.update(s["turn_taking"]["events"])
    return {
        "bin_s": 0.2,
        "bins_note": "bin b counts values in [0.2 b, 0.2 (b+1)) seconds",
        "floor_transfer_offset_bins": _sum_bins([s["turn_taking"]["floor_transfer_offset_bins"] for s in summaries]),
        "gap_bins": _sum_bins([s["turn_taking"]["gap_bins"] for s in summaries]),
        "overlap_bins": _sum_bins([s["turn_taking"]["overlap_bins"] for s in summaries]),
        "interruption_stop_latency_bins": _sum_bins(
            [s["turn_taking"].get("interruption_stop_latency_bins", {}) for s in summaries]
        ),
        "event_counts": dict(sorted(events.items())),
        "events_per_minute": {k: round(v / minutes, 4) for k, v in sorted(events.items())} if minutes else {},
    }


def alignment(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the dataset's words came from: word counts by "<source>:<model>" ("tts:given" for transcripts the bundles
    gave, "asr:faster-whisper:..." for transcribed, "aligned:pocketsphinx:..." for text timed by an aligner), the
    words placed by interpolation because the aligner could not, and how mixed recordings were split."""
    words: Counter = Counter()
    diarization: Counter = Counter()
    unaligned = 0
    for s in summaries:
        a = s.get("alignment") or {}
        words.update(a.get("words", {}))
        unaligned += int(a.get("unaligned_words", 0))
        if a.get("diarization"):
            diarization[a["diarization"]] += 1
    return {
        "words": dict(sorted(words.items())),
        "unaligned_words": unaligned,
        "diarized_conversations": dict(sorted(diarization.items())),
    }


def rejected_by(rejected: Sequence[Rejection]) -> dict[str, dict[str, int]]:
    """Rejection counts by stage and kind: {stage: {kind: inputs}}, both levels sorted."""
    by: dict[str, Counter] = {}
    for r in rejected:
        by.setdefault(r.stage, Counter())[r.kind] += 1
    return {stage: dict(sorted(by[stage].items())) for stage in sorted(by)}


def write_tables(
    output: str,
    *,
    shards: Sequence[ShardInfo],
    rejected: Sequence[Rejection],
    num_inputs: int,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """Write index.parquet, rejected.parquet and manifest.json under `output`; return the manifest."""
    shards = sorted(shards, key=lambda s: s.name)
    rows = sorted((r for s in shards for r in s.rows), key=lambda r: r["key"])
    index = pa.Table.from_pylist([{f.name: r[f.name] for f in INDEX_SCHEMA} for r in rows], schema=INDEX_SCHEMA)
    _write_parquet(f"{output}/{INDEX_FILE}", index)
    rejects = sorted(rejected, key=lambda r: (r.input, r.stage, r.reason))
    _write_parquet(
        f"{output}/{REJECTED_FILE}", pa.Table.from_pylist([r.to_row() for r in rejects], schema=REJECTED_SCHEMA)
    )
    summaries = sorted((s for sh in shards for s in sh.summaries), key=lambda s: s["conversation_key"])
    label_counts = {c[2:]: int(sum(r[c] for r in rows)) for c in LABEL_COUNT_COLUMNS}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "format_version": FORMAT_VERSION,
        "code_version": code_version(),
        "config": dict(config),
        "config_hash": config_hash(config),
        "counts": {
            "inputs": num_inputs,
            "conversations_written": len(summaries),
            "rejected": len(rejects),
            "samples": len(rows),
            "shards": len(shards),
            "perspectives": len({(r["conversation_id"], r["perspective"]) for r in rows}),
        },
        "hours": round(sum(s["duration_s"] for s in summaries) / 3600.0, 6),
        "sample_hours": round(sum(r["duration_s"] for r in rows) / 3600.0, 6),
        "shards": [
            {"name": s.name, "sha256": s.sha256, "size_bytes": s.size_bytes, "samples": len(s.rows)} for s in shards
        ],
        "label_counts": label_counts,
        "rejected_by_stage": dict(sorted(Counter(r.stage for r in rejects).items())),
        "rejected_by": rejected_by(rejects),
        "turn_taking": turn_taking(summaries),
        "alignment": alignment(summaries),
        "video": [{"conversation_id": s["conversation_id"], **s["video"]} for s in summaries if s.get("video")],
    }
    with FileSystems.create(f"{output}/{MANIFEST_FILE}.partial") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n")
    if FileSystems.exists(f"{output}/{MANIFEST_FILE}"):
        FileSystems.delete([f"{output}/{MANIFEST_FILE}"])
    FileSystems.rename([f"{output}/{MANIFEST_FILE}.partial"], [f"{output}/{MANIFEST_FILE}"])
    return manifest
