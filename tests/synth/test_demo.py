"""Timeline placement, and the demo bundles: determinism, bundle round trip, planted events re-derived.

The event checker below is this test's own reading of the label rules (DESIGN.md §4 as the demo brief states
them); it deliberately imports nothing from the pipeline.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from schemas.bundle import conversation_from_dict
from synth.demo import SCRIPTS, VOICES, make_demo_bundles, plan_script
from synth.espeak import EspeakBackend
from synth.timeline import Placement, place_words

# --- timeline --------------------------------------------------------------------------------------------------


def _tone(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)
    x[0], x[-1] = 0.4, -0.4  # word edges are loud, as a trimmed TTS word's are
    return x


def test_word_times_are_exact_sample_positions():
    rate = 22_050
    placements = [
        Placement(speaker="A", text="one", audio=_tone(1000, 0), start_sample=123),
        Placement(speaker="B", text="two", audio=_tone(777, 1), start_sample=500),  # overlaps A: fine
        Placement(speaker="A", text="three", audio=_tone(10, 2), start_sample=1123),  # touches "one": fine
    ]
    tl = place_words(placements, sample_rate_hz=rate, tail_samples=50, speakers=["A", "B", "C"])
    assert list(tl.tracks) == ["A", "B", "C"]
    assert tl.num_samples == 1277 + 50 and all(len(t) == tl.num_samples for t in tl.tracks.values())
    assert tl.duration_s == tl.num_samples / rate
    got = [(w.text, w.speaker, w.start_s, w.end_s, w.source) for w in tl.words]
    assert got == [
        ("one", "A", 123 / rate, 1123 / rate, "tts"),
        ("two", "B", 500 / rate, 1277 / rate, "tts"),
        ("three", "A", 1123 / rate, 1133 / rate, "tts"),
    ]
    for p in placements:
        np.testing.assert_array_equal(tl.tracks[p.speaker][p.start_sample : p.end_sample], p.audio)
    for speaker, track in tl.tracks.items():
        inside = np.zeros(tl.num_samples, dtype=bool)
        for p in placements:
            if p.speaker == speaker:
                inside[p.start_sample : p.end_sample] = True
        assert not track[~inside].any()  # digital silence outside the words
        assert track.dtype == np.float32


def test_one_speaker_cannot_say_two_words_at_once():
    a = Placement(speaker="A", text="one", audio=_tone(100, 0), start_sample=0)
    b = Placement(speaker="A", text="two", audio=_tone(100, 1), start_sample=99)
    with pytest.raises(ValueError, match="overlap"):
        place_words([a, b], sample_rate_hz=16_000, tail_samples=0)
    with pytest.raises(ValueError, match="< 0"):
        place_words(
            [Placement(speaker="A", text="x", audio=_tone(5, 0), start_sample=-1)],
            sample_rate_hz=16_000,
            tail_samples=0,
        )


# --- the independent event checker --------------------------------------------------------------------------

IPU_GAP_S = 0.3
PAUSE_S = 0.8
BACKCHANNEL_MAX_S, BACKCHANNEL_MAX_WORDS = 1.0, 2
INTERRUPT_STOP_S = 1.0
OVERLAP_AFTER_S = 0.5
MICROTURN_S = 0.2


@dataclass
class Ipu:
    speaker: str
    start: float
    end: float
    n: int


def ipus_of(words: list[dict]) -> list[Ipu]:
    out = []
    for speaker in sorted({w["speaker"] for w in words}):
        mine = sorted((w for w in words if w["speaker"] == speaker), key=lambda w: w["start"])
        cur = Ipu(speaker, mine[0]["start"], mine[0]["end"], 1)
        for w in mine[1:]:
            gap = w["start"] - cur.end
            assert gap >= 0, f"{speaker} says two words at once at {w['start']}"
            assert gap < 0.2 or gap > 0.45, f"{speaker}'s gap of {gap:.3f} s at {cur.end:.3f} is near {IPU_GAP_S} s"
            if gap < IPU_GAP_S:
                cur.end, cur.n = w["end"], cur.n + 1
            else:
                out.append(cur)
                cur = Ipu(speaker, w["start"], w["end"], 1)
        out.append(cur)
    return sorted(out, key=lambda u: (u.start, u.end, u.speaker))


def derive_events(words: list[dict]) -> list[dict]:
    """Walk IPUs; every IPU of a speaker without the floor must be exactly one event kind, with margins."""
    units = ipus_of(words)
    floor = units[0].speaker
    events = []
    for u in units[1:]:
        if u.speaker == floor:
            continue
        m = max((x for x in units if x.speaker == floor and x.start < u.start), key=lambda x: x.end)
        dur = u.end - u.start
        kinds = {
            "backchannel": dur <= BACKCHANNEL_MAX_S
            and u.n <= BACKCHANNEL_MAX_WORDS
            and m.start < u.start
            and m.end > u.end,
            "interruption": m.end > u.start and m.end <= u.start + INTERRUPT_STOP_S and u.end > m.end,
            "overlap": (u.n >= 3 or dur > 1.0) and m.end > u.end + OVERLAP_AFTER_S,
            "yield": m.end <= u.start,
        }
        matched = [k for k, v in kinds.items() if v]
        assert len(matched) == 1, f"IPU of {u.speaker} at {u.start:.3f} s matches {matched or 'no rule'}"
        kind = matched[0]
        # margins: no threshold may decide the outcome
        if kind == "backchannel":
            assert dur <= 0.95 and m.end - u.end >= 0.5 and u.start - m.start >= 0.25
        elif kind == "interruption":
            assert 0.3 <= m.end - u.start <= 0.7 and u.end - m.end >= 0.25
        elif kind == "overlap":
            assert u.n >= 3 and m.end - u.end >= 0.6
        else:
            assert 0.2 <= u.start - max(x.end for x in units if x.start < u.start) <= 1.5
        offset = u.start / MICROTURN_S - round(u.start / MICROTURN_S)
        assert abs(offset) * MICROTURN_S >= 0.010, f"event onset {u.start} is within 10 ms of a micro-turn edge"
        events.append({"type": kind, "by": u.speaker, "of": floor, "start_s": u.start, "end_s": u.end})
        if kind in ("interruption", "yield"):
            floor = u.speaker
    return events


def derive_pauses(words: list[dict]) -> list[dict]:
    """Silences between one speaker's IPUs during which nobody else speaks."""
    units = ipus_of(words)
    out = []
    for speaker in sorted({u.speaker for u in units}):
        mine = [u for u in units if u.speaker == speaker]
        for a, b in pairwise(mine):
            if not any(x.start < b.start and x.end > a.end for x in units if x.speaker != speaker):
                assert b.start - a.end >= PAUSE_S
                out.append({"speaker": speaker, "start_s": a.end, "end_s": b.start})
    return sorted(out, key=lambda p: (p["start_s"], p["speaker"]))


