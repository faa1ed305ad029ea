import numpy as np

from schemas.bundle import Segment, Word
from schemas.grid import Interval, activity, merge, speech_intervals, word_microturn


def test_activity_is_the_covered_fraction_of_each_200ms() -> None:
    ivs = [Interval(start=1_600, end=4_800), Interval(start=9_600, end=9_700)]
    np.testing.assert_allclose(activity(ivs, 4), [0.5, 0.5, 0.0, 100 / 3200])
    assert activity([], 3).tolist() == [0, 0, 0]
    # an interval past the end only counts inside the grid
    np.testing.assert_allclose(activity([Interval(start=3_000, end=10_000)], 2), [200 / 3200, 1.0])


def test_merge_joins_overlaps_and_short_gaps() -> None:
    ivs = [Interval(start=0, end=10), Interval(start=5, end=20), Interval(start=25, end=30), Interval(start=50, end=50)]
    assert merge(ivs) == [Interval(start=0, end=20), Interval(start=25, end=30)]
    assert merge(ivs, max_gap=6) == [Interval(start=0, end=30)]


def test_words_land_by_end_for_the_user_and_by_start_for_the_model() -> None:
    w = Word(text="x", start_s=0.19, end_s=0.41, speaker="A")
    assert word_microturn(w, is_output=True, num_microturns=10) == 0  # starts in [0, 0.2)
    assert word_microturn(w, is_output=False, num_microturns=10) == 2  # ends in [0.4, 0.6)
    edge = Word(text="y", start_s=0.2, end_s=0.4, speaker="A")
    assert word_microturn(edge, is_output=True, num_microturns=10) == 1  # half-open: 0.2 is in micro-turn 1
    assert word_microturn(edge, is_output=False, num_microturns=10) == 2
    assert word_microturn(edge, is_output=False, num_microturns=2) == 1  # clamped to the last micro-turn


def test_speech_from_words_or_segments() -> None:
    words = [Word(text="a", start_s=0.0, end_s=0.1, speaker="A"), Word(text="b", start_s=0.1, end_s=0.2, speaker="A")]
    assert speech_intervals("A", words=words, segments=None) == [Interval(start=0, end=3_200)]
    segs = [Segment(start_s=1.0, end_s=1.5, speaker="B")]
    assert speech_intervals("B", words=None, segments=segs) == [Interval(start=16_000, end=24_000)]
    assert speech_intervals("B", words=words, segments=segs) == []  # words win when given
