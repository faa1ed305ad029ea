"""The fast dMel quantiser (level thresholds + bucketize) gives exactly the codes of the distance definition.

python -m pytest -q tests/pipeline/test_dmel_quantise.py
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline import features
from schemas.dmel import CENTRE_PAD_SAMPLES, DMEL_LEVELS, LEVELS
from schemas.units import SAMPLES_PER_MICROTURN


def _floats_around(values: np.ndarray, ulps: int) -> torch.Tensor:
    """Every float32 within `ulps` representable steps of each of `values`."""
    keys = features._ordered(values.astype(np.float32).view(np.int32).astype(np.int64))
    return torch.from_numpy(features._unordered(np.concatenate([np.arange(k - ulps, k + ulps + 1) for k in keys])))


def test_thresholds_lie_between_neighbouring_levels() -> None:
    th = features.level_thresholds().numpy()
    assert th.shape == (DMEL_LEVELS - 1,) and th.dtype == np.float32
    assert np.all(LEVELS[:-1] < th) and np.all(th <= LEVELS[1:])
    # a threshold is the first float of its code: the float just below it has the lower code
    below = np.nextafter(th, np.float32(-np.inf))
    assert features._quantise_by_distance(torch.from_numpy(th)).tolist() == list(range(1, DMEL_LEVELS))
    assert features._quantise_by_distance(torch.from_numpy(below)).tolist() == list(range(DMEL_LEVELS - 1))


def test_same_codes_as_the_distance_definition_near_every_boundary_and_level() -> None:
    x = _floats_around(np.concatenate([features.level_thresholds().numpy(), LEVELS]), ulps=1 << 16)
    assert torch.equal(features._quantise(x), features._quantise_by_distance(x))


def test_same_codes_on_random_values_extremes_and_shapes() -> None:
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.uniform(-9.0, 4.0, (5000, 80)).astype(np.float32))
    assert torch.equal(features._quantise(x), features._quantise_by_distance(x))
    edges = torch.tensor([-3e38, -1e10, -7.0001, -7.0, 2.0, 2.0001, 1e10, 3e38, 0.0, -0.0, 1e-38, -1e-38])
    got = features._quantise(edges)
    assert torch.equal(got, features._quantise_by_distance(edges))
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
        got = features._padded_slice(pcm, padded, start, stop)
        assert got.dtype == np.float32 and np.array_equal(got, _padded_slice_by_index(pcm, padded, start, stop))
