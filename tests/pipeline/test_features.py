"""Tests for pipeline/features.py: dMel codes against Apple's reference package, grid shape, chunking.

.venv/bin/python -m pytest -q tests/pipeline/test_features.py
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from pipeline.features import dmel_codes
from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN, HOP_SAMPLES, LEVELS, dequantise_dmel
from schemas.units import SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN

dmel = pytest.importorskip("dmel", reason="the reference `dmel` package is in the dev extra")

SENTENCE = "The quick brown fox jumps over the lazy dog, while the model listens and speaks at the same time."


def reference_codes(pcm: np.ndarray) -> np.ndarray:
    """Codes from the reference dMel (hop 12.5 ms, 4 bits), without its <bos>/<eos> rows: (n // 200 + 1, 80)."""
    extractor = dmel.DiscretizedLogMelFbank(dmel.LogMelFbank(frame_stride_ms=12.5), n_bits=4)
    codes, lengths = extractor(torch.from_numpy(pcm)[None], torch.tensor([len(pcm)]))
    return codes[0, 1 : int(lengths[0]) - 1].numpy()


def comparable_frames(num_samples: int) -> int:
    """How many leading frames see exactly the same samples here and in the reference.

    Both pad the start the same way (reflect), so they agree from frame 0. At the end they differ on purpose: the
    reference reflect-pads right after the last real sample and makes n // 200 + 1 frames; dmel_codes first
    zero-pads to a whole micro-turn and keeps 16 frames per micro-turn. When n is a multiple of 3200 there is no
    zero padding, and all 16 K frames of ours match the reference's first 16 K (it has one extra final frame).
    Otherwise only frames whose 800-sample Hann window (samples 200 f - 400 .. 200 f + 399) ends inside the real
    signal are comparable; later frames see our zero padding instead of the reference's reflection.
    """
    if num_samples % SAMPLES_PER_MICROTURN == 0:
        return num_samples // HOP_SAMPLES
    return max(0, (num_samples - 400) // HOP_SAMPLES + 1)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 6 s of espeak-ng speech at 16 kHz, float32."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = Path(tmp_path_factory.mktemp("speech")) / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True, capture_output=True)
    pcm, rate_hz = sf.read(wav, dtype="float32")
    pcm = torchaudio.functional.resample(torch.from_numpy(pcm), orig_freq=rate_hz, new_freq=SAMPLE_RATE_HZ)
    return pcm.numpy()


def white_noise(num_samples: int) -> np.ndarray:
    """Seeded white noise whose level sweeps from -80 dBFS to 0 dBFS, so the codes cover most levels."""
    rng = np.random.default_rng(1234)
    envelope = np.logspace(-4, 0, num_samples)
    return (rng.uniform(-1, 1, num_samples) * envelope).astype(np.float32)


def assert_matches_reference(pcm: np.ndarray) -> None:
    ours, ref = dmel_codes(pcm), reference_codes(pcm)
    frames = comparable_frames(len(pcm))
    assert frames > 0 and frames <= min(len(ours), len(ref))
    diff = ours[:frames].astype(np.int16) - ref[:frames].astype(np.int16)
    agreement = float((diff == 0).mean())
    assert agreement >= 0.999, f"only {agreement:.5%} of codes agree with the reference"
    assert np.abs(diff).max() <= 1


@pytest.mark.parametrize("extra_samples", [0, 1234], ids=["whole_microturns", "partial_microturn"])
def test_speech_matches_reference(speech: np.ndarray, extra_samples: int) -> None:
    num_samples = len(speech) // SAMPLES_PER_MICROTURN * SAMPLES_PER_MICROTURN + extra_samples
    pcm = np.zeros(num_samples, dtype=np.float32)
    pcm[: min(num_samples, len(speech))] = speech[:num_samples]
    assert np.abs(pcm).max() > 0.1, "espeak-ng produced no audible speech"
    assert_matches_reference(pcm)


@pytest.mark.parametrize("num_samples", [50 * SAMPLES_PER_MICROTURN, 50 * SAMPLES_PER_MICROTURN + 777])
def test_white_noise_matches_reference(num_samples: int) -> None:
    pcm = white_noise(num_samples)
    assert_matches_reference(pcm)
    assert len(np.unique(dmel_codes(pcm))) >= 10  # the sweep exercises most levels, not one


@pytest.mark.parametrize("num_samples", [10 * SAMPLES_PER_MICROTURN, 10 * SAMPLES_PER_MICROTURN + 1])
def test_digital_silence_matches_reference(num_samples: int) -> None:
    pcm = np.zeros(num_samples, dtype=np.float32)
    assert_matches_reference(pcm)
    # The 1e-10 power floor puts log10 mel near -6.2 in every channel: level 1 (-6.4), not level 0 (-7.0).
    assert (dmel_codes(pcm) == 1).all()


@pytest.mark.parametrize("num_samples", [0, 1, 199, 3199, 3200, 3201, 6400, 16_001])
def test_shape_is_16_frames_per_microturn(num_samples: int) -> None:
    codes = dmel_codes(np.full(num_samples, 0.01, dtype=np.float32))
    num_microturns = -(-num_samples // SAMPLES_PER_MICROTURN)
    assert codes.shape == (num_microturns * FRAMES_PER_MICROTURN, DMEL_CHANNELS)
    assert codes.dtype == np.uint8


def test_chunked_equals_one_shot() -> None:
    pcm = white_noise(40 * SAMPLES_PER_MICROTURN + 123)  # 656 frames
    one_shot = dmel_codes(pcm, chunk_frames=10_000)
    for chunk_frames in (1, 7, 16, 100, 655):
        np.testing.assert_array_equal(dmel_codes(pcm, chunk_frames=chunk_frames), one_shot)


def test_read_only_and_float64_input_give_the_same_codes() -> None:
    pcm = white_noise(3 * SAMPLES_PER_MICROTURN + 5)
    read_only = pcm.copy()
    read_only.flags.writeable = False
    np.testing.assert_array_equal(dmel_codes(read_only), dmel_codes(pcm))
    np.testing.assert_array_equal(dmel_codes(pcm.astype(np.float64)), dmel_codes(pcm))


def test_codes_are_uint8_in_range_and_clip_at_both_ends() -> None:
    pcm = np.concatenate([np.zeros(3200, np.float32), 300 * white_noise(3200)[::-1].copy()])  # silence, then loud
    codes = dmel_codes(pcm)
    assert codes.dtype == np.uint8
    assert codes.min() >= 0 and codes.max() <= 15
    assert codes.max() == 15  # log10 mel above 2 clips to the top level


def test_dequantise_gives_level_values() -> None:
    np.testing.assert_allclose(dequantise_dmel(np.arange(16)), -7.0 + 0.6 * np.arange(16), atol=1e-6)
    values = dequantise_dmel(np.array([[0, 15], [1, 8]], dtype=np.uint8))
    assert values.dtype == np.float32 and values.shape == (2, 2)
    assert values[0, 1] == np.float32(2.0) and values[1, 1] == LEVELS[8]
    with pytest.raises(ValueError, match="0..15"):
        dequantise_dmel(np.array([16]))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        dmel_codes(np.zeros((2, 3200), np.float32))
    with pytest.raises(ValueError, match="int16"):
        dmel_codes(np.zeros(3200, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        dmel_codes(np.full(3200, np.nan, np.float32))