# --- demo bundles ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[list[Path], float]:
    t0 = time.perf_counter()
    dirs = make_demo_bundles(tmp_path_factory.mktemp("demo"), count=5, seed=0)
    return dirs, time.perf_counter() - t0


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_demo_is_byte_identical_for_the_same_seed(demo, tmp_path):
    dirs, _ = demo
    again = make_demo_bundles(tmp_path, count=5, seed=0, backend=EspeakBackend())
    assert [d.name for d in again] == [d.name for d in dirs] == [f"demo-{i:04d}" for i in range(1, 6)]
    for a, b in zip(dirs, again, strict=True):
        files = sorted(p.name for p in a.iterdir())
        assert files == sorted(p.name for p in b.iterdir())
        for name in files:
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{a.name}/{name} differs"


def test_bundle_round_trips_and_audio_matches_words(demo):
    dirs, _ = demo
    stereo = 0
    for d in dirs:
        obj = _load(d / "bundle.json")
        conv = conversation_from_dict(
            obj, base=d.as_posix(), origin=str(d / "bundle.json"), read_text=lambda p: open(p).read()
        )
        assert conv.id == d.name and conv.language == "en"
        assert (conv.source, conv.licence) == ("microturn-demo", "CC0-1.0")
        assert conv.speakers == ("A", "B")
        assert conv.words is not None and all(w.source == "tts" for w in conv.words)
        assert [(w.text, w.start_s, w.end_s, w.speaker) for w in conv.words] == [
            (w["text"], w["start"], w["end"], w["speaker"]) for w in obj["words"]
        ]
        if conv.tracks[0].channel is not None:
            stereo += 1
            assert [(t.speaker, Path(t.path).name, t.channel) for t in conv.tracks] == [
                ("A", "both.flac", 0),
                ("B", "both.flac", 1),
            ]
            audio, rate = sf.read(conv.tracks[0].path, dtype="int16", always_2d=True)
            tracks = {"A": audio[:, 0], "B": audio[:, 1]}
        else:
            tracks = {}
            for t in conv.tracks:
                assert Path(t.path).name == f"{t.speaker}.wav" and sf.info(t.path).subtype == "PCM_16"
                tracks[t.speaker], rate = sf.read(t.path, dtype="int16")
        assert rate == 22_050
        n = len(tracks["A"])
        assert len(tracks["B"]) == n and 20.0 <= n / rate <= 40.0
        for speaker, track in tracks.items():
            inside = np.zeros(n, dtype=bool)
            for w in conv.words:
                if w.speaker == speaker:
                    a, b = round(w.start_s * rate), round(w.end_s * rate)
                    assert abs(a - w.start_s * rate) < 1e-6 and abs(b - w.end_s * rate) < 1e-6  # whole samples
                    assert np.abs(track[a:b]).max() > 1000  # the word is there
                    inside[a:b] = True
            assert not track[~inside].any()  # and nothing else is
    assert stereo == 1


