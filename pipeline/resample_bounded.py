"""Resampling at any rate with bounded memory: torchaudio's windowed-sinc resampler (Hann window, 6 zero crossings,
rolloff 0.99) evaluated per output sample instead of through a table of every phase.

    python -c "from pipeline.resample_bounded import torchaudio_table_values as t; print(t(44101, 16000))"

torchaudio builds one kernel row per output phase: ``new × (orig + 2·width)`` values for the rates reduced by their
gcd. For the usual rates (8k, 11.025k, 22.05k, 24k, 44.1k, 48k, 96k) that is under 0.3 M values, but for a rate
prime to 16 kHz it is the full product: 44,101 Hz → 16,000 × 44,135 values, 12.6 GB and 36 s for 0.1 s of audio.
`resample_any_rate` computes the same filter (the same formula in seconds: tap weight
``sinc(t)·cos²(πt/12)·base/rate`` with ``t = (t_in − t_out)·base``, ``base = 0.99·min(rate, 16000)``) for each output
sample from its own exact phase, over chunks of outputs, so its memory is bounded by `CHUNK_VALUES` and its time is
linear in the input's length (about 12 taps per input sample when downsampling) whatever the rate.
`pipeline.decode.resample_to_16k` uses it only when torchaudio's table would be larger than `MAX_TABLE_VALUES`;
the usual rates keep torchaudio's output bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

LOWPASS_ZEROS = 6  # torchaudio's lowpass_filter_width
ROLLOFF = 0.99
MAX_TABLE_VALUES = 1 << 22
"""Largest torchaudio kernel table (values) `resample_to_16k` builds; above it `resample_any_rate` is used."""
CHUNK_VALUES = 1 << 20
"""Values of one chunk's tap matrix (float64: 8 MiB per array)."""


def torchaudio_table_values(rate_hz: int, new_hz: int) -> int:
    """Values of the kernel table torchaudio would build to resample `rate_hz` to `new_hz`."""
    g = math.gcd(rate_hz, new_hz)
    orig, new = rate_hz // g, new_hz // g
    width = math.ceil(LOWPASS_ZEROS * orig / (ROLLOFF * min(orig, new)))
    return new * (orig + 2 * width)


def resample_any_rate(pcm: np.ndarray, rate_hz: int, new_hz: int = 16_000) -> np.ndarray:
    """Float32 mono `pcm` at `rate_hz` resampled to `new_hz`: ``ceil(new_hz·len/rate_hz)`` samples, the same filter
    as torchaudio.functional.resample (zeros outside the signal), with memory bounded by `CHUNK_VALUES`."""
    if rate_hz <= 0 or new_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_hz} and {new_hz}")
    x = np.ascontiguousarray(pcm, dtype=np.float32)
    n_in = len(x)
    target = -(-new_hz * n_in // rate_hz)  # ceil, in integers
    base = ROLLOFF * min(rate_hz, new_hz)  # Hz
    width = math.ceil(LOWPASS_ZEROS * rate_hz / base)  # input samples either side of an output's position
    taps = np.arange(-width, width + 2, dtype=np.int64)
    padded = np.concatenate([np.zeros(width + 1, np.float32), x, np.zeros(width + 2, np.float32)])
    chunk = max(1, CHUNK_VALUES // len(taps))
    out = np.empty(target, dtype=np.float32)
    scale = base / rate_hz
    for start in range(0, target, chunk):
        n = np.arange(start, min(target, start + chunk), dtype=np.int64)
        first = (n * rate_hz) // new_hz  # input sample at or before each output's position (exact)
        m = first[:, None] + taps[None, :]  # input sample indices, (outputs, taps)
        # t = (m/rate - n/new)·base, from the exact integer numerator m·new - n·rate
        t = (m * new_hz - (n * rate_hz)[:, None]).astype(np.float64) * (base / (rate_hz * new_hz))
        np.clip(t, -LOWPASS_ZEROS, LOWPASS_ZEROS, out=t)
        kernel = np.sinc(t) * np.cos(t * (math.pi / LOWPASS_ZEROS / 2)) ** 2 * scale
        out[n] = np.einsum("ij,ij->i", kernel, padded[m + width + 1]).astype(np.float32)
    return out
