"""synth.engines: speed perturbation of a voice (pitch, formants and tempo scaled together, word times with them)."""

from __future__ import annotations

import numpy as np
import pytest

from synth.engines import VOICES_BY_NAME, Synthesiser, _perturbed_rate

TEXT = "so what did you think of the garden, and the little house?"


def _centroid_hz(audio: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1.0 / rate)
    return float((freqs * spectrum).sum() / spectrum.sum())


def test_perturbed_rate_is_rate_times_speed_on_a_100_hz_grid():
    assert _perturbed_rate(22050, 1.0) == 22050
    assert _perturbed_rate(22050, 1.1) == 24300  # 24,255 Hz rounded to 100 Hz: 0.2 % off
    assert _perturbed_rate(16000, 0.9) == 14400


@pytest.mark.parametrize("name", ["es-us-m3", "fl-kal"])
def test_a_faster_voice_is_shorter_and_higher_with_its_word_times_scaled(name):
    synth = Synthesiser()
    try:
        plain, plain_spans = synth.clause(TEXT, VOICES_BY_NAME[name])
        fast, fast_spans = synth.clause(TEXT, VOICES_BY_NAME[name].at_speed(1.25))
    finally:
        synth.close()
    assert len(fast) / len(plain) == pytest.approx(1 / 1.25, rel=0.05)  # trimmed at word edges found anew
    assert len(fast_spans) == len(plain_spans) == len(TEXT.split())
    ratios = [(d - c) / (b - a) for (a, b), (c, d) in zip(plain_spans, fast_spans, strict=True)]
    # a word's span may take in the silence after it, which is capped in seconds, not scaled: the median word
    assert float(np.median(ratios)) == pytest.approx(1 / 1.25, rel=0.05)
    assert all(b <= c for (_, b), (c, _) in zip(fast_spans, fast_spans[1:], strict=False)) and fast_spans[-1][1] <= len(
        fast
    )
    assert _centroid_hz(fast) / _centroid_hz(plain) > 1.1


def test_speed_is_recorded_only_when_perturbed_and_bounded():
    voice = VOICES_BY_NAME["es-us-m3"]
    assert "speed" not in voice.to_dict()
    assert voice.at_speed(0.9).to_dict()["speed"] == 0.9
    assert voice.at_speed(0.9).name == voice.name
    with pytest.raises(ValueError, match="speed-perturbation"):
        voice.at_speed(3.0)
