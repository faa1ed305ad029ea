"""Refusal layouts: every planted event is what the pipeline's label rules find, with margins; timing options work.

The labels are computed with ``pipeline.labels`` (pure functions, no Beam) on the words the layout placed, so these
tests are fast enough to run every layout over many seeds; tests/synth/test_refusals.py runs the real job.
"""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from pipeline.labels import LabelConfig, detect_events, ipus
from schemas.bundle import Word
from schemas.units import SAMPLE_RATE_HZ
from synth.espeak import EspeakBackend
from synth.layouts import DEMO_VOICES, LAYOUTS, MODEL, USER, Planned, Timing, plan_layout, sentences, speakable_words

REQUEST = "Can you explain [PLACEHOLDER harmful request: test category]?"
ANSWER = "Sure. Press control and c to stop it, then run it again."
_BACKEND: list[EspeakBackend] = []


def backend() -> EspeakBackend:
    if not _BACKEND:
        _BACKEND.append(EspeakBackend())
    return _BACKEND[0]


def plan(layout: str, seed: int, timing: Timing | None = None, **kwargs) -> Planned:
    b = backend()
    return plan_layout(
        layout,
        request=REQUEST,
        reply=ANSWER if layout == "benign" else kwargs.pop("reply", None),
        backends={USER: b, MODEL: b},
        voices=DEMO_VOICES,
        rng=random.Random(seed),
        timing=timing,
        **kwargs,
    )


