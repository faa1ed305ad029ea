"""dMel constants: the one home of the analysis parameters, the frame grid and the 16 code levels (DESIGN.md §3).

    python -c "from schemas.dmel import LEVELS, FRAMES_PER_MICROTURN; print(FRAMES_PER_MICROTURN, LEVELS[:3])"

The codes are computed in pipeline/features.py (`dmel_codes`); the trainer recomputes the continuous log-mel from
raw audio with the same parameters (trainer/data.py) and dequantises codes with `dequantise_dmel`
(schemas/layout.py). Sample rate and the micro-turn length live in schemas/units.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.units import SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN

HOP_SAMPLES = 200
"""dMel hop: 12.5 ms at 16 kHz."""
FRAMES_PER_MICROTURN = SAMPLES_PER_MICROTURN // HOP_SAMPLES
"""16 dMel frames per micro-turn."""
WIN_SAMPLES = 800
"""Hann window length: 50 ms at 16 kHz."""
N_FFT = 1024
"""FFT size; torch.stft centres the 800-sample window in it."""
CENTRE_PAD_SAMPLES = N_FFT // 2
"""`center=True` reflect-pads this many samples on each side, so frame f is centred at sample 200 f."""
DMEL_CHANNELS = 80
"""Mel channels per frame."""
MEL_FMIN_HZ = 80.0
MEL_FMAX_HZ = 7600.0
POWER_FLOOR = 1e-10
"""Floor on |X|^2 before the square root: decides the codes of digital silence."""
MEL_FLOOR = 1e-10
"""Floor on the mel energies before log10 (as the reference; inactive after POWER_FLOOR)."""
LOG10_MIN = -7.0
LOG10_MAX = 2.0
"""Clip range of log10 mel energies."""
DMEL_LEVELS = 16
"""4-bit codes 0..15."""

# The reference builds its levels in float64 as -7 + i * round(9 / 15, 4) and casts them to float32.
LEVELS = (LOG10_MIN + np.arange(DMEL_LEVELS) * np.round((LOG10_MAX - LOG10_MIN) / (DMEL_LEVELS - 1), 4)).astype(
    np.float32
)
"""The 16 level values, in log10 units: LEVELS[code] for code 0..15 (-7.0, -6.4, ..., 2.0)."""

assert SAMPLE_RATE_HZ == 16_000 and SAMPLES_PER_MICROTURN % HOP_SAMPLES == 0  # the parameters above assume them


def dequantise_dmel(codes: np.ndarray) -> np.ndarray:
    """Level values of dMel codes, in log10 mel-energy units.

    Args:
        codes: integer array of any shape, values in 0..15 (e.g. (W, 16, 80) `output.dmel.npy`).

    Returns:
        float32 array of the same shape.

    Raises:
        ValueError: a code is outside 0..15 or `codes` is not an integer array.
    """
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"dMel codes must be integers in 0..{DMEL_LEVELS - 1}, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= DMEL_LEVELS):
        raise ValueError(f"dMel codes must be in 0..{DMEL_LEVELS - 1}, got {codes.min()}..{codes.max()}")
    return LEVELS[codes]


def mel_filterbank() -> Any:
    """The dMel mel filterbank: a (513, 80) float32 torch tensor (frequency bins of an N_FFT STFT x mel channels,
    80-7,600 Hz, Slaney scale and norm), from torchaudio; the one definition the pipeline and the trainer share."""
    import torch
    import torchaudio

    return torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=MEL_FMIN_HZ,
        f_max=MEL_FMAX_HZ,
        n_mels=DMEL_CHANNELS,
        sample_rate=SAMPLE_RATE_HZ,
        norm="slaney",
        mel_scale="slaney",
    ).to(torch.float32)
