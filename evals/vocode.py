"""Generated dMel frames -> speech activity per micro-turn and listenable 16 kHz audio.

    python -c "import numpy as np; from evals.vocode import frame_activity as f; print(f(np.zeros((2, 16, 80), int)))"

Speech activity uses the pipeline's own measure (`schemas.grid.activity`: the fraction of each micro-turn's 3,200
samples covered by speech intervals). The pipeline's intervals come from word timings; generated frames have no
words, so a 12.5 ms frame counts as speech when its mean log10 mel level over the 80 channels is above
`SPEECH_LEVEL_LOG10`, and speech frames closer than `JOIN_GAP_S` are joined into one interval (the closure of a
stop inside a word). Calibration on the espeak demo dataset: silent micro-turns of the model stream peak at a mean
level of -7.0 .. -6.4 (99th percentile about -3), speaking ones at -2.5 .. -1.5; the threshold sits between.

Audio: codes -> log10 mel levels (the pipeline's 16 dequantisation levels) -> mel magnitude -> linear magnitude by
torchaudio's `InverseMelScale` (least squares on the pipeline's filterbank: 1024-point FFT, 80 Slaney mels,
80-7600 Hz, the parameters of `schemas.dmel`) -> waveform with `GriffinLim` (hop 200, window 800), 16 kHz.
"""

from __future__ import annotations

import numpy as np

from schemas.dmel import (
    DMEL_CHANNELS,
    FRAMES_PER_MICROTURN,
    HOP_SAMPLES,
    MEL_FMAX_HZ,
    MEL_FMIN_HZ,
    N_FFT,
    WIN_SAMPLES,
    dequantise_dmel,
)
from schemas.grid import Interval, activity, merge
from schemas.units import SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN

SPEECH_LEVEL_LOG10 = -4.5
"""A frame is speech when its mean log10 mel level (80 channels) is above this (silence: -7 .. -6.4)."""
JOIN_GAP_S = 0.15
"""Speech frames separated by less than this (seconds) belong to one interval."""
GRIFFIN_LIM_ITERS = 32


def speech_intervals(codes_KFC: np.ndarray) -> list[Interval]:
    """Speech intervals (16 kHz samples) of dMel codes (K, 16, 80): frame f covers samples [200 f, 200 (f + 1))."""
    levels = dequantise_dmel(np.asarray(codes_KFC)).reshape(-1, DMEL_CHANNELS).mean(-1)
    voiced = levels > SPEECH_LEVEL_LOG10
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


def dmel_to_audio(codes_KFC: np.ndarray, *, n_iter: int = GRIFFIN_LIM_ITERS, seed: int = 0) -> np.ndarray:
    """dMel codes (K, 16, 80) -> (K * 3200,) float32 16 kHz PCM in [-1, 1] (inverse mel + GriffinLim).

    Frames whose codes are all 0 (digital silence) come out as silence. `seed` fixes Griffin-Lim's random phase."""
    import torch
    import torchaudio

    codes_KFC = np.asarray(codes_KFC)
    k = len(codes_KFC)
    if k == 0:
        return np.zeros(0, np.float32)
    mel = 10.0 ** torch.from_numpy(dequantise_dmel(codes_KFC).reshape(-1, DMEL_CHANNELS).T.copy())  # (80, frames)
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=N_FFT // 2 + 1,
        n_mels=DMEL_CHANNELS,
        sample_rate=SAMPLE_RATE_HZ,
        f_min=MEL_FMIN_HZ,
        f_max=MEL_FMAX_HZ,
        norm="slaney",
        mel_scale="slaney",
        driver="gels",
    )
    griffin = torchaudio.transforms.GriffinLim(
        n_fft=N_FFT,
        n_iter=n_iter,
        win_length=WIN_SAMPLES,
        hop_length=HOP_SAMPLES,
        power=1.0,
        rand_init=True,
        length=k * SAMPLES_PER_MICROTURN,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = inverse_mel(mel.float())  # (513, F)
        linear = torch.cat([linear, linear[:, -1:]], dim=1)  # centred STFT: length / hop + 1 frames
        pcm = griffin(linear).numpy().astype(np.float32)
    quiet = np.repeat(codes_KFC.reshape(-1, DMEL_CHANNELS).max(-1) == 0, HOP_SAMPLES)[: len(pcm)]
    pcm[: len(quiet)][quiet] = 0.0
    peak = float(np.abs(pcm).max()) if pcm.size else 0.0
    return pcm / peak * 0.9 if peak > 0.9 else pcm


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two mono streams -> (n, 2) float32, the shorter zero-padded (left = user, right = model)."""
    n = max(len(left), len(right))
    out = np.zeros((n, 2), np.float32)
    out[: len(left), 0], out[: len(right), 1] = left, right
    return out


__all__ = ["FRAMES_PER_MICROTURN", "dmel_to_audio", "frame_activity", "speech_intervals", "stereo"]
