"""The library knows no command line: no module of the packages imports argparse or builds a parser; the command
line lives in cli/ (and microturn_cli.py), which the import-linter contracts keep on top (tests/test_imports.py)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBRARY = ("pipeline", "schemas", "synth", "trainer", "kernels", "evals")


def _argparse_users() -> list[str]:
    """`path:line` of every `import argparse` / `from argparse import ...` / `ArgumentParser(` in the library."""
    found = []
    for package in LIBRARY:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Attribute) and node.attr == "ArgumentParser":
                    names = ["argparse"]
                if any(n.split(".")[0] == "argparse" for n in names):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_library_module_uses_argparse() -> None:
    assert _argparse_users() == []


def test_importing_the_library_loads_no_argparse_parser() -> None:
    """Every module of the packages imports, and none defines a `build_parser` or a `*_main` command function."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"for pkg in {LIBRARY!r}:\n"
        "    p = importlib.import_module(pkg)\n"
        "    for m in pkgutil.walk_packages(p.__path__, pkg + '.'):\n"
        "        if m.name.startswith(('pipeline.aligners.whisperx', 'kernels.')):\n"
        "            continue  # optional heavy backends and the Triton kernels: not needed for the check\n"
        "        mod = importlib.import_module(m.name)\n"
        "        bad = [n for n in vars(mod) if n == 'build_parser' or (n.endswith('_main') and n != '_main')]\n"
        "        assert not bad, (m.name, bad)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
