"""The output guard's idea of "the job's own files", on local disk (S3: tests/pipeline/test_job_s3_guard.py): only
files an earlier run of the job wrote are ever deleted, whatever a user's files are called."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.runner.output_guard import (
    is_job_temporary,
    is_our_output,
    remove_stale_shards,
    written_by_earlier_runs,
)


def test_temporary_names_of_the_jobs_files_only() -> None:
    assert is_job_temporary(".shard-00003.tar.0123abcd.partial")
    assert is_job_temporary("index/.shard-00003_01.parquet.0123abcd.partial")
    assert is_job_temporary(".manifest.json.0123abcd.partial")
    assert not is_job_temporary(".thesis.tex.0123abcd.partial")  # a user's file that looks like one
    assert not is_job_temporary(".notes.partial")
    assert not is_job_temporary("index/.mine.parquet.0123.partial")


def _manifest(names: list[str]) -> str:
    return json.dumps({"manifest_version": 3, "format_version": 2, "shards": [{"name": n} for n in names]})


def test_stale_shards_are_those_an_earlier_run_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "index").mkdir(parents=True)
    (out / "_work" / "0123456789abcdef" / "shards").mkdir(parents=True)
    for name in ("shard-00000.tar", "shard-00001.tar", "shard-00002.tar", "shard-00042.tar"):
        (out / name).write_bytes(b"x")
        (out / "index" / name.replace(".tar", ".parquet")).write_bytes(b"x")
    (out / "manifest.json").write_text(_manifest(["shard-00000.tar", "shard-00001.tar"]))
    (out / "_work" / "0123456789abcdef" / "shards" / "shard-00002.tar.json").write_text("{}")  # interrupted run
    earlier = written_by_earlier_runs(str(out))
    assert "shard-00042.tar" not in earlier and {"shard-00001.tar", "shard-00002.tar"} <= earlier
    removed = remove_stale_shards(str(out), ["shard-00000.tar"], earlier)
    assert removed == ["index/shard-00001.parquet", "index/shard-00002.parquet", "shard-00001.tar", "shard-00002.tar"]
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.tar", "shard-00042.tar"]


def test_another_tools_shards_are_not_a_dataset_of_ours(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "shard-00000.tar").write_bytes(b"x")
    assert not is_our_output(str(theirs))
    (theirs / "_work" / "0123456789abcdef").mkdir(parents=True)  # ... unless a run of ours was interrupted there
    assert is_our_output(str(theirs))
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "shard-00000.tar").write_bytes(b"x")
    (ours / "manifest.json").write_text(_manifest(["shard-00000.tar"]))
    assert is_our_output(str(ours))
