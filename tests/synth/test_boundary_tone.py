"""synth.boundary_tone: the final fall / rise / level of a clause, with word spans carried through the time map."""

from __future__ import annotations

import numpy as np
import pytest

from synth.boundary_tone import END_RATE, TONE_S, boundary_tone
from synth.engines import VOICES_BY_NAME, Synthesiser

RATE = 16_000


def _f0_hz(x: np.ndarray, lo: float = 60.0, hi: float = 400.0) -> float:
    """Autocorrelation pitch of a short voiced stretch (Hz)."""
    x = (x - x.mean()) * np.hanning(len(x))
    ac = np.correlate(x, x, "full")[len(x) - 1 :]
    a, b = int(RATE / hi), int(RATE / lo)
    return RATE / (a + int(np.argmax(ac[a:b])))


def _buzz(seconds: float, f0: float = 120.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("mark", [".", "?", ","])
def test_the_last_pitch_period_moves_by_the_end_rate_and_the_start_stays(mark):
    x = _buzz(1.0)
    spans = [(0, 8000), (8000, 16000)]
    y, moved = boundary_tone(x, spans, mark)
    tail = int(0.04 * RATE)
    assert _f0_hz(y[-tail:]) == pytest.approx(120.0 * END_RATE[mark], rel=0.03)
    assert np.array_equal(y[:8000], x[:8000])  # before the last TONE_S seconds nothing changes
    mean_rate = (1 + END_RATE[mark]) / 2  # the rate is linear over the stretch
    assert len(y) == pytest.approx(RATE * (1 - TONE_S) + RATE * TONE_S / mean_rate, abs=RATE * 0.003)
    assert moved[0] == (0, 8000) and moved[1] == (8000, len(y))


def test_a_fall_lengthens_and_a_rise_shortens_a_word_inside_the_stretch():
    x = _buzz(1.0)
    spans = [(0, 12000), (12000, 14000), (14000, 16000)]  # two words inside the last 0.4 s
    fall, f_spans = boundary_tone(x, spans, ".")
    rise, r_spans = boundary_tone(x, spans, "?")
    assert f_spans[1][1] - f_spans[1][0] > 2000 > r_spans[1][1] - r_spans[1][0]
    assert f_spans[2][0] == f_spans[1][1] and f_spans[2][1] == len(fall)
    assert r_spans[2][1] == len(rise)


def test_any_other_mark_leaves_the_clause_as_it_is():
    x = _buzz(0.5)
    y, spans = boundary_tone(x, [(0, 8000)], "!")
    assert np.array_equal(x, y) and spans == [(0, 8000)]


def test_with_boundary_tones_a_flite_clause_ends_lower_at_a_full_stop_than_before_a_pause():
    """flite speaks ',' '.' '?' alike (the default keeps that); with `boundary_tone=True` the statement ends lower,
    the question higher."""
    synth = Synthesiser()
    text = "we could drive to the lake on sunday"
    try:
        plain = {mark: synth.clause(f"{text}{mark}", VOICES_BY_NAME["fl-awb"])[0] for mark in ",.?"}
        ends = {mark: synth.clause(f"{text}{mark}", VOICES_BY_NAME["fl-awb"], boundary_tone=True)[0] for mark in ",.?"}
    finally:
        synth.close()
    assert np.array_equal(plain["."], plain[","]) and np.array_equal(plain["?"], plain[","])
    tail = int(0.06 * RATE)
    f0 = {mark: _f0_hz(a[-tail - 800 : -800].astype(np.float64)) for mark, a in ends.items()}  # 50-110 ms from the end
    assert f0["."] < 0.95 * f0[","] and f0["?"] > 1.05 * f0[","], f0
    assert len(ends["."]) > len(ends[","]) > len(ends["?"])
