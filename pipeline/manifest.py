"""The dataset's tables: per-shard index files, rejected.parquet and manifest.json (layout: schemas/tables.py).

python -c "from pipeline.manifest import config_hash; print(config_hash({'a': 1}))"

No step holds the dataset's rows: each shard's writer writes that shard's index file (`write_index_file`) and
turns its rows into a small summary (`shard_summary`: counts, hours, label counts, turn-taking bins, alignment
figures, sha256 and size); `ManifestCombineFn` merges the summaries (a Beam CombineGlobally, associative and
order-independent: durations are summed as integer nanoseconds, lists are sorted at the end), and `write_manifest`
writes manifest.json from the merged totals and the rejections' summary (pipeline/runner/rejected_table.py).
`write_tables` does the same in one process for a list of ShardInfo (tests, small tools).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import apache_beam as beam
import pyarrow as pa

from pipeline.rejects import Rejection
from pipeline.runner.rejected_table import rejected_summary, row_key, write_sorted_rows
from pipeline.write import ShardInfo, commit_bytes
from schemas.shard import FORMAT_VERSION
from schemas.tables import (
    INDEX_SCHEMA,
    LABEL_COUNT_COLUMNS,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    REJECTED_FILE,
    index_file_name,
    parquet_bytes,
)

NS_PER_S = 1_000_000_000


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def code_version() -> str:
    try:
        return metadata.version("microturn")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_index_file(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """One shard's index rows (INDEX_SCHEMA), sorted by key, to the Parquet file `path` (temporary name, rename)."""
    ordered = sorted(rows, key=lambda r: r["key"])
    table = pa.Table.from_pylist([{f.name: r[f.name] for f in INDEX_SCHEMA} for r in ordered], schema=INDEX_SCHEMA)
    commit_bytes(path, parquet_bytes(table))


BIN_NAMES = ("floor_transfer_offset_bins", "gap_bins", "overlap_bins", "interruption_stop_latency_bins")
"""The turn-taking histograms (200 ms bins) a shard summary carries and the manifest sums."""


