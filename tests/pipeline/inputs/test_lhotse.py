"""Lhotse manifests in (issue 13.3): recordings + supervisions and cuts, written by Lhotse itself, through the job.

The manifests are made with Lhotse's own classes and writers (``RecordingSet.to_file``, ``CutSet.to_file``), so the
field names are Lhotse's; the reader (pipeline.inputs.lhotse) parses them without Lhotse.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.decode import decode_conversation
from pipeline.job import run
from pipeline.read import list_inputs, load_conversation
from schemas.bundle import BundleError, parse_rttm
from schemas.reader import iter_samples
from schemas.tables import read_rejected

from ...factories import FIXTURES, tone

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet  # noqa: E402
from lhotse.audio import AudioSource  # noqa: E402
from lhotse.supervision import AlignmentItem  # noqa: E402

AMI = FIXTURES / "ami-seriously"
WORDS = {  # speaker -> (word, start s, duration s): a telephone-style exchange, one channel per speaker
    "alice": [("hello", 0.10, 0.40), ("there", 0.55, 0.45), ("yes", 2.40, 0.30)],
    "bob": [("hi", 1.45, 0.35), ("how", 1.90, 0.25), ("are", 3.00, 0.20), ("you", 3.25, 0.30)],
}


def _append_lines(path: Path, lines: list[str]) -> None:
    """Add raw lines to a gzipped JSONL manifest (a hand-broken line among Lhotse's own)."""
    with gzip.open(path, "at", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def _telephone(directory: Path, n: int = 2) -> tuple[RecordingSet, SupervisionSet]:
    """`n` stereo 16 kHz calls (alice left, bob right), 4 s each, written with Lhotse as recordings + supervisions;
    call 0's source path is relative to the manifests, the others absolute."""
    directory.mkdir(parents=True, exist_ok=True)
    recordings, sups = [], []
    for c in range(n):
        wav = directory / "audio" / f"call{c}.wav"
        wav.parent.mkdir(exist_ok=True)
        stereo = np.stack([tone(4.0, freq=200, seed=c), tone(4.0, freq=350, seed=c + 10)], axis=1)
        sf.write(wav, stereo, 16_000)
        source = f"audio/call{c}.wav" if c == 0 else str(wav)
        recordings.append(
            Recording(
                id=f"call{c}",
                sources=[AudioSource(type="file", channels=[0, 1], source=source)],
                sampling_rate=16_000,
                num_samples=64_000,
                duration=4.0,
            )
        )
        for channel, (speaker, words) in enumerate(WORDS.items()):
            for k, (word, start, duration) in enumerate(words):  # one supervision per word: turns of one word
                sups.append(
                    SupervisionSegment(
                        id=f"call{c}-{speaker}-{k}",
                        recording_id=f"call{c}",
                        start=start,
                        duration=duration,
                        channel=channel,
                        speaker=speaker,
                        language="English",
                        text=word,
                        alignment={"word": [AlignmentItem(symbol=word, start=start, duration=duration, score=0.9)]},
                    )
                )
    rs, ss = RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(sups)
    rs.to_file(directory / "tele_recordings_train.jsonl.gz")
    ss.to_file(directory / "tele_supervisions_train.jsonl.gz")
    return rs, ss


def test_stereo_calls_with_word_alignments_become_conversations(tmp_path: Path) -> None:
    _telephone(tmp_path / "in")
    convs = {c.id: c for c in map(load_conversation, list_inputs(str(tmp_path / "in")))}
    assert sorted(convs) == ["call0", "call1"]  # the wavs under audio/ are the manifests' own, not inputs
    conv = convs["call0"]
    assert [(t.speaker, t.path, t.channel) for t in conv.tracks] == [
        ("alice", str(tmp_path / "in" / "audio" / "call0.wav"), 0),
        ("bob", str(tmp_path / "in" / "audio" / "call0.wav"), 1),
    ]
    assert conv.language == "en" and conv.split == "train" and conv.source == "lhotse:tele" and conv.texts is None
    got = sorted((w.speaker, w.text, w.start_s, round(w.end_s, 6), w.score) for w in conv.words)
    want = sorted((sp, t, s, round(s + d, 6), 0.9) for sp, ws in WORDS.items() for t, s, d in ws)
    assert got == want

    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert manifest["counts"]["conversations_written"] == 2, manifest["rejected_by_stage"]
    seen = set()
    for s in iter_samples(str(tmp_path / "out")):
        meta = s["meta.json"]
        seen.add((meta["conversation_id"], meta["speakers"]["output"]))
        assert meta["num_microturns"] == 20  # 4.0 s
        mine = [w for w in s["words.json"] if w["stream"] == "output"]
        starts = sorted(w["start_s"] for w in mine)
        assert starts == sorted(st for _, st, _ in WORDS[meta["speakers"]["output"]])
    assert seen == {(c, sp) for c in ("call0", "call1") for sp in ("alice", "bob")}


def test_malformed_lines_are_rejected_with_a_reason_and_the_rest_go_through(tmp_path: Path) -> None:
    _telephone(tmp_path / "in")
    _append_lines(tmp_path / "in" / "tele_supervisions_train.jsonl.gz", ["{not json", json.dumps({"id": "x"})])
    orphan = {"id": "o", "recording_id": "nowhere", "start": 0, "duration": 1, "channel": 0, "speaker": "bob"}
    _append_lines(tmp_path / "in" / "tele_supervisions_train.jsonl.gz", [json.dumps(orphan)])
    no_speaker = {"id": "n", "recording_id": "call2", "start": 0, "duration": 1, "channel": 0}
    _append_lines(tmp_path / "in" / "tele_supervisions_train.jsonl.gz", [json.dumps(no_speaker)])
    _append_lines(
        tmp_path / "in" / "tele_recordings_train.jsonl.gz",
        [
            json.dumps({"id": "call2", "sources": [{"type": "file", "channels": [0], "source": "audio/call0.wav"}],
                        "sampling_rate": 16000, "num_samples": 64000, "duration": 4.0}),
            json.dumps({"id": "bad-rec", "sampling_rate": 16000, "num_samples": 1, "duration": 1.0}),
            json.dumps({"id": "speed", "sources": [{"type": "command", "channels": [0], "source": "sox x -"}],
                        "sampling_rate": 16000, "num_samples": 1, "duration": 1.0}),
        ],
    )  # fmt: skip
    manifest = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert manifest["counts"]["conversations_written"] == 2
    rows = read_rejected(str(tmp_path / "out")).to_pylist()
    got = {(r["input"].rsplit("/", 1)[-1], r["stage"], r["kind"]) for r in rows}
    assert got == {
        ("tele_supervisions_train.jsonl.gz:15", "read", "malformed_json"),
        ("tele_supervisions_train.jsonl.gz:16", "read", "lhotse_bad_line"),
        ("tele_supervisions_train.jsonl.gz:17", "read", "lhotse_orphan_supervision"),
        ("tele_recordings_train.jsonl.gz:3", "read", "lhotse_bad_supervision"),
        ("tele_recordings_train.jsonl.gz:4", "read", "lhotse_bad_recording"),
        ("tele_recordings_train.jsonl.gz:5", "read", "lhotse_bad_recording"),
    }, got
    reasons = {r["kind"]: r["reason"] for r in rows}
    assert "has no 'speaker'" in reasons["lhotse_bad_supervision"]
    assert "'nowhere'" in reasons["lhotse_orphan_supervision"]


def test_a_speaker_on_two_channels_is_a_channel_map_rejection(tmp_path: Path) -> None:
    rs, ss = _telephone(tmp_path / "in", n=1)
    moved = [s if s.id != "call0-bob-0" else dataclasses.replace(s, channel=0) for s in ss]
    SupervisionSet.from_segments(moved).to_file(tmp_path / "in" / "tele_supervisions_train.jsonl.gz")
    (ref,) = list_inputs(str(tmp_path / "in"))
    with pytest.raises(BundleError, match="'bob' is on channels") as e:
        load_conversation(ref)
    assert e.value.kind == "lhotse_channel_map"


def test_cuts_with_start_and_duration_cut_the_audio_and_shift_the_words(tmp_path: Path) -> None:
    rs, ss = _telephone(tmp_path / "tele")
    cuts = CutSet.from_manifests(recordings=rs, supervisions=ss)
    call0 = next(c for c in cuts if c.recording_id == "call0")
    part = call0.truncate(offset=1.4, duration=2.2, keep_excessive_supervisions=False).with_id("call0-part")
    call1 = next(c for c in cuts if c.recording_id == "call1")
    cuts_file = tmp_path / "tele" / "cuts.jsonl.gz"  # beside the audio: call0's relative path resolves
    CutSet.from_cuts([part, call1]).to_file(cuts_file)
    _append_lines(cuts_file, ['{"id": "m", "type": "MixedCut", "tracks": []}'])

    refs = list_inputs(str(cuts_file))  # a cuts file given itself: its lines only, not the pair beside it
    assert len(refs) == 3
    conv = load_conversation(refs[0])
    assert conv.id == "call0-part" and {(t.start_s, t.duration_s) for t in conv.tracks} == {(1.4, 2.2)}
    got = sorted((w.speaker, w.text, round(w.start_s, 6)) for w in conv.words)
    want = sorted((sp, t, round(s - 1.4, 6)) for sp, ws in WORDS.items() for t, s, d in ws if 1.4 <= s and s + d <= 3.6)
    assert got == want and ("bob", "hi", 0.05) in got
    decoded = decode_conversation(conv)  # the audio is the recording's [1.4, 3.6) s, channel by channel
    stereo, _ = sf.read(tmp_path / "tele" / "audio" / "call0.wav", dtype="float32")
    for channel, speaker in enumerate(WORDS):
        np.testing.assert_allclose(decoded.streams[speaker], stereo[22_400:57_600, channel], atol=1e-4)
    with pytest.raises(BundleError) as e:
        load_conversation(refs[2])
    assert e.value.kind == "lhotse_bad_cut" and "MixedCut" in str(e.value)

    manifest = run(["--input", str(cuts_file), "--output", str(tmp_path / "out")])
    assert manifest["counts"]["conversations_written"] == 2
    assert [r["kind"] for r in read_rejected(str(tmp_path / "out")).to_pylist()] == ["lhotse_bad_cut"]
    lengths = {
        s["meta.json"]["conversation_id"]: s["meta.json"]["num_microturns"] for s in iter_samples(str(tmp_path / "out"))
    }
    assert lengths == {"call0-part": 11, call1.id: 20}  # 2.2 s and 4.0 s


SOURCES = {0: "MEO015", 1: "FEE013", 2: "MEE014", 3: "FEE016"}  # headset -> speaker (tests/pipeline/test_align_ami)
TEXTS = {"A": "MEO015", "B": "FEE013", "C": "MEE014", "D": "FEE016"}  # text file -> speaker (same)


def _ami(directory: Path) -> None:
    """The AMI excerpt as Lhotse's AMI recipe (ihm) keeps it: one recording with a source per headset, and a
    supervision per RTTM turn on its speaker's headset channel, with text only; each speaker's words are spread over
    their turns by duration."""
    directory.mkdir(parents=True)
    info = sf.info(AMI / "sources" / "source0.wav")
    rec = Recording(
        id="ami-seriously",
        sources=[
            AudioSource(type="file", channels=[i], source=str(AMI / "sources" / f"source{i}.wav")) for i in SOURCES
        ],
        sampling_rate=info.samplerate,
        num_samples=info.frames,
        duration=info.frames / info.samplerate,
    )
    channel = {sp: i for i, sp in SOURCES.items()}
    turns = parse_rttm((AMI / "mixture.rttm").read_text())
    sups = []
    for label, speaker in TEXTS.items():
        words = (AMI / "text" / f"mixture.{label}.words_joined.txt").read_text().split()
        mine = [t for t in turns if t.speaker == speaker]
        total = sum(t.end_s - t.start_s for t in mine)
        cuts = np.round(np.cumsum([0] + [(t.end_s - t.start_s) / total for t in mine]) * len(words)).astype(int)
        for k, turn in enumerate(mine):
            sups.append(
                SupervisionSegment(
                    id=f"{speaker}-{k}",
                    recording_id=rec.id,
                    start=turn.start_s,
                    duration=round(turn.end_s - turn.start_s, 6),
                    channel=channel[speaker],
                    speaker=speaker,
                    text=" ".join(words[cuts[k] : cuts[k + 1]]),
                )
            )
    RecordingSet.from_recordings([rec]).to_file(directory / "ami-ihm_recordings_dev.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(directory / "ami-ihm_supervisions_dev.jsonl.gz")


@pytest.mark.skipif(not AMI.exists(), reason="shared fixtures not present")
def test_ami_recording_with_text_only_is_aligned(tmp_path: Path) -> None:
    _ami(tmp_path / "in")
    (conv,) = map(load_conversation, list_inputs(str(tmp_path / "in")))
    assert [(t.speaker, Path(t.path).name) for t in conv.tracks] == sorted(
        (sp, f"source{i}.wav") for i, sp in SOURCES.items()
    )
    assert conv.words is None and conv.split == "dev" and conv.source == "lhotse:ami-ihm"
    for label, speaker in TEXTS.items():  # each speaker's text, rejoined in time order
        assert conv.texts[speaker].split() == (AMI / "text" / f"mixture.{label}.words_joined.txt").read_text().split()
    assert {(s.speaker, s.start_s) for s in conv.segments} == {
        (t.speaker, t.start_s) for t in parse_rttm((AMI / "mixture.rttm").read_text())
    }

    outside = ["--allow_outside_paths"]  # the recording's sources are the shared fixture's files
    no_aligner = run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out0"), *outside])
    assert no_aligner["rejected_by_stage"] == {"align": 1}  # text without times needs --aligner, says so

    manifest = run(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--aligner", "pocketsphinx", *outside]
    )
    assert manifest["counts"]["conversations_written"] == 1, manifest["rejected_by_stage"]
    turns = parse_rttm((AMI / "mixture.rttm").read_text())
    inside = total = 0
    for s in iter_samples(str(tmp_path / "out")):
        meta = s["meta.json"]
        speaker, t0 = meta["speakers"]["output"], meta["window"] * 150 * 0.2
        for w in s["words.json"]:
            if w["stream"] == "output" and w.get("score") is not None:
                total += 1
                mid = t0 + (w["start_s"] + w["end_s"]) / 2
                inside += any(t.speaker == speaker and t.start_s - 0.3 <= mid <= t.end_s + 0.3 for t in turns)
    assert total > 150 and inside / total > 0.9, (inside, total)
