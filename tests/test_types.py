"""mypy on schemas/ and the pure pipeline stages: the files and settings in pyproject.toml's [tool.mypy].

    .venv/bin/python -m pytest -q tests/test_types.py

mypy is in the dev extra; where it is missing the test is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI"):
            pytest.fail("mypy is not installed: it is in the dev extra (bash scripts/setup.sh --dev)")
        pytest.skip("mypy is in the dev extra: bash scripts/setup.sh --dev")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=540
    )


def test_schemas_and_pure_stages_type_check() -> None:
    done = _mypy("--config-file", str(ROOT / "pyproject.toml"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.startswith("Success: no issues found")


def test_a_type_error_fails(tmp_path: Path) -> None:
    """The same settings on a file with a wrong return type: mypy exits 1 and names the line."""
    bad = tmp_path / "bad.py"
    bad.write_text("def microturns(num_samples: int) -> int:\n    return num_samples / 3200\n")
    done = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", str(bad), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert 'bad.py:2: error: Incompatible return value type (got "float", expected "int")' in done.stdout
