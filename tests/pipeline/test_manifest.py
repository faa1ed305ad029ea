"""Write-then-read tests of pipeline/manifest.py: per-shard index files, rejected.parquet and manifest.json, and the
merge of per-shard summaries (order-independent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest import ManifestCombineFn, config_hash, shard_summary, write_tables
from pipeline.rejects import Rejection
from pipeline.write import ShardInfo
from schemas.shard import FORMAT_VERSION
from schemas.tables import INDEX_SCHEMA, LABEL_COUNT_COLUMNS, MANIFEST_VERSION, REJECTED_SCHEMA, read_index_rows

CONFIG = {"windows": {"window_microturns": 4}, "num_shards": 2}


def _row(conv: str, perspective: str, window: int, *, shard: str, offset: int, duration_s: float) -> dict[str, Any]:
    """An index row with every INDEX_SCHEMA column; label counts differ per row so their sums are checked."""
    row: dict[str, Any] = {
        "key": f"{conv}_{perspective}_{window:05d}",
        "shard": shard,
        "offset": offset,
        "conversation_id": conv,
        "perspective": perspective,
        "window": window,
        "start_microturn": 4 * window,
        "num_microturns": 4,
        "duration_s": duration_s,
        "output_speaker": perspective,
        "input_speaker": "B" if perspective == "A" else "A",
        "other_speakers": [],
        "word_count": window + 1,
        "language": "en",
        "source": "test",
        "licence": "CC0-1.0",
        "split": "train",
        "tags": {"room": "1"},
        "annotations": ["laugh"] if window == 0 else [],
    }
    row.update({c: i + window for i, c in enumerate(LABEL_COUNT_COLUMNS)})
    return row


def _summary(
    conv: str, duration_s: float, events: dict[str, int], gap_bins: dict[str, int], video: dict | None = None
) -> dict[str, Any]:
    return {
        "conversation_id": conv,
        "conversation_key": conv,
        "duration_s": duration_s,
        "speakers": ["A", "B"],
        "source": "test",
        "licence": "CC0-1.0",
        "video": video,
        "alignment": {"words": {"tts:given": 3}, "unaligned_words": 1},
        "turn_taking": {
            "floor_transfer_offset_bins": gap_bins,
            "gap_bins": gap_bins,
            "overlap_bins": {"0": 1},
            "events": events,
        },
    }


SHARDS = [  # given out of name order: the tables sort them
    ShardInfo(
        name="shard-00001.tar",
        sha256="b" * 64,
        size_bytes=30_720,
        rows=(_row("zed", "A", 0, shard="shard-00001.tar", offset=0, duration_s=0.8),),
        summaries=(_summary("zed", 0.8, {"backchannel": 1}, {"1": 1}, video={"fps": 5, "audio_video_offset_s": 0.0}),),
    ),
    ShardInfo(
        name="shard-00000.tar",
        sha256="a" * 64,
        size_bytes=61_440,
        rows=(
            _row("alpha", "B", 0, shard="shard-00000.tar", offset=0, duration_s=0.8),
            _row("alpha", "A", 1, shard="shard-00000.tar", offset=10_240, duration_s=0.5),
            _row("alpha", "A", 0, shard="shard-00000.tar", offset=20_480, duration_s=0.8),
        ),
        summaries=(_summary("alpha", 1.3, {"backchannel": 2, "yield": 1}, {"0": 1, "2": 3}),),
    ),
]
REJECTED = [
    Rejection(
        input="in/late/bundle.json",
        stage="align",
        kind="words_past_end",
        reason="word 'late' ends after the audio ends",
        conversation_id="late",
    ),
    Rejection(input="in/badjson/bundle.json", stage="read", kind="malformed_json", reason="not valid JSON"),
    Rejection(
        input="in/trunc/bundle.json",
        stage="decode",
        kind="truncated_wav",
        reason="A.wav: truncated WAV",
        conversation_id="trunc",
    ),
]


def _assert_schema(got: pa.Schema, want: pa.Schema) -> None:
    """Equal names, types, nullability and metadata (Parquet renames list items to `element`; that is ignored)."""

    def plain(t: pa.DataType) -> pa.DataType:
        return pa.list_(t.value_type) if pa.types.is_list(t) else t

    assert [(f.name, plain(f.type), f.nullable) for f in got] == [(f.name, plain(f.type), f.nullable) for f in want]
    assert got.metadata == want.metadata


@pytest.fixture()
def written(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    manifest = write_tables(str(tmp_path), shards=SHARDS, rejected=REJECTED, num_inputs=5, config=CONFIG)
    return tmp_path, manifest


def test_the_index_has_one_file_per_shard_sorted_by_key_and_reads_as_one_table(written: tuple[Path, dict]) -> None:
    out, _ = written
    assert sorted(p.name for p in (out / "index").iterdir()) == ["shard-00000.parquet", "shard-00001.parquet"]
    first = pq.read_table(out / "index" / "shard-00000.parquet")
    _assert_schema(first.schema, INDEX_SCHEMA)
    assert first.column("key").to_pylist() == ["alpha_A_00000", "alpha_A_00001", "alpha_B_00000"]
    rows = read_index_rows(str(out))
    expected = sorted((r for s in SHARDS for r in s.rows), key=lambda r: r["key"])
    assert [r["key"] for r in rows] == ["alpha_A_00000", "alpha_A_00001", "alpha_B_00000", "zed_A_00000"]
    for got, want in zip(rows, expected, strict=True):
        assert {**got, "tags": dict(got["tags"])} == want
    assert pq.read_table(out / "index").num_rows == 4  # plain pyarrow reads the directory as one table
    assert list(out.rglob("*.partial")) == []


def test_rejected_parquet_lists_each_rejection_with_the_schema(written: tuple[Path, dict]) -> None:
    out, _ = written
    table = pq.read_table(out / "rejected.parquet")
    _assert_schema(table.schema, REJECTED_SCHEMA)
    rows = table.to_pylist()
    assert [r["input"] for r in rows] == sorted(r.input for r in REJECTED)
    assert {r["input"]: r for r in rows} == {r.input: r.to_row() for r in REJECTED}
    assert {r["input"]: r["conversation_id"] for r in rows}["in/badjson/bundle.json"] is None
    assert {r["input"]: r["kind"] for r in rows} == {
        "in/late/bundle.json": "words_past_end",
        "in/badjson/bundle.json": "malformed_json",
        "in/trunc/bundle.json": "truncated_wav",
    }


def test_manifest_counts_hours_and_shards(written: tuple[Path, dict]) -> None:
    out, returned = written
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == returned
    assert (manifest["manifest_version"], manifest["format_version"]) == (MANIFEST_VERSION, FORMAT_VERSION)
    assert manifest["config"] == CONFIG and manifest["config_hash"] == config_hash(CONFIG)
    counts = manifest["counts"]
    assert counts == {
        "inputs": 5,
        "conversations_written": 2,
        "rejected": 3,
        "samples": 4,
        "shards": 2,
        "perspectives": 3,
    }
    assert counts["inputs"] == counts["conversations_written"] + counts["rejected"]
    assert manifest["hours"] == round((0.8 + 1.3) / 3600, 6)
    assert manifest["sample_hours"] == round((0.8 + 0.8 + 0.5 + 0.8) / 3600, 6)
    assert manifest["shards"] == [
        {
            "name": "shard-00000.tar",
            "sha256": "a" * 64,
            "size_bytes": 61_440,
            "samples": 3,
            "conversations": 1,
            "index": "index/shard-00000.parquet",
        },
        {
            "name": "shard-00001.tar",
            "sha256": "b" * 64,
            "size_bytes": 30_720,
            "samples": 1,
            "conversations": 1,
            "index": "index/shard-00001.parquet",
        },
    ]
    rows = [r for s in SHARDS for r in s.rows]
    assert manifest["label_counts"] == {c[2:]: sum(r[c] for r in rows) for c in LABEL_COUNT_COLUMNS}
    assert manifest["label_counts"]["input_speech"] == 0 + 1 + 0 + 0
    assert manifest["rejected_by_stage"] == {"align": 1, "decode": 1, "read": 1}
    assert manifest["rejected_by"] == {
        "align": {"words_past_end": 1},
        "decode": {"truncated_wav": 1},
        "read": {"malformed_json": 1},
    }
    assert manifest["video"] == [{"conversation_id": "zed", "fps": 5, "audio_video_offset_s": 0.0}]
    assert manifest["alignment"] == {"words": {"tts:given": 6}, "unaligned_words": 2, "diarized_conversations": {}}


def test_manifest_turn_taking_sums_the_conversations(written: tuple[Path, dict]) -> None:
    _, manifest = written
    tt = manifest["turn_taking"]
    assert tt["event_counts"] == {"backchannel": 3, "yield": 1}
    assert tt["gap_bins"] == {"0": 1, "1": 1, "2": 3}
    assert tt["overlap_bins"] == {"0": 2}
    minutes = (0.8 + 1.3) / 60
    assert tt["events_per_minute"] == {"backchannel": round(3 / minutes, 4), "yield": round(1 / minutes, 4)}


def test_writing_the_same_tables_again_gives_identical_bytes(written: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = written
    again = tmp_path / "again"
    again.mkdir()
    write_tables(str(again), shards=SHARDS[::-1], rejected=REJECTED[::-1], num_inputs=5, config=CONFIG)
    for name in ("index/shard-00000.parquet", "index/shard-00001.parquet", "rejected.parquet", "manifest.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_merging_shard_summaries_does_not_depend_on_order_or_grouping() -> None:
    infos = [*SHARDS, *(ShardInfo(**{**_fields(s), "name": s.name.replace("0000", "0001")}) for s in SHARDS)]
    summaries = [shard_summary(i) for i in infos]
    combine = ManifestCombineFn()

    def merged(order: list[int], split: int) -> dict[str, Any]:
        left, right = combine.create_accumulator(), combine.create_accumulator()
        for n, i in enumerate(order):
            target = left if n < split else right
            combine.add_input(target, summaries[i])
        return combine.extract_output(combine.merge_accumulators([right, left]))

    reference = merged([0, 1, 2, 3], 4)
    assert merged([3, 1, 0, 2], 1) == reference == merged([2, 0, 3, 1], 3)
    assert reference["samples"] == 8 and reference["conversations"] == 4
    assert [s["name"] for s in reference["shards"]] == sorted(i.name for i in infos)
    assert reference["duration_ns"] == 2 * (800_000_000 + 1_300_000_000)


def _fields(info: ShardInfo) -> dict[str, Any]:
    return {f: getattr(info, f) for f in info.__slots__}