def test_planted_events_are_what_the_rules_find(demo):
    dirs, elapsed = demo
    counts: Counter = Counter()
    total_s = 0.0
    for d in dirs:
        words = _load(d / "bundle.json")["words"]
        planted = _load(d / "planted.json")
        assert derive_events(words) == planted["events"]
        assert derive_pauses(words) == planted["pauses"]
        kinds = {e["type"] for e in planted["events"]}
        assert kinds == {"backchannel", "interruption", "overlap", "yield"}, d.name
        assert planted["pauses"], f"{d.name} has no within-turn pause"
        counts.update((e["type"], e["by"]) for e in planted["events"])
        total_s += sf.info(next(d.glob("*.wav"), d / "both.flac")).duration
    for kind in ("backchannel", "interruption", "overlap", "yield"):
        for by in ("A", "B"):
            assert counts[kind, by] >= 2, (kind, by, counts)
    print(f"\ndemo: {dict(sorted(counts.items()))}, {total_s:.1f} s of audio, generated in {elapsed:.1f} s")


@pytest.mark.parametrize("seed", range(1, 9))
def test_every_script_and_seed_obeys_the_rules(seed):
    backend = _shared_backend()
    for i, (_, script) in enumerate(SCRIPTS):
        timeline, planted = plan_script(script, backend=backend, voices=VOICES, rng=random.Random(seed * 31 + i))
        words = [{"text": w.text, "start": w.start_s, "end": w.end_s, "speaker": w.speaker} for w in timeline.words]
        assert derive_events(words) == planted["events"]
        assert derive_pauses(words) == planted["pauses"]
        assert 20.0 <= timeline.duration_s <= 40.0


_BACKEND: list[EspeakBackend] = []


def _shared_backend() -> EspeakBackend:
    if not _BACKEND:
        _BACKEND.append(EspeakBackend())
    return _BACKEND[0]
