"""The fast dMel quantiser (level thresholds + bucketize) gives exactly the codes of the distance definition.

python -m pytest -q tests/schemas/test_dmel_quantise.py
"""

from __future__ import annotations

import numpy as np
import torch

from schemas import dmel
from schemas.dmel import CENTRE_PAD_SAMPLES, DMEL_LEVELS, LEVELS
from schemas.units import SAMPLES_PER_MICROTURN


def _floats_around(values: np.ndarray, ulps: int) -> torch.Tensor:
    """Every float32 within `ulps` representable steps of each of `values`."""
    keys = dmel._ordered(values.astype(np.float32).view(np.int32).astype(np.int64))
    return torch.from_numpy(dmel._unordered(np.concatenate([np.arange(k - ulps, k + ulps + 1) for k in keys])))


def test_thresholds_lie_between_neighbouring_levels() -> None:
    th = dmel.level_thresholds().numpy()
    assert th.shape == (DMEL_LEVELS - 1,) and th.dtype == np.float32
    assert np.all(LEVELS[:-1] < th) and np.all(th <= LEVELS[1:])
    # a threshold is the first float of its code: the float just below it has the lower code
    below = np.nextafter(th, np.float32(-np.inf))
    assert dmel._quantise_by_distance(torch.from_numpy(th)).tolist() == list(range(1, DMEL_LEVELS))
    assert dmel._quantise_by_distance(torch.from_numpy(below)).tolist() == list(range(DMEL_LEVELS - 1))


def test_same_codes_as_the_distance_definition_near_every_boundary_and_level() -> None:
    x = _floats_around(np.concatenate([dmel.level_thresholds().numpy(), LEVELS]), ulps=1 << 16)
    assert torch.equal(dmel.quantise(x), dmel._quantise_by_distance(x))


def test_same_codes_on_random_values_extremes_and_shapes() -> None:
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.uniform(-9.0, 4.0, (5000, 80)).astype(np.float32))
    assert torch.equal(dmel.quantise(x), dmel._quantise_by_distance(x))
    edges = torch.tensor([-3e38, -1e10, -7.0001, -7.0, 2.0, 2.0001, 1e10, 3e38, 0.0, -0.0, 1e-38, -1e-38])
    got = dmel.quantise(edges)
    assert torch.equal(got, dmel._quantise_by_distance(edges))
    assert got.dtype == torch.uint8 and got[:4].tolist() == [0, 0, 0, 0] and got[4:8].tolist() == [15] * 4


def _padded_slice_by_index(pcm: np.ndarray, num_samples_padded: int, start: int, stop: int) -> np.ndarray:
    """The definition: every sample of the slice mapped to the zero-padded, reflect-padded signal one by one."""
    idx = np.arange(start, stop) - CENTRE_PAD_SAMPLES
    idx = np.where(idx < 0, -idx, idx)
    idx = np.where(idx >= num_samples_padded, 2 * num_samples_padded - 2 - idx, idx)
    return np.where(idx < len(pcm), pcm[np.minimum(idx, len(pcm) - 1)], np.float32(0)).astype(np.float32)


def test_padded_slice_equals_the_index_definition_for_any_range() -> None:
    rng = np.random.default_rng(3)
    for _ in range(2000):
        n = int(rng.integers(1, 12_000))
        padded = -(-max(n, CENTRE_PAD_SAMPLES + 1) // SAMPLES_PER_MICROTURN) * SAMPLES_PER_MICROTURN
        pcm = rng.standard_normal(n).astype(np.float32)
        total = padded + 2 * CENTRE_PAD_SAMPLES
        start = int(rng.integers(0, total))
        stop = int(rng.integers(start, total + 1))
        got = dmel._padded_slice(pcm, padded, start, stop)
        assert got.dtype == np.float32 and np.array_equal(got, _padded_slice_by_index(pcm, padded, start, stop))


def test_importing_the_codec_loads_no_torch() -> None:
    """schemas.dmel imports torch and torchaudio inside its functions: a data-loader worker or the job's coordinator
    that only needs the constants or `dequantise_dmel` does not pay for them."""
    import subprocess
    import sys

    code = "import sys, schemas.dmel, schemas.grid; print(sorted({'torch', 'torchaudio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_log_mel_quantises_to_the_codes_for_any_chunking() -> None:
    rng = np.random.default_rng(5)
    pcm = (0.2 * rng.standard_normal(2 * SAMPLES_PER_MICROTURN + 77)).astype(np.float32)
    mel = dmel.log_mel(pcm, chunk_frames=13)
    assert mel.shape == (3 * 16, 80) and mel.dtype == np.float32
    assert mel.min() >= -7.0 and mel.max() <= 2.0
    np.testing.assert_array_equal(mel, dmel.log_mel(pcm))
    np.testing.assert_array_equal(dmel.quantise(torch.from_numpy(mel)).numpy(), dmel.dmel_codes(pcm))
    assert dmel.log_mel(np.zeros(0, np.float32)).shape == (0, 80)
