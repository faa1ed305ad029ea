"""A clause's final pitch movement for engines that ignore punctuation: falling at '.', rising at '?', level at ','.

    python -c "import numpy as np; from synth.boundary_tone import boundary_tone; \
a, s = boundary_tone(np.zeros(16000, np.float32), [(0, 8000), (8000, 16000)], '.'); print(len(a), s)"

flite's voices and festival's diphone voices speak "we could drive to the lake on the" with the same F0 and the same
durations whether it ends in ',', '.' or '?' (measured: ``synth.engines``' docstring), so in their speech a clause
before a yield and one before a within-turn pause end alike, and a listener - or a model - has only the words to
go on. In conversation the end of a turn is marked by the pitch at its last words: turn-yielding phrases end low
(falling) or high-rising, phrases before a pause that keeps the turn level or slightly rising (Gravano & Hirschberg
2011, "Turn-taking cues in task-oriented dialogue"). `synth dialogues --boundary_tones` gives those engines' clauses
that movement.

The movement is made by varying the playback rate over the clause's last `TONE_S` seconds: the rate goes linearly
from 1 (where the movement starts) to `END_RATE[mark]` (at the last sample). A rate below 1 lowers the pitch and
lengthens the sound together (a fall with final lengthening); above 1 raises it and shortens it. It is the "tape
speed" of speed perturbation (``VoiceSpec.at_speed``) varied over time, so formants move with the pitch by the same
few per cent; every word boundary is carried through the same time map, so word spans stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import resample_poly

TONE_S = 0.4
"""Length of the final stretch whose rate moves (seconds of the engine's clause)."""
END_RATE = {".": 0.88, "?": 1.15, ",": 1.03}
"""Playback rate at the clause's last sample per final mark: 0.88 lowers the last pitch period by 12 % (about 2.2
semitones, close to espeak-ng's own fall at '.') and lengthens the stretch by about 6 %; 1.15 raises it by 15 %
(espeak-ng: 79 -> 91 Hz at '?'); 1.03 is a slight continuation rise."""
OVERSAMPLE = 4
"""The clause is upsampled this much before it is read at fractional positions (linear interpolation)."""


def _time_map(n: int, start: int, end_rate: float) -> np.ndarray:
    """Output position (samples) of each input position 0..n: identity before `start`, then the integral of
    1 / rate with the rate linear from 1 at `start` to `end_rate` at `n`."""
    pos = np.arange(n + 1, dtype=np.float64)
    if n - start < 2:
        return pos
    frac = (pos[start:] - start) / (n - start)
    rate = 1.0 + (end_rate - 1.0) * frac
    steps = 0.5 * (1.0 / rate[1:] + 1.0 / rate[:-1])  # trapezoid per input sample
    out = pos.copy()
    out[start + 1 :] = start + np.cumsum(steps)
    return out


def boundary_tone(
    clip: np.ndarray, spans: Sequence[tuple[int, int]], mark: str, *, rate_hz: int = 16_000
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """`clip` (float, ending at its last word's end) with the final movement of `mark` ('.', '?' or ','; anything
    else leaves it as it is) over its last `TONE_S` seconds, and `spans` (each word's (start, end) sample) carried
    through the same time map. Returns float32 audio and the new spans."""
    end_rate = END_RATE.get(mark)
    n = len(clip)
    if end_rate is None or n < 2:
        return np.asarray(clip, dtype=np.float32), [(int(a), int(b)) for a, b in spans]
    start = max(0, n - int(round(TONE_S * rate_hz)))
    fwd = _time_map(n, start, end_rate)
    n_out = int(round(fwd[-1]))
    # input position of every output sample: the inverse map, read off by interpolation
    src = np.interp(np.arange(n_out, dtype=np.float64), fwd, np.arange(n + 1, dtype=np.float64))
    margin = min(start, 64)  # samples before the stretch the filter of the upsampler sees
    up = resample_poly(np.asarray(clip[start - margin :], dtype=np.float64), OVERSAMPLE, 1)
    grid = start - margin + np.arange(len(up), dtype=np.float64) / OVERSAMPLE
    tail = np.interp(np.minimum(src[start:], grid[-1]), grid, up)
    out = np.concatenate([np.asarray(clip[:start], dtype=np.float64), np.clip(tail, -1.0, 1.0)]).astype(np.float32)
    moved = [(int(round(fwd[a])), int(round(fwd[b]))) for a, b in spans]
    moved = [(min(a, n_out - 1), min(max(b, a + 1), n_out)) for a, b in moved]
    return out, moved