def _ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def _add(total: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    for k, v in more.items():
        total[str(k)] = total.get(str(k), 0) + int(v)
    return total


def shard_summary(info: ShardInfo, *, parts_sha256: str = "") -> dict[str, Any]:
    """The manifest's figures of one shard, from its rows and its conversations' summaries (a few hundred bytes plus
    one entry per conversation with video). `parts_sha256` identifies the parts it was written from (resume)."""
    rows, summaries = info.rows, sorted(info.summaries, key=lambda s: s["conversation_key"])
    bins: dict[str, dict[str, int]] = {name: {} for name in BIN_NAMES}
    events: dict[str, int] = {}
    words: dict[str, int] = {}
    diarized: dict[str, int] = {}
    unaligned = 0
    for s in summaries:
        for name, counts in bins.items():
            _add(counts, s["turn_taking"].get(name, {}))
        _add(events, s["turn_taking"]["events"])
        a = s.get("alignment") or {}
        _add(words, a.get("words", {}))
        unaligned += int(a.get("unaligned_words", 0))
        if a.get("diarization"):
            _add(diarized, {a["diarization"]: 1})
    return {
        "name": info.name,
        "index": index_file_name(info.name),
        "sha256": info.sha256,
        "size_bytes": info.size_bytes,
        "parts_sha256": parts_sha256,
        "samples": len(rows),
        "conversations": len(summaries),
        "perspectives": len({(r["conversation_id"], r["perspective"]) for r in rows}),
        "duration_ns": sum(_ns(s["duration_s"]) for s in summaries),
        "sample_duration_ns": sum(_ns(r["duration_s"]) for r in rows),
        "label_counts": {c[2:]: int(sum(r[c] for r in rows)) for c in LABEL_COUNT_COLUMNS},
        "turn_taking": {**bins, "events": events},
        "alignment": {"words": words, "unaligned_words": unaligned, "diarized_conversations": diarized},
        "video": [
            {"conversation_key": s["conversation_key"], "conversation_id": s["conversation_id"], **s["video"]}
            for s in summaries
            if s.get("video")
        ],
    }


SHARD_ENTRY = ("name", "sha256", "size_bytes", "samples", "conversations", "index")
"""The fields of a shard summary listed in the manifest's `shards`."""


def empty_totals() -> dict[str, Any]:
    return {
        "shards": [],
        "samples": 0,
        "conversations": 0,
        "perspectives": 0,
        "duration_ns": 0,
        "sample_duration_ns": 0,
        "label_counts": {},
        "turn_taking": {**{name: {} for name in BIN_NAMES}, "events": {}},
        "alignment": {"words": {}, "unaligned_words": 0, "diarized_conversations": {}},
        "video": [],
    }


def merge_totals(total: dict[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """Add a shard summary, or other totals, to `total` (in place; returned)."""
    if "name" in summary:
        total["shards"].append({k: summary[k] for k in SHARD_ENTRY})
    else:
        total["shards"].extend(summary["shards"])
    for k in ("samples", "conversations", "perspectives", "duration_ns", "sample_duration_ns"):
        total[k] += summary[k]
    _add(total["label_counts"], summary["label_counts"])
    for k, counts in summary["turn_taking"].items():
        _add(total["turn_taking"][k], counts)
    _add(total["alignment"]["words"], summary["alignment"]["words"])
    _add(total["alignment"]["diarized_conversations"], summary["alignment"]["diarized_conversations"])
    total["alignment"]["unaligned_words"] += summary["alignment"]["unaligned_words"]
    total["video"].extend(summary["video"])
    return total


class ManifestCombineFn(beam.CombineFn):
    """Shard summaries -> dataset totals; the result does not depend on the order or grouping of the merges."""

    def create_accumulator(self) -> dict[str, Any]:
        return empty_totals()

    def add_input(self, accumulator: dict[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
        return merge_totals(accumulator, summary)

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        total = empty_totals()
        for a in accumulators:
            merge_totals(total, a)
        return total

    def extract_output(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        out = dict(accumulator)
        out["shards"] = sorted(accumulator["shards"], key=lambda s: s["name"])
        out["video"] = sorted(accumulator["video"], key=lambda v: v["conversation_key"])
        return out


def _sorted_bins(bins: Mapping[str, int]) -> dict[str, int]:
    return {k: bins[k] for k in sorted(bins, key=int)}


def turn_taking(totals: Mapping[str, Any]) -> dict[str, Any]:
    """Dataset turn-taking statistics from the merged totals (see pipeline.labels.turn_taking_counts)."""
    minutes = totals["duration_ns"] / NS_PER_S / 60.0
    tt = totals["turn_taking"]
    events = dict(sorted(tt["events"].items()))
    return {
        "bin_s": 0.2,
        "bins_note": "bin b counts values in [0.2 b, 0.2 (b+1)) seconds",
        "floor_transfer_offset_bins": _sorted_bins(tt["floor_transfer_offset_bins"]),
        "gap_bins": _sorted_bins(tt["gap_bins"]),
        "overlap_bins": _sorted_bins(tt["overlap_bins"]),
        "interruption_stop_latency_bins": _sorted_bins(tt["interruption_stop_latency_bins"]),
        "event_counts": events,
        "events_per_minute": {k: round(v / minutes, 4) for k, v in events.items()} if minutes else {},
    }


def alignment(totals: Mapping[str, Any]) -> dict[str, Any]:
    """Where the dataset's words came from: word counts by "<source>:<model>" ("tts:given" for transcripts the bundles
    gave, "asr:faster-whisper:..." for transcribed, "aligned:pocketsphinx:..." for text timed by an aligner), the
    words placed by interpolation because the aligner could not, and how mixed recordings were split."""
    a = totals["alignment"]
    return {
        "words": dict(sorted(a["words"].items())),
        "unaligned_words": a["unaligned_words"],
        "diarized_conversations": dict(sorted(a["diarized_conversations"].items())),
    }


def write_rejected(output: str, rejected: Sequence[Rejection]) -> dict[str, Any]:
    """Write rejected.parquet under `output` from a list, in one process (the job writes it from sorted runs instead:
    pipeline/runner/rejected_table.py; both give the same bytes); return its summary for the manifest."""
    write_sorted_rows(f"{output}/{REJECTED_FILE}", sorted((r.to_row() for r in rejected), key=row_key))
    return rejected_summary(Counter((r.stage, r.kind) for r in rejected))


def write_manifest(
    output: str, *, totals: Mapping[str, Any], rejected: Mapping[str, Any], num_inputs: int, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Write manifest.json under `output` from the merged shard totals and the rejections' summary; return it."""
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "format_version": FORMAT_VERSION,
        "code_version": code_version(),
        "config": dict(config),
        "config_hash": config_hash(config),
        "counts": {
            "inputs": num_inputs,
            "conversations_written": totals["conversations"],
            "rejected": rejected["rejected"],
            "samples": totals["samples"],
            "shards": len(totals["shards"]),
            "perspectives": totals["perspectives"],
        },
        "hours": round(totals["duration_ns"] / (3600 * NS_PER_S), 6),
        "sample_hours": round(totals["sample_duration_ns"] / (3600 * NS_PER_S), 6),
        "shards": list(totals["shards"]),
        "label_counts": {c[2:]: totals["label_counts"].get(c[2:], 0) for c in LABEL_COUNT_COLUMNS},
        "rejected_by_stage": rejected["rejected_by_stage"],
        "rejected_by": rejected["rejected_by"],
        "turn_taking": turn_taking(totals),
        "alignment": alignment(totals),
        "video": [{k: v for k, v in entry.items() if k != "conversation_key"} for entry in totals["video"]],
    }
    commit_bytes(f"{output}/{MANIFEST_FILE}", json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n")
    return manifest


def write_tables(
    output: str,
    *,
    shards: Sequence[ShardInfo],
    rejected: Sequence[Rejection],
    num_inputs: int,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """In one process: every shard's index file, rejected.parquet and manifest.json under `output`; the manifest."""
    combine = ManifestCombineFn()
    totals = combine.create_accumulator()
    for info in shards:
        write_index_file(f"{output}/{index_file_name(info.name)}", info.rows)
        totals = combine.add_input(totals, shard_summary(info))
    return write_manifest(
        output,
        totals=combine.extract_output(totals),
        rejected=write_rejected(output, rejected),
        num_inputs=num_inputs,
        config=config,
    )