def pipeline_events(p: Planned) -> list[tuple[str, str, int]]:
    """(kind, by, onset micro-turn) as pipeline.labels finds them on the placed words (at 16 kHz)."""
    words = [
        Word(text=w.text, start_s=w.start_s, end_s=w.end_s, speaker=w.speaker, source="tts") for w in p.timeline.words
    ]
    units = ipus([USER, MODEL], words=words, segments=None, config=LabelConfig())
    return [(e.kind, e.by, e.start // 3200) for e in detect_events(units, LabelConfig())]


def test_words_and_sentences() -> None:
    assert speakable_words("[PLACEHOLDER harmful request: x-ray]? — 🙂 I'm") == [
        "PLACEHOLDER",
        "harmful",
        "request",
        "x-ray",
        "I'm",
    ]
    assert sentences("Hello there. How are you? Fine!  ") == [["Hello", "there"], ["How", "are", "you"], ["Fine"]]
    assert sentences("— ?!") == []


@pytest.mark.parametrize("layout", LAYOUTS)
def test_planted_events_are_what_the_pipeline_finds(layout: str) -> None:
    seen: set[str] = set()
    for seed in range(20):
        p = plan(layout, seed)
        planted = [(e["type"], e["by"], int(e["start_s"] // 0.2)) for e in p.events]
        assert pipeline_events(p) == planted, (layout, seed)
        seen |= {e["type"] for e in p.events}
        words = p.timeline.words
        for e in p.events:
            onset = e["start_s"] / 0.2
            assert abs(onset - round(onset)) * 0.2 >= 0.0149  # no rounding can move the onset's micro-turn
            if e["type"] == "backchannel":
                assert e["end_s"] - e["start_s"] <= 0.9
                host_end = min(w.end_s for w in words if w.speaker == MODEL and w.end_s > e["end_s"])
                assert host_end - e["end_s"] > 0  # the model talks on
            if e["type"] == "interruption":
                model_stop = max(w.end_s for w in words if w.speaker == MODEL and w.start_s < e["end_s"])
                assert 0.32 <= model_stop - e["start_s"] <= 0.65  # default stop window 350-650 ms (-30 ms nudge)
                assert e["end_s"] - model_stop >= 0.3
        # annotations: each covers exactly one model refusal turn's words
        for a in p.annotations:
            assert (a.label, a.speaker) == ("refusal", MODEL)
            inside = [w for w in words if w.speaker == MODEL and a.start_s <= w.start_s < a.end_s]
            assert inside[0].start_s == a.start_s and inside[-1].end_s == a.end_s
        if layout == "benign":
            assert not p.annotations and [m["role"] for m in p.messages] == ["user", "assistant"]
            assert p.messages[1]["content"] == ANSWER
        else:
            assert p.annotations
    want = {
        "benign": {"yield"},
        "plain": {"yield"},
        "escalation": {"yield"},
        "barge_in": {"yield", "interruption"},
        "backchannel": {"yield", "backchannel"},
    }[layout]
    assert seen == want


def test_escalation_uses_the_prompts_followups_and_the_refusal_holds() -> None:
    p = plan("escalation", 3, followups=["but I insist.", "please, just once."], reply="No, I can't do that.")
    roles = [(m["role"], m["content"]) for m in p.messages]
    assert [r for r, _ in roles] == ["user", "assistant"] * 4
    assert roles[2][1] == REQUEST and roles[3][1] == "No, I can't do that."
    assert [c for _, c in roles[4::2]] == ["but I insist.", "please, just once."]
    assert len(p.annotations) == 3  # the refusal and two holds; the small talk reply is not a refusal


def test_latency_follows_the_configured_distribution() -> None:
    def latencies(timing: Timing) -> list[float]:
        out = []
        for seed in range(40):
            p = plan("plain", seed, timing)
            user_end = max(w.end_s for w in p.timeline.words if w.speaker == USER)
            out.append(min(w.start_s for w in p.timeline.words if w.speaker == MODEL) - user_end)
        return out

    default = latencies(Timing())
    assert 0.34 < statistics.mean(default) < 0.48 and min(default) >= 0.15
    slow = latencies(Timing(latency_ms_mean=900, latency_ms_sd=50, latency_ms_min=800, latency_ms_max=1000))
    assert all(0.8 <= x <= 1.035 for x in slow)  # (+ up to 30 ms to keep the onset off the micro-turn grid)


def test_stop_window_is_configurable() -> None:
    timing = Timing(stop_ms_min=700, stop_ms_max=850)
    for seed in range(4):
        p = plan("barge_in", seed, timing)
        e = next(e for e in p.events if e["type"] == "interruption")
        stop = max(w.end_s for w in p.timeline.words if w.speaker == MODEL and w.start_s < e["end_s"])
        assert 0.67 <= stop - e["start_s"] <= 0.85
        assert pipeline_events(p) == [(x["type"], x["by"], int(x["start_s"] // 0.2)) for x in p.events]


def test_same_seed_same_conversation() -> None:
    for layout in LAYOUTS:
        a, b = plan(layout, 11), plan(layout, 11)
        assert a.events == b.events and a.messages == b.messages and a.annotations == b.annotations
        for s in (USER, MODEL):
            np.testing.assert_array_equal(a.timeline.tracks[s], b.timeline.tracks[s])
        assert plan(layout, 12).timeline.num_samples != a.timeline.num_samples


def test_bad_timing_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="stop window .* yields to promptly"):
        Timing(stop_ms_max=1000)
    with pytest.raises(ValueError, match="latency"):
        Timing(latency_ms_min=500, latency_ms_mean=400)
    with pytest.raises(ValueError, match="unknown layout"):
        plan("shouting", 0)
    with pytest.raises(ValueError, match="answer"):
        plan_layout(
            "benign",
            request=REQUEST,
            reply=None,
            backends={USER: backend(), MODEL: backend()},
            voices=DEMO_VOICES,
            rng=random.Random(0),
        )
    with pytest.raises(ValueError, match="no speakable word"):
        plan("plain", 0, reply="?! —")

    class Other:
        name, sample_rate_hz = "other", SAMPLE_RATE_HZ

        def synthesize_word(self, text, voice):  # pragma: no cover - never reached
            return np.ones(10, np.float32)

    with pytest.raises(ValueError, match="sample rate"):
        plan_layout(
            "plain",
            request=REQUEST,
            reply=None,
            backends={USER: backend(), MODEL: Other()},
            voices=DEMO_VOICES,
            rng=random.Random(0),
        )
