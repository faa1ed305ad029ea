"""espeak-ng backend: real synthesis (the Debian package espeak-ng must be installed)."""

from __future__ import annotations

import numpy as np
import pytest

from synth.espeak import ESPEAK_SAMPLE_RATE_HZ, EspeakBackend
from synth.tts import MAX_PEAK, TARGET_RMS, TRIM_RELATIVE_THRESHOLD, TTSBackend, Voice

LOW = Voice(voice_id="A", engine_voice="en-us+m3", rate_wpm=160, pitch=30)
HIGH = Voice(voice_id="B", engine_voice="en+f3", rate_wpm=185, pitch=72)


@pytest.fixture(scope="module")
def backend() -> EspeakBackend:
    return EspeakBackend()


def _f0_hz(x: np.ndarray, rate: int) -> float:
    """Median pitch over 40 ms frames, by autocorrelation peak in 60-400 Hz, voiced (loud) frames only."""
    n = int(0.04 * rate)
    lo, hi = rate // 400, rate // 60
    peak = np.abs(x).max()
    out = []
    for start in range(0, len(x) - n, n // 2):
        frame = x[start : start + n].astype(np.float64)
        if np.abs(frame).max() < 0.3 * peak:
            continue
        frame = frame - frame.mean()
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        out.append(rate / lag)
    assert out, "no voiced frames"
    return float(np.median(out))


def test_backend_satisfies_protocol(backend):
    assert isinstance(backend, TTSBackend)
    assert backend.sample_rate_hz == ESPEAK_SAMPLE_RATE_HZ == 22_050
    assert backend.name == "espeak-ng"


def test_word_is_float32_trimmed_and_normalised(backend):
    raw = backend._run("morning", LOW)
    x = backend.synthesize_word("morning", LOW)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.1 * backend.sample_rate_hz < len(x) < len(raw)  # non-empty, and espeak-ng's padding is gone
    peak = np.abs(x).max()
    assert abs(x[0]) >= TRIM_RELATIVE_THRESHOLD * peak
    assert abs(x[-1]) >= TRIM_RELATIVE_THRESHOLD * peak
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert rms == pytest.approx(TARGET_RMS, rel=1e-3) or peak == pytest.approx(MAX_PEAK, rel=1e-3)
    assert peak <= 1.0


def test_gain_db_scales_the_word(backend):
    quiet = Voice(voice_id="A", engine_voice=LOW.engine_voice, rate_wpm=LOW.rate_wpm, pitch=LOW.pitch, gain_db=-6)
    ref = backend.synthesize_word("water", LOW)
    x = backend.synthesize_word("water", quiet)
    np.testing.assert_allclose(x, ref * 10 ** (-6 / 20), atol=1e-6)


def test_same_word_is_cached_and_read_only(backend):
    first = backend.synthesize_word("again", HIGH)
    assert backend.synthesize_word("again", HIGH) is first
    with pytest.raises(ValueError):
        first[0] = 0.0


def test_synthesis_is_deterministic():
    a = EspeakBackend().synthesize_word("yesterday", HIGH)
    b = EspeakBackend().synthesize_word("yesterday", HIGH)
    np.testing.assert_array_equal(a, b)


def test_two_demo_voices_sound_different(backend):
    low = backend.synthesize_word("hello", LOW)
    high = backend.synthesize_word("hello", HIGH)
    assert len(low) != len(high) or not np.array_equal(low, high)
    f0_low, f0_high = _f0_hz(low, backend.sample_rate_hz), _f0_hz(high, backend.sample_rate_hz)
    assert f0_high > 1.3 * f0_low, (f0_low, f0_high)


def test_word_starting_with_dash_is_text_not_an_option(backend):
    assert len(backend.synthesize_word("-minus", LOW)) > 0


def test_missing_binary_says_what_to_install():
    with pytest.raises(FileNotFoundError, match="install Debian package espeak-ng"):
        EspeakBackend(binary="espeak-ng-that-does-not-exist")


def test_empty_word_and_bad_voice_are_rejected(backend):
    with pytest.raises(ValueError, match="empty"):
        backend.synthesize_word("  ", LOW)
    with pytest.raises(ValueError, match="pitch"):
        Voice(voice_id="X", engine_voice="en", pitch=120)
    with pytest.raises(ValueError, match="no voice 'no-such-voice-xyz'"):
        backend.synthesize_word("hello", Voice(voice_id="X", engine_voice="no-such-voice-xyz"))
    with pytest.raises(ValueError, match="no variant 'zz'"):
        backend.synthesize_word("hello", Voice(voice_id="X", engine_voice="en+zz"))
