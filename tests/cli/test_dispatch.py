"""The `microturn` command: -v before or after the subcommand, --help of every subcommand, logging set up once.

.venv/bin/python -m pytest -q tests/cli/test_dispatch.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from microturn_cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("verbose_first", [True, False], ids=["microturn -v report", "microturn report -v"])
def test_verbose_before_or_after_the_subcommand(
    demo_dataset: Path, tmp_path: Path, verbose_first: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, out = str(demo_dataset / "dataset"), tmp_path / "r.html"
    argv = (
        ["-v", "report", dataset, "--out", str(out)] if verbose_first else ["report", "-v", dataset, "--out", str(out)]
    )
    assert main(argv) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: " ".join(w))
def test_every_subcommand_prints_its_own_help(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([*words, "--help"], ["-v", *words, "-h"]):
        try:
            status = main(argv)
        except SystemExit as e:  # argparse exits after printing the help
            status = e.code
        assert status == 0, argv
        out = capsys.readouterr().out
        assert out.startswith(f"usage: microturn {' '.join(words)} "), out[:200]


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(" ".join(words) in out for words in COMMANDS) and "-v, --verbose" in out


def test_unknown_command_is_an_error_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", "nothing"])
    assert e.value.code == 2
    printed = capsys.readouterr()
    assert "unknown command 'export nothing'" in printed.err and "export fdbench" in printed.err and not printed.out


def test_train_logs_its_info_lines_in_the_rank_format(demo_dataset: Path, tmp_path: Path) -> None:
    """Through `microturn train` the trainer's INFO lines appear, with the rank; the old hyphen flags still work."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    cmd = [
        sys.executable,
        "-m",
        "microturn_cli",
        "train",
        "--data",
        str(demo_dataset / "dataset"),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--device",
        "cpu",
        "--batch-size",
        "1",
        "--no-progress",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[rank 0] INFO trainer.train: model:" in done.stderr, done.stderr[-3000:]
    assert "step 2: loss" in done.stdout
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_underscore_flags_are_listed_and_hyphen_aliases_are_not(capsys: pytest.CaptureFixture[str]) -> None:
    for words, flag in ((("train",), "batch_size"), (("eval",), "max_batches")):
        with pytest.raises(SystemExit):
            main([*words, "--help"])
        out = capsys.readouterr().out
        assert f"--{flag}" in out and f"--{flag.replace('_', '-')}" not in out


def test_eval_help_names_the_two_word_eval_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: microturn eval ") and "--max_batches" in out
    assert "`microturn eval behaviour`" in out and "`microturn eval fdbench`" in out


def test_run_says_how_fast_it_went(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ..factories import make_bundle

    make_bundle(tmp_path / "in" / "c", conv_id="c", seconds=2.0)
    assert main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done in ") and last.endswith("x real time)"), last
