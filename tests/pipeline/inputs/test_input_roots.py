"""Input roots of the read stage's guard: the input root, extra roots (a Gander file's directory), and the way out.

PYTHONPATH=. python -m pytest -q tests/pipeline/test_input_roots.py
"""

from __future__ import annotations

import pytest

from pipeline.inputs.guard import InputPolicy, input_root
from schemas.bundle import BundleError


def test_extra_root_allows_its_files_and_nothing_else() -> None:
    policy = InputPolicy(root="/data/out/_gander_bundles", extra_roots=("/data/gander",))
    policy.confine("/data/out/_gander_bundles/c1/bundle.json", "file")
    policy.confine("/data/gander/audio/c1.wav", "track")
    for outside in ("/data/ganderish/c1.wav", "/data/gander/../secret.wav", "/etc/passwd"):
        with pytest.raises(BundleError) as e:
            policy.confine(outside, "track")
        assert e.value.kind == "path_outside_input"
    InputPolicy(root="/data/in", allow_outside=True).confine("/etc/passwd", "track")


def test_lhotse_manifest_file_root_is_its_directory() -> None:
    assert input_root("/data/lhotse/cuts_dev.jsonl.gz") == "/data/lhotse"
    assert input_root("/data/manifest.jsonl") == "/data"
    assert input_root("/data/bundles/") == "/data/bundles"
