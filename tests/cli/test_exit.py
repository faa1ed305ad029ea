"""Issue 13.8: `microturn report` sometimes exited 134 after writing its output ("terminate called without an active
exception": pyarrow's native threads alive at interpreter teardown). Commands run as processes must exit with their
own status every time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.job import run

from ..factories import make_bundle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exit")
    for i in range(2):
        make_bundle(root / "in" / f"c{i}", conv_id=f"c{i}")
    run(["--input", str(root / "in"), "--output", str(root / "ds")])
    return root / "ds"


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "microturn_cli", *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_report_exits_zero_twenty_times(tiny_dataset: Path, tmp_path: Path) -> None:
    for i in range(20):
        out = tmp_path / f"r{i}.html"
        proc = _cli("report", str(tiny_dataset), "--out", str(out))
        assert proc.returncode == 0, (i, proc.returncode, proc.stderr[-500:])
        assert "terminate called" not in proc.stderr
        assert out.stat().st_size > 0
        assert "wrote" in proc.stdout  # stdout is flushed before the process ends


def test_process_exit_status_of_errors_and_help() -> None:
    assert _cli("run", "--num_shards", "x", "--input", "a", "--output", "b").returncode == 2
    assert _cli("validate", "/nonexistent-dataset").returncode == 1
    proc = _cli("--help")
    assert proc.returncode == 0 and "usage: microturn" in proc.stdout
