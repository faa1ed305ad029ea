"""Issue 23.11, leftovers: `respond` on input bundles runs the pipeline into a temporary dataset; it is read into
memory and removed, so no ``microturn-respond-*`` directory stays in $TMPDIR (nor when the run fails).

    PYTHONPATH=. python -m pytest -q tests/evals/test_adversarial_leftovers.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from microturn_cli import main
from tests.crafted import tiny_checkpoint
from tests.factories import make_bundle


@pytest.mark.parametrize("bundle_ok", [True, False])
def test_respond_on_bundles_leaves_no_temporary_dataset(
    bundle_ok: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    make_bundle(tmp_path / "in" / "c", conv_id="c", seconds=2.0)
    ckpt = tiny_checkpoint(tmp_path / "checkpoint.pt")
    if not bundle_ok:  # every input rejected: nothing to respond to, still cleaned up
        (tmp_path / "in" / "c" / "bundle.json").write_text("{broken")
    argv = ["respond", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    status = main(argv)
    assert status == (0 if bundle_ok else 2), capsys.readouterr()
    assert not list(tmp.glob("microturn-respond-*")), sorted(p.name for p in tmp.iterdir())
    if bundle_ok:
        assert (tmp_path / "out" / "c_A" / "dialogue.wav").exists()
