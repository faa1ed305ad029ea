"""Generated dMel frames -> speech activity per micro-turn; two mono streams -> one stereo dialogue.

    python -c "import numpy as np; from evals.vocode import frame_activity as f; print(f(np.zeros((2, 16, 80), int)))"

Speech activity uses the pipeline's own measure (`schemas.grid.activity`: the fraction of each micro-turn's 3,200
samples covered by speech intervals). The pipeline's intervals come from word timings; generated frames have no
words, so a 12.5 ms frame counts as speech when its mean log10 mel level over the 80 channels is above
`schemas.dmel.SPEECH_LEVEL_LOG10` (`schemas.dmel.speech_frames`, calibrated there), and speech frames closer than
`JOIN_GAP_S` are joined into one interval (the closure of a stop inside a word).

Audio from codes is the codec's inverse, `schemas.dmel.dmel_to_audio`.
"""

from __future__ import annotations

import numpy as np

from schemas.dmel import FRAMES_PER_MICROTURN, HOP_SAMPLES, SPEECH_LEVEL_LOG10, speech_frames
from schemas.grid import Interval, activity, merge
from schemas.units import SAMPLE_RATE_HZ

JOIN_GAP_S = 0.15
"""Speech frames separated by less than this (seconds) belong to one interval."""


def speech_intervals(codes_KFC: np.ndarray) -> list[Interval]:
    """Speech intervals (16 kHz samples) of dMel codes (K, 16, 80): frame f covers samples [200 f, 200 (f + 1))."""
    codes = np.asarray(codes_KFC)
    voiced = speech_frames(codes.reshape(-1, codes.shape[-1]))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = [
        Interval(start=int(a) * HOP_SAMPLES, end=int(b) * HOP_SAMPLES)
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
    return merge(runs, max_gap=int(JOIN_GAP_S * SAMPLE_RATE_HZ))


def frame_activity(codes_KFC: np.ndarray) -> np.ndarray:
    """Speech fraction of each micro-turn (K,) float32 from its 16 dMel frames (schemas.grid.activity)."""
    codes_KFC = np.asarray(codes_KFC)
    return activity(speech_intervals(codes_KFC), len(codes_KFC))


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two mono streams -> (n, 2) float32, the shorter zero-padded (left = user, right = model)."""
    n = max(len(left), len(right))
    out = np.zeros((n, 2), np.float32)
    out[: len(left), 0], out[: len(right), 1] = left, right
    return out


__all__ = ["FRAMES_PER_MICROTURN", "SPEECH_LEVEL_LOG10", "frame_activity", "speech_intervals", "stereo"]
