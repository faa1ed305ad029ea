"""Every `python -c ...` usage line at the top of a module docstring runs (exit 0), so the usage lines stay true.

    .venv/bin/python -m pytest -q tests/test_docstring_usage.py

A usage line is an indented line of the module docstring's first indented block that starts with ``python -c``;
lines ending in a backslash continue it, as in a shell. Each runs in bash from the repository root with the venv's
python first on PATH and the model hubs offline. Paths under ``demo-out/`` (what `microturn demo --out demo-out`
writes) are pointed at the session's demo dataset, and ``runs/tiny/`` (what `microturn train --out runs/tiny`
writes) at a one-step tiny run on it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "schemas", "synth", "trainer", "kernels", "cli")
TIMEOUT_S = 180


def usage_lines(path: Path) -> list[str]:
    """The `python -c` commands of the first indented block of `path`'s module docstring, continuations joined."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False) or ""
    block: list[str] = []
    for line in doc.splitlines()[1:]:
        if line.startswith("    "):
            block.append(line.strip())
        elif block:  # the first indented block ended
            break
    commands: list[str] = []
    joined = ""
    for line in block:
        joined += line
        if joined.endswith("\\"):
            joined = joined[:-1]
            continue
        if joined.startswith("python -c "):
            commands.append(joined)
        joined = ""
    return commands


def _cases() -> list[tuple[str, str]]:
    return [
        (str(p.relative_to(REPO)), cmd)
        for pkg in PACKAGES
        for p in sorted((REPO / pkg).rglob("*.py"))
        for cmd in usage_lines(p)
    ]


CASES = _cases()


def test_usage_lines_are_found() -> None:
    assert len(CASES) >= 30, CASES  # a broken parser would find none and pass every run vacuously
    assert any(cmd.endswith("# -> 6") for _, cmd in CASES)  # schemas/units.py, with its comment


@pytest.fixture(scope="module")
def tiny_run(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cli.train import cmd_train as train_main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert (
        train_main(
            [
                "--data",
                str(demo_dataset / "dataset"),
                "--out",
                str(out),
                "--steps",
                "1",
                "--device",
                "cpu",
                "--no_progress",
            ]
        )
        == 0
    )
    return out


@pytest.mark.parametrize(("module", "command"), CASES, ids=[f"{m}:{i}" for i, (m, _) in enumerate(CASES)])
def test_usage_line_runs(module: str, command: str, request: pytest.FixtureRequest) -> None:
    if "../shared/" in command and not (REPO.parent / "shared" / "fixtures").is_dir():
        pytest.skip("names a file of ../shared/fixtures, which this checkout does not have beside it")
    if "demo-out/" in command:
        command = command.replace("demo-out/", f"{request.getfixturevalue('demo_dataset')}/")
    if "runs/tiny/" in command:
        command = command.replace("runs/tiny/", f"{request.getfixturevalue('tiny_run')}/")
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=str(REPO),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    done = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{module}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
