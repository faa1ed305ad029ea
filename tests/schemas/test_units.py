import pytest

from schemas.units import (
    MICROTURN_S,
    microturn_of_sample,
    microturn_of_seconds,
    microturn_start_s,
    microturn_start_sample,
    microturn_stop_of_seconds,
    num_microturns,
    seconds_to_samples,
)


@pytest.mark.parametrize(
    ("num_samples", "expected"),
    [(0, 0), (1, 1), (3_199, 1), (3_200, 1), (3_201, 2), (16_000, 5), (16_001, 6), (57_600_000, 18_000)],
)
def test_num_microturns_is_ceil_of_duration_over_200ms(num_samples: int, expected: int) -> None:
    assert num_microturns(num_samples) == expected


def test_microturn_of_seconds_uses_half_open_intervals() -> None:
    assert microturn_of_seconds(0.0) == 0
    assert microturn_of_seconds(0.1999) == 0
    assert microturn_of_seconds(0.2) == 1
    assert microturn_of_seconds(3600.0) == 18_000  # no float drift after an hour
    assert seconds_to_samples(0.2 * 18_000) == 57_600_000


def test_negative_length_is_an_error() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        num_microturns(-1)


def test_placement_helpers_agree_on_micro_turn_boundaries() -> None:
    assert [microturn_of_sample(i) for i in (0, 3_199, 3_200, 6_399, 6_400)] == [0, 0, 1, 1, 2]
    assert [microturn_stop_of_seconds(t) for t in (0.0, 0.0001, 0.2, 0.2001, 0.6)] == [0, 1, 1, 2, 3]
    assert microturn_start_sample(5) == 16_000 and microturn_start_sample(0) == 0
    # from integer samples: exact where the float product drifts
    assert microturn_start_s(3) == 0.6 and 3 * MICROTURN_S == 0.6000000000000001
    assert microturn_start_s(18_000) == 3600.0
    for k in (0, 1, 3, 7, 18_000):
        assert microturn_of_seconds(microturn_start_s(k)) == k == microturn_stop_of_seconds(microturn_start_s(k))
        assert microturn_of_seconds(microturn_start_s(k + 1) - 1e-4) == k  # 1.6 samples before the next
