"""The real 4-party AMI excerpt end to end: unnamed headset tracks + RTTM turns, every speaker as the model."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.job import run
from schemas.reader import iter_samples
from schemas.validate import validate

from ..factories import FIXTURES

AMI = FIXTURES / "ami-seriously"


@pytest.mark.skipif(not AMI.exists(), reason="shared fixtures not present")
def test_ami_meeting_goes_through_with_user_and_others(tmp_path: Path) -> None:
    bundle = {
        "id": "ami-seriously",
        "language": "en",
        "source": "AMI Meeting Corpus (via pyannote-audio)",
        "licence": "CC-BY-4.0",
        "rttm": str(AMI / "mixture.rttm"),
        "tracks": [{"path": str(AMI / "sources" / f"source{i}.wav")} for i in range(4)],
    }
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bundle.json").write_text(json.dumps(bundle))
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert manifest["counts"]["conversations_written"] == 1, manifest["rejected_by_stage"]
    assert manifest["counts"]["perspectives"] == 4 and manifest["counts"]["samples"] == 4 * 2  # 60 s = 2 windows
    seen, talk = defaultdict(int), defaultdict(float)
    for s in iter_samples(str(tmp_path / "out")):
        meta = s["meta.json"]
        sp = meta["speakers"]
        assert len(sp["others"]) == 2 and len({sp["input"], sp["output"], *sp["others"]}) == 4
        assert s["others.dmel.npy"].shape == (150, 16, 80) and meta["streams"] == ["input", "others", "output"]
        seen[sp["output"]] += meta["num_microturns"]
        talk[sp["output"]] += float(s["activity.npy"][:, 2].sum()) * 0.2
    assert dict(seen) == {sp: 300 for sp in ("FEE013", "FEE016", "MEE014", "MEO015")}
    assert talk["MEE014"] == pytest.approx(0.74 + 0.45, abs=0.01)  # the RTTM's two short turns of MEE014
    report = validate(str(tmp_path / "out"))
    assert report.ok, report.render()
    tt = manifest["turn_taking"]
    assert tt["event_counts"]["backchannel"] >= 1 and sum(tt["overlap_bins"].values()) >= 1
