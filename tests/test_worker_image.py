"""Issue 23.6: the worker image's build context leaves out the .venv, outputs, caches and .git, and the image gets a
CPU torch at the pinned versions before `pip install .` (checked on the files: docker cannot reach its registries
from here, so the image itself is not built by the tests).

.venv/bin/python -m pytest -q tests/test_worker_image.py
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether `path` (relative, posix) or a folder above it matches a .dockerignore pattern (`**/` at any depth;
    no `!` exceptions are used in ours)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        anywhere = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], anywhere)
            ):
                return True
    return False


def _patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_the_context_leaves_out_venv_outputs_caches_and_git() -> None:
    patterns = _patterns()
    assert not any(p.startswith("!") for p in patterns)
    for path in (
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".git/objects/pack/x.pack",
        "demo-out/dataset/shard-00000.tar",
        "out/x",
        "pipeline/__pycache__/job.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        "microturn.egg-info/PKG-INFO",
    ):
        assert _ignored(path, patterns), path


def test_every_copied_source_is_in_the_context() -> None:
    patterns = _patterns()
    sources = [
        src
        for line in _dockerfile().splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    assert {"pyproject.toml", "pipeline", "schemas", "synth", "trainer", "kernels"} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), src
        assert not _ignored(src, patterns), src
        assert not _ignored(f"{src}/job.py", patterns), src


def test_a_cpu_torch_at_the_pinned_versions_is_installed_before_the_package() -> None:
    text = _dockerfile()
    args = dict(re.findall(r"^ARG (\w+)=(\S*)$", text, flags=re.MULTILINE))
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")  # (tomllib is 3.11+; we support 3.10)
    pins = {
        req.name: req.specifier
        for req in map(Requirement, re.findall(r'^\s*"(torch(?:audio)?[~=<>].*?)"', pyproject, re.M))
    }
    version = Version(args["TORCH_VERSION"])
    assert version in pins["torch"] and version in pins["torchaudio"]
    assert Version(f"{version}+cpu") in pins["torch"]  # the CPU wheel's local version satisfies the pin too
    torch_at = text.index('--index-url "$TORCH_INDEX_URL"')
    assert '"torch==$TORCH_VERSION" "torchaudio==$TORCH_VERSION"' in text[torch_at:]
    assert torch_at < text.index("RUN pip install --no-cache-dir . && pip check")
