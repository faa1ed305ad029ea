"""The dMel codec (DESIGN.md §3): 16 kHz PCM -> log10 mel -> 4-bit codes, codes -> level values -> audio.

    python -c "import numpy as np, schemas.dmel as d; print(d.dmel_codes(np.zeros(16001, 'f4')).shape)"  # (96, 80)

One home for the analysis parameters, the frame grid, the 16 code levels and the four directions of the codec, used
by the job (pipeline/features.py), the trainer (continuous log-mel targets, dequantised inputs) and the evaluations
(audio from generated codes):

- `log_mel`: PCM -> (frames, 80) float32 log10 mel energies, clipped to [-7, 2] (the continuous dMel);
- `quantise`: log10 mel -> uint8 codes 0..15; `dmel_codes` = `quantise(log_mel(pcm))`, computed in chunks;
- `dequantise_dmel`: codes -> level values (log10 units);
- `dmel_to_audio`: codes -> listenable 16 kHz PCM (least-squares inverse mel + Griffin-Lim).

torch and torchaudio are imported inside the functions, so importing schemas stays light. Sample rate and the
micro-turn length live in schemas/units.py.

Matches Apple's reference implementation (PyPI `dmel` 1.0.1, `DiscretizedLogMelFbank(LogMelFbank(frame_stride_ms=12.5),
n_bits=4)`), which computes, per frame:

1. `torch.stft`, periodic Hann window of 800 samples zero-padded to n_fft = 1024 (112 zeros each side), hop 200,
   `center=True` with torch's default `pad_mode="reflect"` (512 samples each side);
2. magnitude `clamp(re**2 + im**2, min=1e-10) ** 0.5`;
3. 80 mel filters 80-7600 Hz, Slaney scale and Slaney norm (the reference uses librosa's; here
   `torchaudio.functional.melscale_fbanks`, equal to about 1e-7 absolute), then a second floor
   `max(mel, 1e-10)` (never active after the magnitude floor, kept to follow the reference);
4. `log10`, clipped to [-7, 2];
5. the nearest of 16 levels `-7 + 0.6 i` (i = 0..15), ties to the lower level (`argmin` semantics).

Grid: the PCM is zero-padded to a whole number of micro-turns (3200 samples each) before the centred STFT, and only
frames 0 .. 16 K - 1 are kept (the centred STFT makes one extra final frame), so frame f is centred at sample 200 f
and micro-turn k owns frames 16 k .. 16 k + 15. Digital silence gives code 1 in every channel (log10 mel is about
-6.2 there, set by the 1e-10 power floor).

Memory: the STFT runs on chunks of frames; each chunk is cut out of the (conceptually) padded signal without copying
the whole stream, so a 60-minute stream needs ~10 MB beyond its input and its codes. Chunking does not change any
code: every frame sees the same samples and the same arithmetic (see `tests/pipeline/test_features.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.units import SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN, num_microturns

if TYPE_CHECKING:  # torch is imported inside the functions: importing schemas never loads it
    import torch

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

DEFAULT_CHUNK_FRAMES = 50 * FRAMES_PER_MICROTURN
"""800 frames (10 s of audio) per STFT chunk, ~7 MB of temporaries, small enough to stay in the CPU's caches. Chosen by
a sweep on 60 s of noise with one torch thread, ms per stream alone / with a second stream on the other core:
400 frames 16.5 / 18.9, 800 frames 14.7 / 17.6, 1,000 frames 14.5 / 17.1, 1,600 frames 17.2 / 20.9, 2,000 frames
21.6 / 22.6 (the default before). Larger chunks are slower still: temporaries become fresh mmaps whose pages fault
in on every chunk."""

GRIFFIN_LIM_ITERS = 32
"""Griffin-Lim iterations of `dmel_to_audio`."""


def dequantise_dmel(codes: np.ndarray) -> np.ndarray:
    """Level values of dMel codes, in log10 mel-energy units.

    Args:
        codes: integer array of any shape, values in 0..15 (e.g. (W, 16, 80) `output.dmel.npy`).

    Returns:
        float32 array of the same shape.

    Raises:
        ValueError: a code is outside 0..15 or `codes` is not an integer array.
    """
    return LEVELS[checked_codes(codes)]


def checked_codes(codes: np.ndarray) -> np.ndarray:
    """`codes` as an array, after checking that they are integers in 0..15 (ValueError otherwise)."""
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"dMel codes must be integers in 0..{DMEL_LEVELS - 1}, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= DMEL_LEVELS):
        raise ValueError(f"dMel codes must be in 0..{DMEL_LEVELS - 1}, got {codes.min()}..{codes.max()}")
    return codes


SILENCE_CODE = 1
"""The code of digital silence in every channel (log10 mel about -6.2, set by the power floor)."""
SPEECH_LEVEL_LOG10 = -4.5
"""A frame is speech when its mean log10 mel level over the 80 channels is above this. Calibrated on the espeak
demo dataset: silent micro-turns of a generated model stream peak at a mean level of -7.0 .. -6.4 (99th percentile
about -3), speaking ones at -2.5 .. -1.5; digital silence is -6.4 (code 1)."""
SPEECH_MEAN_CODE = (SPEECH_LEVEL_LOG10 - float(LEVELS[0])) / float(LEVELS[1] - LEVELS[0])
"""The same threshold on the mean code of a frame (the levels are evenly spaced): about 4.17."""


def speech_frames(codes: Any) -> Any:
    """Which dMel frames are speech (mean level over the channels above SPEECH_LEVEL_LOG10).

    Args:
        codes: (..., 80) integer codes, a numpy array or a torch tensor (any device).

    Returns:
        (...) bool of the same library: the measure evals/vocode.py reads generated speech with and the trainer's
        speak target (trainer/model.py) is made of.
    """
    if isinstance(codes, np.ndarray):
        return checked_codes(codes).mean(axis=-1, dtype=np.float64) > SPEECH_MEAN_CODE
    return codes.float().mean(-1) > SPEECH_MEAN_CODE


def mel_filterbank() -> Any:
    """The dMel mel filterbank: a (513, 80) float32 torch tensor (frequency bins of an N_FFT STFT x mel channels,
    80-7,600 Hz, Slaney scale and norm), from torchaudio; the one definition analysis and inverse share."""
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


# ---------------------------------------------------------------- analysis: PCM -> log10 mel

_window: torch.Tensor | None = None
_mel_fbank: torch.Tensor | None = None


def _constants() -> tuple[torch.Tensor, torch.Tensor]:
    """The Hann window (800,) and the mel filterbank (513 frequency bins, 80 channels), float32, built once."""
    import torch

    global _window, _mel_fbank
    if _window is None or _mel_fbank is None:
        _window = torch.hann_window(WIN_SAMPLES, dtype=torch.float32)
        _mel_fbank = mel_filterbank()
    return _window, _mel_fbank


def _padded_slice(pcm: np.ndarray, num_samples_padded: int, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of the signal the STFT sees, without building it whole.

    That signal is `pcm` zero-padded to `num_samples_padded` samples (a whole number of micro-turns), then
    reflect-padded by CENTRE_PAD_SAMPLES on each side as `torch.stft(center=True)` does.

    Args:
        pcm: (n,) float32 samples.
        num_samples_padded: N >= n, the zero-padded length in samples; N > CENTRE_PAD_SAMPLES.
        start, stop: sample indices into the reflect-padded signal, 0 <= start <= stop <= N + 2 * CENTRE_PAD_SAMPLES.

    Returns:
        (stop - start,) float32, a fresh array (torch.from_numpy then works on read-only `pcm` without warnings).
    """
    n = len(pcm)
    lo, hi = start - CENTRE_PAD_SAMPLES, stop - CENTRE_PAD_SAMPLES  # in `pcm` sample indices
    if 0 <= lo and hi <= n:
        return pcm[lo:hi].copy()
    out = np.zeros(hi - lo, dtype=np.float32)
    a, b = max(lo, 0), min(hi, n)  # the real samples in range: copied; z is zero beyond them
    if a < b:
        out[a - lo : b - lo] = pcm[a:b]
    # The reflected ends (at most CENTRE_PAD_SAMPLES each): map each index to the zero-padded signal z (length N),
    # i < 0 -> z[-i], i >= N -> z[2N - 2 - i].
    for e0, e1 in ((lo, min(hi, 0)), (max(lo, num_samples_padded), hi)):
        if e0 < e1:
            idx = np.arange(e0, e1)
            idx = np.where(idx < 0, -idx, idx)
            idx = np.where(idx >= num_samples_padded, 2 * num_samples_padded - 2 - idx, idx)
            inside = idx < n
            end = np.zeros(e1 - e0, dtype=np.float32)
            end[inside] = pcm[idx[inside]]
            out[e0 - lo : e1 - lo] = end
    return out


