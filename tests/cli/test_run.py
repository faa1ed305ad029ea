"""`microturn run` (cli/run.py) takes the output's location from what `pipeline.job.run` returns, not from its flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.run import cmd_run
from pipeline.job import run
from schemas.tables import read_manifest

from ..factories import make_bundle


def test_the_job_returns_its_manifest_and_output_and_the_cli_prints_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_bundle(tmp_path / "in" / "c0", conv_id="c0")
    out = f"{tmp_path / 'ds'}/"  # as given, trailing slash kept
    result = run(["--input", str(tmp_path / "in"), "--output", out, "--window_microturns", "4"])
    assert result == read_manifest(str(tmp_path / "ds")) and result.output == out  # still the manifest dict
    assert cmd_run(["--input", str(tmp_path / "in"), f"--output={out}", "--window_microturns", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"output:        {out}\n" in printed and "conversations: 1 written, 0 rejected, 1 inputs" in printed
