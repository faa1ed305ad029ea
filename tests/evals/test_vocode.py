"""evals/vocode.py: speech activity of generated dMel frames, and the stereo dialogue.

.venv/bin/python -m pytest -q tests/evals/test_vocode.py
"""

from __future__ import annotations

import numpy as np
import pytest

from evals.vocode import JOIN_GAP_S, frame_activity, speech_intervals, stereo
from schemas.grid import Interval

SILENT, LOUD = 0, 10  # level -7.0 (silence) and -1.0 (speech) in log10 units


def codes_with_speech(num_microturns: int, speech_frames: list[range]) -> np.ndarray:
    """(K, 16, 80) codes: LOUD in the given frames (frame f = micro-turn f // 16), SILENT elsewhere."""
    flat = np.full((num_microturns * 16, 80), SILENT, np.uint8)
    for frames in speech_frames:
        flat[frames] = LOUD
    return flat.reshape(num_microturns, 16, 80)


def test_speech_frames_become_intervals_and_activity_on_the_sample_grid() -> None:
    codes = codes_with_speech(3, [range(16, 40)])  # all of micro-turn 1, the first half of micro-turn 2
    assert speech_intervals(codes) == [Interval(start=3_200, end=8_000)]
    np.testing.assert_array_equal(frame_activity(codes), np.array([0.0, 1.0, 0.5], np.float32))
    assert frame_activity(codes).dtype == np.float32


def test_the_level_threshold_is_on_the_mean_over_channels() -> None:
    codes = np.zeros((1, 16, 80), np.uint8)
    codes[0, :4] = 4  # level -4.6: below SPEECH_LEVEL_LOG10 = -4.5
    codes[0, 4:8] = 5  # level -4.0: above
    codes[0, 8:12, :40] = 15  # half the channels at 2.0, half at -7.0: mean -2.5, speech
    assert speech_intervals(codes) == [Interval(start=800, end=2_400)]


def test_gaps_shorter_than_join_gap_are_closed() -> None:
    assert JOIN_GAP_S == 0.15  # 2,400 samples = 12 frames
    joined = codes_with_speech(4, [range(0, 4), range(15, 19)])  # gap of 11 frames: 2,200 samples
    assert speech_intervals(joined) == [Interval(start=0, end=3_800)]
    apart = codes_with_speech(4, [range(0, 4), range(16, 20)])  # gap of 12 frames: 2,400 samples
    assert speech_intervals(apart) == [Interval(start=0, end=800), Interval(start=3_200, end=4_000)]
    np.testing.assert_allclose(frame_activity(apart), [0.25, 0.25, 0.0, 0.0])


def test_silence_and_no_frames() -> None:
    assert speech_intervals(np.zeros((2, 16, 80), np.uint8)) == []
    np.testing.assert_array_equal(frame_activity(np.zeros((2, 16, 80), np.uint8)), [0.0, 0.0])
    assert frame_activity(np.zeros((0, 16, 80), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match="0..15"):
        frame_activity(np.full((1, 16, 80), 16, np.int64))


def test_stereo_pads_the_shorter_stream() -> None:
    out = stereo(np.array([0.1, 0.2, 0.3], np.float32), np.array([-1.0, 1.0], np.float32))
    assert out.dtype == np.float32 and out.shape == (3, 2)
    np.testing.assert_array_equal(out, np.array([[0.1, -1.0], [0.2, 1.0], [0.3, 0.0]], np.float32))
    assert stereo(np.zeros(0, np.float32), np.zeros(0, np.float32)).shape == (0, 2)