def _checked_pcm(pcm: np.ndarray, chunk_frames: int) -> np.ndarray:
    """`pcm` as contiguous float32, or a ValueError that names the fix."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"pcm must be 1-D (one mono stream), got shape {pcm.shape}; pass one channel at a time")
    if not np.issubdtype(pcm.dtype, np.floating):
        raise ValueError(f"pcm must be float PCM in [-1, 1], got dtype {pcm.dtype}; divide int16 PCM by 32768")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    return np.ascontiguousarray(pcm, dtype=np.float32)


def _log_mel_chunks(pcm: np.ndarray, chunk_frames: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(f0, f1, log10 mel of frames f0 .. f1 - 1, (f1 - f0, 80) float32, not clipped) over the stream's 16 K frames.

    Run inside `torch.inference_mode()`. `pcm` is contiguous float32 (`_checked_pcm`)."""
    import torch

    num_frames = num_microturns(len(pcm)) * FRAMES_PER_MICROTURN
    if num_frames == 0:
        return
    num_samples_padded = num_microturns(len(pcm)) * SAMPLES_PER_MICROTURN
    window, mel_fbank = _constants()
    for f0 in range(0, num_frames, chunk_frames):
        f1 = min(f0 + chunk_frames, num_frames)
        # Frame f reads reflect-padded samples [200 f, 200 f + 1024), i.e. pcm samples centred at 200 f.
        segment = _padded_slice(pcm, num_samples_padded, f0 * HOP_SAMPLES, (f1 - 1) * HOP_SAMPLES + N_FFT)
        if not np.isfinite(segment).all():
            raise ValueError(f"pcm has NaN or infinite samples near frames {f0}..{f1 - 1}")
        spec = torch.stft(
            torch.from_numpy(segment),
            n_fft=N_FFT,
            hop_length=HOP_SAMPLES,
            win_length=WIN_SAMPLES,
            window=window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )  # (513, frames)
        # The reference's clamp(re**2 + im**2, min=1e-10) ** 0.5, done in place to keep one (513, frames) buffer.
        magnitude = spec.real**2
        magnitude += spec.imag**2
        del spec
        magnitude.clamp_(min=POWER_FLOOR).pow_(0.5)
        mel = torch.maximum(magnitude.T @ mel_fbank, torch.tensor(MEL_FLOOR))  # (frames, 80)
        yield f0, f1, mel.log10()


