"""pipeline/runner/rejected_table.py: rejected.parquet from sorted runs of bounded size; the same bytes however the
rejections were split into runs, and the same as the one-process writer's."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.job import run
from pipeline.manifest import write_rejected
from pipeline.rejects import Rejection
from pipeline.runner import rejected_table
from pipeline.runner.rejected_table import merge_runs, row_key, write_rejected_runs, write_run

from ...factories import make_bundle
from ...s3_server import S3Server


def _rejections(n: int, seed: int = 0) -> list[Rejection]:
    rng = random.Random(seed)
    kinds = [("read", "malformed_json"), ("decode", "truncated_wav"), ("align", "words_past_end")]
    out = []
    for i in range(n):
        stage, kind = rng.choice(kinds)
        cid = None if stage == "read" else f"c{rng.randrange(5)}"
        origin = f"in/b{rng.randrange(n // 2 + 1)}/bundle.json"
        out.append(Rejection(input=origin, stage=stage, kind=kind, reason=f"reason {i % 7}", conversation_id=cid))
    return out


def test_runs_merge_to_the_bytes_of_one_sorted_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rejected_table, "ROW_GROUP_ROWS", 16)  # several row groups
    monkeypatch.setattr(rejected_table, "MERGE_BATCH_ROWS", 3)
    rejects = _rejections(100)
    summary = write_rejected(str(tmp_path / "one"), rejects)
    for split, seed in ((7, 1), (40, 2)):  # rejections shuffled and cut into runs of `split`
        shuffled = rejects[:]
        random.Random(seed).shuffle(shuffled)
        runs = [
            write_run(str(tmp_path / "runs"), [r.to_row() for r in shuffled[i : i + split]])
            for i in range(0, len(shuffled), split)
        ]
        out = tmp_path / f"merged{split}"
        assert merge_runs(str(out), runs) == 100
        assert (out / "rejected.parquet").read_bytes() == (tmp_path / "one" / "rejected.parquet").read_bytes()
    table = pq.ParquetFile(tmp_path / "one" / "rejected.parquet")
    assert table.metadata.num_row_groups == 7  # ceil(100 / 16)
    rows = table.read().to_pylist()
    assert rows == sorted(rows, key=row_key) and len(rows) == 100
    runs = []  # what RejectedRunsFn yields: (path, counts by (stage, kind)) per run
    for part in (rejects[:30], rejects[30:60], rejects[60:]):
        counts = dict(Counter((r.stage, r.kind) for r in part))
        runs.append((write_run(str(tmp_path / "runs"), [r.to_row() for r in part]), counts))
    assert write_rejected_runs(str(tmp_path / "viaruns"), runs) == summary
    assert (tmp_path / "viaruns" / "rejected.parquet").read_bytes() == (
        tmp_path / "one" / "rejected.parquet"
    ).read_bytes()
    assert summary["rejected"] == 100 and sum(summary["rejected_by_stage"].values()) == 100


def test_no_rejections_give_an_empty_table(tmp_path: Path) -> None:
    assert merge_runs(str(tmp_path), []) == 0
    table = pq.read_table(tmp_path / "rejected.parquet")
    assert table.num_rows == 0 and table.schema.names == ["input", "conversation_id", "stage", "kind", "reason"]


def test_the_job_holds_at_most_run_rows_rejections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With runs of 2 rows, 5 rejected inputs go through 3 runs; the table and manifest are those of one list."""
    monkeypatch.setattr(rejected_table, "RUN_ROWS", 2)
    written: list[int] = []
    real_write_run = rejected_table.write_run
    monkeypatch.setattr(
        rejected_table, "write_run", lambda d, rows: written.append(len(rows)) or real_write_run(d, rows)
    )
    root = tmp_path / "in"
    make_bundle(root / "good", conv_id="good", seconds=2.0)
    for i in range(5):
        make_bundle(root / f"bad{i}", conv_id=f"bad{i}")
        (root / f"bad{i}" / "bundle.json").write_text('{"id": "x", "tracks": [')
    manifest = run(["--input", str(root), "--output", str(tmp_path / "out"), "--window_microturns", "4"])
    assert max(written) <= 2 and sum(written) == 5
    rows = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert [Path(r["input"]).parent.name for r in rows] == [f"bad{i}" for i in range(5)]
    assert manifest["counts"]["rejected"] == 5 and manifest["rejected_by"] == {"read": {"malformed_json": 5}}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["rejected_by_stage"] == {"read": 5}


def test_two_runs_with_the_same_rows_both_count(tmp_path: Path) -> None:
    """Runs are named by their bytes: two bundles with identical rejections write one file, listed twice."""
    rows = [r.to_row() for r in _rejections(4)]
    first, second = write_run(str(tmp_path / "runs"), list(rows)), write_run(str(tmp_path / "runs"), list(rows))
    assert first == second
    assert merge_runs(str(tmp_path), [first, second]) == 8


def test_more_runs_than_the_fan_in_merge_level_by_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rejected_table, "MAX_FANIN", 2)
    rejects = _rejections(50, seed=3)
    write_rejected(str(tmp_path / "one"), rejects)
    runs = [write_run(str(tmp_path / "runs"), [r.to_row() for r in rejects[i : i + 6]]) for i in range(0, 50, 6)]
    assert len(runs) == 9  # 9 -> 5 -> 3 -> 2 runs, then the table
    assert merge_runs(str(tmp_path / "merged"), runs) == 50
    assert (tmp_path / "merged" / "rejected.parquet").read_bytes() == (
        tmp_path / "one" / "rejected.parquet"
    ).read_bytes()
    assert len(list((tmp_path / "runs").glob("merged-*.parquet"))) == 5 + 3 + 2


def test_runs_and_the_merge_on_s3_give_the_local_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    """Runs written to and merged from s3:// (read back through Beam's S3 file system) give the local table."""
    monkeypatch.setattr(rejected_table, "RUN_ROWS", 2)
    root = tmp_path / "in"
    make_bundle(root / "good", conv_id="good", seconds=2.0)
    for i in range(5):
        make_bundle(root / f"bad{i}", conv_id=f"bad{i}")
        (root / f"bad{i}" / "bundle.json").write_text('{"id": "x", "tracks": [')
    local = run(["--input", str(root), "--output", str(tmp_path / "out"), "--window_microturns", "4"])
    s3_in = s3_server.upload_tree(root, "rejected/in")
    remote_out = f"s3://{s3_server.bucket}/rejected/out"
    remote = run(["--input", s3_in, "--output", remote_out, "--window_microturns", "4", *s3_server.beam_args()])
    assert remote["rejected_by"] == local["rejected_by"] == {"read": {"malformed_json": 5}}
    rows = pq.read_table(pa.BufferReader(s3_server.download_tree("rejected/out")["rejected.parquet"])).to_pylist()
    assert [r["input"].rsplit("/", 2)[-2] for r in rows] == [f"bad{i}" for i in range(5)]
    assert [r["reason"] for r in rows] == [
        r["reason"].replace(str(root), s3_in) for r in pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    ]
