"""Speech runs on a stream's energy: 5 ms frames, and the runs of frames that hold speech.

python -c "import numpy as np, pipeline.aligners.energy as e; print(e.speech_runs(np.r_[np.zeros(9), np.ones(9)]))"
"""

from __future__ import annotations

import numpy as np

from schemas.units import SAMPLE_RATE_HZ

ENERGY_FRAME_SAMPLES = 80
"""5 ms energy frames for boundary refinement."""
RUN_THRESHOLD_DB = -45.0
"""A 5 ms frame belongs to a speech run when its energy is within this many dB of the loudest frame within
`RUN_CONTEXT_S`; the same margin as `boundaries.REFINE_THRESHOLD_DB`."""
RUN_CONTEXT_S = 1.0


def frame_energy(pcm: np.ndarray) -> np.ndarray:
    """Mean square of each whole 5 ms frame of `pcm` (16 kHz mono), float64, shape (len(pcm) // 80,)."""
    n = len(pcm) // ENERGY_FRAME_SAMPLES
    frames = pcm[: n * ENERGY_FRAME_SAMPLES].astype(np.float64).reshape(n, ENERGY_FRAME_SAMPLES)
    return np.mean(frames**2, axis=1)


def voiced_frames(energy: np.ndarray, threshold_db: float = RUN_THRESHOLD_DB) -> np.ndarray:
    """Which 5 ms frames hold sound: energy within `threshold_db` of the loudest frame within `RUN_CONTEXT_S`, and
    above digital silence. Bool, same shape as `energy`."""
    from scipy.ndimage import maximum_filter1d

    if energy.size == 0:
        return np.zeros(0, dtype=bool)
    local_peak = maximum_filter1d(energy, size=int(RUN_CONTEXT_S * SAMPLE_RATE_HZ / ENERGY_FRAME_SAMPLES) | 1)
    return (energy >= local_peak * 10 ** (threshold_db / 10)) & (energy > 1e-10)


def speech_runs(energy: np.ndarray) -> list[tuple[int, int]]:
    """Runs [a, b) of 5 ms frames that hold speech (see `RUN_THRESHOLD_DB`), separated by at least one quiet frame."""
    if energy.size == 0:
        return []
    voiced = voiced_frames(energy)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