def log_mel(pcm: np.ndarray, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """The continuous dMel of one 16 kHz mono stream: log10 mel energies before quantisation.

    Args:
        pcm: (n,) float PCM in [-1, 1] at 16 kHz, n >= 0 samples; cast to float32.
        chunk_frames: frames per STFT chunk (memory knob; the values do not depend on it), >= 1.

    Returns:
        (num_microturns(n) * 16, 80) float32 in [-7, 2], on the frame grid of `dmel_codes`;
        `quantise(log_mel(pcm))` equals `dmel_codes(pcm)`.

    Raises:
        ValueError: as `dmel_codes`.
    """
    import torch

    pcm = _checked_pcm(pcm, chunk_frames)
    out = np.empty((num_microturns(len(pcm)) * FRAMES_PER_MICROTURN, DMEL_CHANNELS), dtype=np.float32)
    with torch.inference_mode():
        for f0, f1, chunk in _log_mel_chunks(pcm, chunk_frames):
            out[f0:f1] = chunk.clamp(LOG10_MIN, LOG10_MAX).numpy()
    return out


# ---------------------------------------------------------------- quantiser: log10 mel -> codes


def _quantise_by_distance(log_mel: torch.Tensor) -> torch.Tensor:
    """Clip log10 mel energies to [-7, 2] and take the nearest level; ties go to the lower level (argmin order).

    The levels are uniform, so rounding gives the nearest level up to float error; the two neighbours of that guess
    are then compared with the same float32 distances and strict `<` (lower first) as the reference's argmin over
    all 16. This is the definition; `quantise` computes the same codes faster and is checked against it.
    """
    import torch

    x = log_mel.clamp(LOG10_MIN, LOG10_MAX)
    levels = torch.from_numpy(LEVELS)
    step = (LOG10_MAX - LOG10_MIN) / (DMEL_LEVELS - 1)
    guess = torch.round((x - LOG10_MIN) / step).to(torch.int64)
    best_idx = (guess - 1).clamp(0, DMEL_LEVELS - 1)
    best = (x - levels[best_idx]).abs()
    for offset in (0, 1):
        idx = (guess + offset).clamp(0, DMEL_LEVELS - 1)
        dist = (x - levels[idx]).abs()
        closer = dist < best
        best_idx = torch.where(closer, idx, best_idx)
        best = torch.where(closer, dist, best)
    return best_idx.to(torch.uint8)


_thresholds: torch.Tensor | None = None


def _ordered(bits: np.ndarray) -> np.ndarray:
    """float32 bit patterns (int64) -> integers in the floats' order (-0.0 and +0.0 both 0)."""
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _unordered(keys: np.ndarray) -> np.ndarray:
    """Inverse of `_ordered`: order keys (int64) -> float32 values."""
    bits = np.where(keys >= 0, keys, (-keys) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def level_thresholds() -> torch.Tensor:
    """(15,) float32: threshold i is the smallest float32 whose code (`_quantise_by_distance`) is i + 1.

    Between two neighbouring levels the float32 distances to each are monotone in x (rounding is monotone), so
    each code is one interval of floats and the codes are `bucketize(x, thresholds, right=True)`, exactly. Found
    by bisection over the floats between each pair of levels (32 steps), once per process."""
    import torch

    global _thresholds
    if _thresholds is None:
        lo = _ordered(LEVELS[:-1].view(np.int32).astype(np.int64))  # code <= i here
        hi = _ordered(LEVELS[1:].view(np.int32).astype(np.int64))  # code >= i + 1 here
        want = torch.arange(1, DMEL_LEVELS, dtype=torch.uint8)
        while (hi - lo > 1).any():
            mid = (lo + hi) // 2
            above = (_quantise_by_distance(torch.from_numpy(_unordered(mid))) >= want).numpy()
            hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
        _thresholds = torch.from_numpy(_unordered(hi).copy())
    return _thresholds


def quantise(log_mel: torch.Tensor) -> torch.Tensor:
    """`_quantise_by_distance`'s codes (clip to [-7, 2], nearest of the 16 levels, ties to the lower), in one pass:
    the number of level thresholds at or below each value, uint8. `log_mel` must be finite (it is: a log10 of
    floored, finite energies)."""
    import torch

    return torch.bucketize(log_mel, level_thresholds(), right=True).to(torch.uint8)


def dmel_codes(pcm: np.ndarray, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """dMel codes of one 16 kHz mono stream, 16 frames per micro-turn: `quantise(log_mel(pcm))`, chunk by chunk.

    Args:
        pcm: (n,) float PCM in [-1, 1] at 16 kHz, n >= 0 samples; cast to float32.
        chunk_frames: frames per STFT chunk (memory knob; the codes do not depend on it), >= 1.

    Returns:
        (num_microturns(n) * 16, 80) uint8 codes in 0..15. Row f is the frame centred at sample 200 f; rows
        16 k .. 16 k + 15 belong to micro-turn k. n = 0 gives shape (0, 80).

    Raises:
        ValueError: `pcm` is not 1-D, not floating point, or not finite; `chunk_frames` < 1.
    """
    import torch

    pcm = _checked_pcm(pcm, chunk_frames)
    codes = np.empty((num_microturns(len(pcm)) * FRAMES_PER_MICROTURN, DMEL_CHANNELS), dtype=np.uint8)
    with torch.inference_mode():
        for f0, f1, chunk in _log_mel_chunks(pcm, chunk_frames):
            codes[f0:f1] = quantise(chunk).numpy()
    return codes


# ---------------------------------------------------------------- inverse: codes -> audio


def dmel_to_audio(codes_KFC: np.ndarray, *, n_iter: int = GRIFFIN_LIM_ITERS, seed: int = 0) -> np.ndarray:
    """dMel codes (K, 16, 80) -> (K * 3200,) float32 16 kHz PCM in [-1, 1], for listening.

    Codes -> level values (`dequantise_dmel`) -> mel magnitude -> linear magnitude by least squares on
    `mel_filterbank()` (clamped at 0, as torchaudio's `InverseMelScale` with driver "gels") -> waveform by
    torchaudio's `GriffinLim` (n_fft 1024, hop 200, window 800). Frames whose codes are all 0 (digital silence) come
    out as silence; a peak above 0.9 is scaled to 0.9. `seed` fixes Griffin-Lim's random phase.
    """
    import torch
    import torchaudio

    codes_KFC = np.asarray(codes_KFC)
    k = len(codes_KFC)
    if k == 0:
        return np.zeros(0, np.float32)
    mel = 10.0 ** torch.from_numpy(dequantise_dmel(codes_KFC).reshape(-1, DMEL_CHANNELS).T.copy())  # (80, frames)
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
        fb_T = mel_filterbank().T  # (80, 513)
        linear = torch.relu(torch.linalg.lstsq(fb_T[None], mel.float()[None], driver="gels").solution)[0]  # (513, F)
        linear = torch.cat([linear, linear[:, -1:]], dim=1)  # centred STFT: length / hop + 1 frames
        pcm = griffin(linear).numpy().astype(np.float32)
    quiet = np.repeat(codes_KFC.reshape(-1, DMEL_CHANNELS).max(-1) == 0, HOP_SAMPLES)[: len(pcm)]
    pcm[: len(quiet)][quiet] = 0.0
    peak = float(np.abs(pcm).max()) if pcm.size else 0.0
    return pcm / peak * 0.9 if peak > 0.9 else pcm
