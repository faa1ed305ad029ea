"""Issue 23.8: the resampler's output length is ``ceil(n * 16000 / rate)`` for every rate and length.

.venv/bin/python -m pytest -q tests/pipeline/test_resample_lengths.py

Before the fix about 1 % of lengths at 11,025, 22,050 and 44,100 Hz failed ("could not broadcast input array from
shape (362798,) into shape (362799,)"): torchaudio computes its output length in float32 and came out one short.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from apache_beam.pvalue import TaggedOutput
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pipeline.decode as decode
from pipeline.decode import DecodedConversation, resample_to_16k
from pipeline.job import DecodeFn
from pipeline.resample_bounded import MAX_TABLE_VALUES, torchaudio_table_values
from pipeline.video import VideoConfig
from schemas.bundle import Conversation, Track

USUAL_RATES = [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000]
ODD_RATES = [7_999, 12_345, 44_101, 88_200, 96_000]  # 7,999, 12,345 and 44,101 take the bounded path


def expected_length(n: int, rate: int) -> int:
    return -(-n * 16_000 // rate)  # ceil, in integers


@st.composite
def rates_and_lengths(draw: st.DrawFn, rates: list[int], max_n: int) -> tuple[int, int]:
    """A rate and a length: any length, or one whose exact output length n·16000/rate lies just above an integer
    (the lengths where a rounded float length comes out one short)."""
    rate = draw(st.sampled_from(rates))
    g = math.gcd(rate, 16_000)
    orig, new = rate // g, 16_000 // g
    if orig == 1 or draw(st.booleans()):
        return rate, draw(st.integers(0, max_n))
    residue = draw(st.integers(1, min(8, orig - 1)))  # n·new ≡ residue (mod orig)
    n = draw(st.integers(0, max_n // orig)) * orig + residue * pow(new, -1, orig) % orig
    return rate, min(n, max_n)


@settings(max_examples=400, deadline=None)
@given(case=rates_and_lengths(USUAL_RATES + ODD_RATES, 400_000), block_s=st.sampled_from([1, decode.RESAMPLE_BLOCK_S]))
def test_output_length_is_ceil_of_n_times_16k_over_rate(case: tuple[int, int], block_s: int) -> None:
    rate, n = case
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    default = decode.RESAMPLE_BLOCK_S
    decode.RESAMPLE_BLOCK_S = block_s  # small blocks: many block edges and last blocks of every length
    try:
        y = resample_to_16k(x, rate)
    finally:
        decode.RESAMPLE_BLOCK_S = default
    assert y.dtype == np.float32 and y.shape == (expected_length(n, rate),)
    assert np.isfinite(y).all()


@settings(max_examples=150, deadline=None)
@given(case=rates_and_lengths([r for r in USUAL_RATES if r != 16_000], 240_000))  # within one block
def test_samples_are_torchaudios_where_torchaudio_gives_them(case: tuple[int, int]) -> None:
    """Within one block the fix changes no sample: the first len(torchaudio's output) samples are its samples."""
    rate, n = case
    assume(n > 0)  # torchaudio cannot resample nothing (decode rejects empty audio before)
    assert torchaudio_table_values(rate, 16_000) <= MAX_TABLE_VALUES
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    ref = torchaudio.functional.resample(torch.from_numpy(x), rate, 16_000).numpy()
    y = resample_to_16k(x, rate)
    assert len(ref) in (len(y), len(y) - 1)  # torchaudio's float32 length is at most one short
    assert np.array_equal(y[: len(ref)], ref)


def test_lengths_the_issue_found_failing() -> None:
    for n, rate in ((1_161_481, 22_050), (362_798 * 441 // 160, 44_100)):
        x = np.zeros(n, np.float32)
        assert len(resample_to_16k(x, rate)) == expected_length(n, rate)


def test_a_52_7_s_two_track_conversation_at_22050_hz_is_decoded(tmp_path: Path) -> None:
    """The issue's conversation (1,161,481 samples per track at 22,050 Hz) was rejected at decode as
    unexpected_error; through the job's DecodeFn it now comes out whole."""
    n, rate = 1_161_481, 22_050
    t = np.arange(n) / rate
    tracks = []
    for i, speaker in enumerate("AB"):
        path = tmp_path / f"{speaker}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)).astype(np.float32), rate, subtype="PCM_16")
        tracks.append(Track(speaker=speaker, path=str(path)))
    conv = Conversation(id="cd-rate", origin=str(tmp_path), tracks=tuple(tracks))
    fn = DecodeFn(VideoConfig())
    fn.setup()
    out = list(fn.process(conv))
    assert len(out) == 1 and not isinstance(out[0], TaggedOutput), out
    decoded = out[0]
    assert isinstance(decoded, DecodedConversation)
    assert decoded.num_samples == expected_length(n, rate) == 842_799
    assert decoded.track_samples == {"A": 842_799, "B": 842_799}
