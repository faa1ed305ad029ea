"""Issue 13.8: --output is not the job's to trash: a lock, no foreign directory, no user `_work/` deleted, no stale
shards, out-of-space stops the job with its message, and `microturn demo` never removes a directory it did not make."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import microturn_cli
from pipeline.job import run
from pipeline.runner.output_guard import LOCK_FILE, OutputError, claim_output, release_output
from schemas.validate import validate

from ..factories import make_bundle


def _inputs(root: Path, count: int = 1) -> Path:
    for i in range(count):
        make_bundle(root / f"c{i}", conv_id=f"c{i}")
    return root


def test_second_job_on_a_locked_output_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lock = claim_output(str(out))  # this process holds it, as a running job would
    try:
        with pytest.raises(OutputError, match="in use by another microturn job"):
            run(["--input", str(_inputs(tmp_path / "in")), "--output", str(out)])
        assert (out / LOCK_FILE).exists()  # the refused job did not remove the other's lock
    finally:
        release_output(lock)
    assert not (out / LOCK_FILE).exists()


def test_lock_of_a_dead_process_is_taken_over_and_released(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    manifest = run(["--input", str(_inputs(tmp_path / "in")), "--output", str(out)])
    assert manifest["counts"]["conversations_written"] == 1
    assert not (out / LOCK_FILE).exists()


def test_concurrent_jobs_one_refused(tmp_path: Path) -> None:
    inputs, out = _inputs(tmp_path / "in", 2), tmp_path / "out"
    code = "import sys; from pipeline.job import run; run(sys.argv[1:])"
    argv = ["--input", str(inputs), "--output", str(out)]
    procs = [subprocess.Popen([sys.executable, "-c", code, *argv], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    assert any("in use by another microturn job" in err for _, err in results)
    assert validate(str(out)).ok


def test_foreign_directory_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    argv = ["--input", str(_inputs(tmp_path / "in")), "--output", str(out)]
    with pytest.raises(OutputError, match="not a microturn dataset"):
        run(argv)
    assert sorted(os.listdir(out)) == ["thesis.tex"]
    run([*argv, "--overwrite"])
    assert (out / "thesis.tex").read_text() == "precious"
    assert (out / "manifest.json").exists()


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        run(["--input", str(_inputs(tmp_path / "in")), "--output", str(tmp_path / "file")])
    assert (tmp_path / "file").read_text() == "x"


def test_users_work_directory_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "_work").mkdir(parents=True)
    (out / "_work" / "notes.txt").write_text("mine")
    run(["--input", str(_inputs(tmp_path / "in")), "--output", str(out)])
    assert os.listdir(out / "_work") == ["notes.txt"]


def test_stale_shards_of_a_bigger_run_are_removed(tmp_path: Path) -> None:
    inputs, out = _inputs(tmp_path / "in", 4), tmp_path / "out"
    first = run(["--input", str(inputs), "--output", str(out), "--num_shards", "8"])
    assert first["counts"]["shards"] > 1
    second = run(["--input", str(inputs), "--output", str(out), "--num_shards", "1"])
    shards = sorted(n for n in os.listdir(out) if n.startswith("shard-"))
    assert shards == [s["name"] for s in second["shards"]] == ["shard-00000.tar"]
    assert os.listdir(out / "index") == ["shard-00000.parquet"]  # the stale shards' index files went too
    assert validate(str(out)).ok


def test_out_of_space_stops_the_job_with_that_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("MICROTURN_FAIL_ONCE", "shard:ENOSPC")  # writing the shard hits ENOSPC (pipeline/write.py)
    monkeypatch.setenv("MICROTURN_FAIL_ONCE_DIR", str(tmp_path))
    with pytest.raises(OutputError, match="No space left on device"):
        run(["--input", str(_inputs(tmp_path / "in")), "--output", str(out), "--num_shards", "1"])
    assert not (out / LOCK_FILE).exists()
    assert not (out / "rejected.parquet").exists()  # no input was blamed


def test_demo_does_not_remove_a_foreign_dataset_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "precious.txt").write_text("mine")
    assert microturn_cli.main(["demo", "--out", str(tmp_path), "--count", "1"]) == 2
    assert (tmp_path / "dataset" / "precious.txt").read_text() == "mine"
    assert "not a microturn dataset" in capsys.readouterr().err
