import pytest

from schemas.units import microturn_of_seconds, num_microturns, seconds_to_samples


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
