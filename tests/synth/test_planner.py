"""The shared timeline planner and bundle writer, without a TTS engine: words are tones of a length set by the text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from schemas.bundle import conversation_from_dict
from schemas.units import MICROTURN_S
from synth.bundle_writer import pcm16, write_bundle
from synth.planner import BASE_RULES, TimelinePlanner
from synth.timeline import Placement, place_words
from synth.tts import Voice

RATE = 8000


class _ToneBackend:
    """A word is 0.1 s per letter of a 0.3 amplitude tone (a real TTSBackend, just not a voice)."""

    name = "tone"
    sample_rate_hz = RATE

    def synthesize_word(self, text: str, voice: Voice) -> np.ndarray:
        n = int(0.1 * RATE) * len(text)
        return (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32) + np.float32(0.01)


def _planner(seed: int = 0) -> TimelinePlanner:
    voices = {s: Voice(voice_id=s, engine_voice="x") for s in "AB"}
    rules = {**BASE_RULES, "pause_s": (0.5, 0.6), "interrupt_slack_s": 0.0, "interrupt_late_choices": False}
    return TimelinePlanner(dict.fromkeys(voices, _ToneBackend()), voices, random.Random(seed), rules)


def test_speak_places_words_gaps_and_pauses_under_the_rules() -> None:
    p = _planner()
    u = p.speak("A", [["abc", "de"], ["fgh"]], 100, pause_key="pause_s")
    assert [w.text for w in u.words] == ["abc", "de", "fgh"] and u.start == 100
    gap = u.words[1].start_sample - u.words[0].end_sample
    assert p.samples(0.04) <= gap <= p.samples(0.12)
    ((a, b),) = u.pauses
    assert (a, b) == (u.words[1].end_sample, u.words[2].start_sample) and p.samples(0.5) <= b - a <= p.samples(0.6)
    assert u.ipus == [(100, u.words[1].end_sample, 0, 1), (u.words[2].start_sample, u.end, 2, 2)]


@pytest.mark.parametrize("seed", range(5))
def test_interruption_cuts_the_host_inside_the_window_and_off_grid(seed: int) -> None:
    p = _planner(seed)
    host = p.speak("A", [["one", "two", "three", "four", "five", "six"]], 0)
    onset, j = p.interrupt_onset(host, own_end=0, cut_s=(0.35, 0.6)) or pytest.fail("no room")
    stop = p.cut(host, j)
    assert p.samples(0.35) - p.samples(0.03) <= stop - onset <= p.samples(0.6)  # off_grid moves < 2 margins
    assert len(host.words) == j + 1 >= 3 and host.interrupted and host.end == stop == host.ipus[-1][1]
    t = onset / RATE
    assert abs(t - round(t / MICROTURN_S) * MICROTURN_S) >= BASE_RULES["onset_margin_s"] - 1 / RATE
    p.event("interruption", "B", "A", p.speak("B", [["hey"]], onset))
    assert p.planted_events()[0]["start_s"] == onset / RATE


def test_talk_over_needs_room_in_the_host() -> None:
    p = _planner()
    host = p.speak("A", [["abcdefghij", "abcdefghij"]], 0)  # 2 s of talk
    onset = p.talk_over_onset(host, p.samples(0.3), own_end=0, after_key="backchannel_after_s")
    assert onset is not None and onset >= p.samples(0.3) and onset + p.samples(0.3 + 0.6) <= host.end
    assert p.talk_over_onset(host, p.samples(1.5), own_end=0, after_key="backchannel_after_s") is None


@pytest.mark.parametrize("stereo", [False, True])
def test_write_bundle_then_read_it_back(tmp_path: Path, stereo: bool) -> None:
    tone = _ToneBackend().synthesize_word("ab", Voice(voice_id="A", engine_voice="x"))
    words = [
        Placement(speaker="A", text="ab", audio=tone, start_sample=80),
        Placement(speaker="B", text="cd", audio=-tone, start_sample=900),
    ]
    timeline = place_words(words, sample_rate_hz=RATE, tail_samples=40, speakers=["A", "B"])
    d = tmp_path / "conv"
    planted = {"events": [{"type": "yield", "by": "B", "of": "A", "start_s": 0.1125, "end_s": 0.3125}]}
    path = write_bundle(
        d,
        conv_id="c1",
        timeline=timeline,
        planted=planted,
        source="test",
        stereo=stereo,
        tags={"k": "v"},
        model_speakers=("B",),
    )
    assert path == d / "bundle.json"
    conv = conversation_from_dict(
        json.loads(path.read_text()), base=d.as_posix(), origin=str(path), read_text=lambda p: Path(p).read_text()
    )
    assert (conv.id, conv.source, conv.licence, conv.language) == ("c1", "test", "CC0-1.0", "en")
    assert conv.speakers == ("A", "B") and conv.model_speakers == ("B",) and dict(conv.tags) == {"k": "v"}
    assert conv.words == timeline.words
    assert json.loads((d / "planted.json").read_text()) == planted
    for track in conv.tracks:
        audio, rate = sf.read(track.path, dtype="int16", always_2d=True)
        assert rate == RATE and (track.channel is not None) == stereo
        np.testing.assert_array_equal(audio[:, track.channel or 0], pcm16(timeline.tracks[track.speaker]))
    assert pcm16(np.array([2.0, -2.0, 0.5], np.float32)).tolist() == [32767, -32767, 16384]
