"""The write stage at scale: shard sizes follow --shard_size_mb, the derived shard count gives the same bytes with 1
and 2 workers, and a writer that fails half-way leaves no partial file and changes no byte of the output.

Beam's local FnApiRunner (Beam 2.77) does not retry a failed bundle: the job fails. So the retry test runs the job
with a fault injected once in the part writer and once in the shard writer (pipeline/write.py MICROTURN_FAIL_ONCE),
checks that each failed run left no temporary file, and that the rerun (which resumes) equals a clean run byte for
byte; runners that do retry (Dataflow, Flink, Spark) run the same attempt again, which is the same code path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.job import run
from schemas.tables import read_index
from schemas.validate import validate

from ..factories import make_bundle

TARGET_MB = 0.06  # format 3 shards are ~10x smaller than format 2's (0.4 then): still several shards


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten short conversations of 2.0-4.7 s (about 10-30 kB of samples each with 10-micro-turn windows)."""
    root = tmp_path_factory.mktemp("scale")
    for i in range(10):
        make_bundle(root / f"s{i:02d}", conv_id=f"s.{i:02d}", seconds=2.0 + 0.3 * i)
    return root


def _outputs(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "_work" not in p.relative_to(directory).parts
    }


def _argv(bundles: Path, out: Path, *extra: str) -> list[str]:
    return ["--input", str(bundles), "--output", str(out), "--window_microturns", "10", *extra]


def test_shard_sizes_follow_the_target_and_workers_do_not_change_the_bytes(bundles: Path, tmp_path: Path) -> None:
    m = run(_argv(bundles, tmp_path / "one", "--shard_size_mb", str(TARGET_MB)))
    two = _argv(bundles, tmp_path / "two", "--shard_size_mb", str(TARGET_MB))
    run([*two, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    one = _outputs(tmp_path / "one")
    assert _outputs(tmp_path / "two") == one

    shards = m["shards"]
    target = TARGET_MB * 1_000_000
    content = sum(s["size_bytes"] for s in shards)
    assert len(shards) >= max(2, math.ceil(content / target))  # the count grows with the bytes
    assert any(s["conversations"] > 1 for s in shards)
    index = read_index(str(tmp_path / "one")).to_pylist()
    for s in shards:
        assert len(one[s["name"]]) == s["size_bytes"]
        convs = {r["conversation_id"] for r in index if r["shard"] == s["name"]}
        assert len(convs) == s["conversations"]
        assert s["size_bytes"] <= target or len(convs) == 1, s
        rows = pq.read_table(tmp_path / "one" / s["index"]).to_pylist()  # the shard's own index file
        assert [r["key"] for r in rows] == sorted(r["key"] for r in index if r["shard"] == s["name"])
    assert sorted(n for n in one if n.startswith("index/")) == sorted(s["index"] for s in shards)
    assert pq.read_table(tmp_path / "one" / "index").num_rows == m["counts"]["samples"] == len(index)
    assert validate(str(tmp_path / "one")).ok

    big = run(_argv(bundles, tmp_path / "big"))  # the default target: everything fits in one shard
    assert [s["name"] for s in big["shards"]] == ["shard-00000.tar"]
    assert big["counts"]["samples"] == m["counts"]["samples"]
    assert big["shards"][0]["size_bytes"] < content  # the same members, one archive end instead of several


def test_a_writer_failing_half_way_leaves_no_partial_file_and_the_rerun_is_identical(
    bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = ("--shard_size_mb", str(TARGET_MB))
    run(_argv(bundles, tmp_path / "clean", *extra))
    out = tmp_path / "out"
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MICROTURN_FAIL_ONCE", "part,shard")
    monkeypatch.setenv("MICROTURN_FAIL_ONCE_DIR", str(markers))

    with pytest.raises(Exception, match="injected fault: part"):  # the local runner does not retry the bundle
        run(_argv(bundles, out, *extra))
    assert (markers / "part").exists() and not (markers / "shard").exists()
    assert list(out.rglob("*.partial")) == []
    assert not (out / "manifest.json").exists()

    with pytest.raises(Exception, match="injected fault: shard"):  # parts resumed; a shard fails half-way
        run(_argv(bundles, out, *extra))
    assert list(out.rglob("*.partial")) == []
    assert not (out / "manifest.json").exists()

    (out / ".shard-00000.tar.0123.partial").write_bytes(b"left by a killed attempt")
    (out / "index").mkdir(exist_ok=True)
    (out / "index" / ".shard-00000.parquet.0123.partial").write_bytes(b"left by a killed attempt")
    manifest = run(_argv(bundles, out, *extra))
    assert list(out.rglob("*.partial")) == []  # swept at the end of the successful run
    assert _outputs(out) == _outputs(tmp_path / "clean")
    assert manifest == json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert validate(str(out)).ok
