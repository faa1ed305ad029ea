"""The one place for seconds <-> samples <-> micro-turns (dMel frames: schemas/dmel.py).

    python -c "from schemas.units import num_microturns; print(num_microturns(16_001))"  # -> 6

Everything inside the pipeline is cut on integer samples (16 kHz) and integer frames; seconds are converted only at
the edges (input transcripts, manifests), so a 200 ms grid cannot drift over long recordings.

Placement: an instant belongs to the micro-turn whose half-open interval [0.2 k, 0.2 (k + 1)) holds it, after
rounding to the nearest sample (`microturn_of_seconds`); an interval ending at an instant touches micro-turns up to
`microturn_stop_of_seconds` (exclusive); micro-turn k starts at sample `microturn_start_sample(k)` = 3200 k, i.e. at
`microturn_start_s(k)` seconds. Use these rather than `// 3200` or `k * MICROTURN_S` inline: `3 * 0.2` is
0.6000000000000001, `3 * 3200 / 16000` is 0.6.
"""

from __future__ import annotations

SAMPLE_RATE_HZ = 16_000
"""All streams are decoded to 16 kHz mono PCM."""

MICROTURN_S = 0.2
SAMPLES_PER_MICROTURN = 3_200
"""200 ms at 16 kHz."""


def seconds_to_samples(seconds: float) -> int:
    """Seconds -> nearest 16 kHz sample index."""
    return int(round(seconds * SAMPLE_RATE_HZ))


def samples_to_seconds(num_samples: int) -> float:
    """16 kHz samples -> seconds."""
    return num_samples / SAMPLE_RATE_HZ


def num_microturns(num_samples: int) -> int:
    """ceil(num_samples / 3200): the number of micro-turns of a stream of `num_samples` 16 kHz samples."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return -(-num_samples // SAMPLES_PER_MICROTURN)


def microturn_of_sample(sample_index: int) -> int:
    """The micro-turn k whose interval [3200 k, 3200 (k+1)) contains 16 kHz sample `sample_index`."""
    return sample_index // SAMPLES_PER_MICROTURN


def microturn_of_seconds(seconds: float) -> int:
    """The micro-turn k whose interval [0.2 k, 0.2 (k+1)) contains the instant `seconds`."""
    return microturn_of_sample(seconds_to_samples(seconds))


def microturn_stop_of_seconds(seconds: float) -> int:
    """ceil(samples / 3200): the exclusive end of the micro-turns that an interval ending at `seconds` touches (an
    end on a micro-turn boundary touches nothing beyond it)."""
    return -(-seconds_to_samples(seconds) // SAMPLES_PER_MICROTURN)


def microturn_start_sample(microturn: int) -> int:
    """The first 16 kHz sample of micro-turn `microturn`: 3200 k."""
    return microturn * SAMPLES_PER_MICROTURN


def microturn_start_s(microturn: int) -> float:
    """Where micro-turn `microturn` starts, in seconds: 3200 k / 16,000, the float nearest 0.2 k (from integer
    samples, so it never drifts; `k * MICROTURN_S` can be one float step off)."""
    return samples_to_seconds(microturn_start_sample(microturn))
