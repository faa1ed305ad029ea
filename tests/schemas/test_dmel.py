"""schemas/dmel.py: the inverse (codes -> audio) against the analysis, and the dequantiser's levels.

.venv/bin/python -m pytest -q tests/schemas/test_dmel.py
"""

from __future__ import annotations

import numpy as np
import pytest

from schemas.dmel import LEVELS, dequantise_dmel, dmel_codes, dmel_to_audio, log_mel


def test_levels_are_the_reference_levels() -> None:
    assert LEVELS.dtype == np.float32 and LEVELS.shape == (16,)
    assert LEVELS[0] == np.float32(-7.0) and LEVELS[-1] == np.float32(2.0)
    np.testing.assert_allclose(np.diff(LEVELS), 0.6, atol=1e-5)
    np.testing.assert_array_equal(dequantise_dmel(np.array([[0, 15], [5, 10]])), LEVELS[[[0, 15], [5, 10]]])
    with pytest.raises(ValueError, match="integers"):
        dequantise_dmel(np.zeros(3, np.float32))


def test_audio_from_codes_has_the_grid_length_silence_and_peak() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(3, 12, (3, 16, 80), dtype=np.uint8)
    codes[1] = 0  # digital silence: this micro-turn comes out exactly silent
    pcm = dmel_to_audio(codes, n_iter=4)
    assert pcm.shape == (3 * 3_200,) and pcm.dtype == np.float32
    assert not pcm[3_200:6_400].any() and np.abs(pcm[:3_200]).max() > 0.01
    assert np.abs(pcm).max() <= 0.9 + 1e-6
    np.testing.assert_array_equal(pcm, dmel_to_audio(codes, n_iter=4))  # the seed fixes the random phase
    assert not np.array_equal(pcm, dmel_to_audio(codes, n_iter=4, seed=1))
    assert dmel_to_audio(np.zeros((0, 16, 80), np.uint8)).shape == (0,)


def test_audio_from_codes_keeps_the_spectral_shape() -> None:
    """A 1 kHz tone through analysis, codes and the inverse: the loudest mel channel of the audio that comes back is
    the tone's, and its codes stay within two levels of the original's in nine cells out of ten."""
    t = np.arange(5 * 3_200) / 16_000
    tone = (0.5 * np.sin(2 * np.pi * 1_000 * t)).astype(np.float32)
    codes = dmel_codes(tone).reshape(-1, 16, 80)
    back = dmel_to_audio(codes)
    mel_in, mel_back = log_mel(tone)[8:-8].mean(0), log_mel(back)[8:-8].mean(0)
    assert int(mel_back.argmax()) == int(mel_in.argmax())
    close = np.abs(dmel_codes(back).astype(int) - codes.reshape(-1, 80).astype(int)) <= 2
    assert close.mean() > 0.9  # 0.98 here
