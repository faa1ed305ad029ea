"""Speech on the 200 ms grid: speech intervals per speaker, activity per micro-turn, word placement (DESIGN §3).

    python -c "from schemas.grid import Interval, activity; print(activity([Interval(start=0, end=1600)], 2))"

Everything here is in 16 kHz samples; seconds from transcripts are converted once, with `seconds_to_samples`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.bundle import Segment, Word
from schemas.units import SAMPLES_PER_MICROTURN, microturn_of_sample, seconds_to_samples


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A half-open stretch [start, end) of 16 kHz samples."""

    start: int
    end: int


def word_interval(word: Word) -> Interval:
    start = seconds_to_samples(word.start_s)
    return Interval(start=start, end=max(start, seconds_to_samples(word.end_s)))


def merge(intervals: Iterable[Interval], *, max_gap: int = 0) -> list[Interval]:
    """Union of intervals, also joining those separated by fewer than `max_gap` samples. Empty ones are dropped."""
    out: list[Interval] = []
    for iv in sorted((i for i in intervals if i.end > i.start), key=lambda i: (i.start, i.end)):
        if out and iv.start - out[-1].end < max(max_gap, 1):
            if iv.end > out[-1].end:
                out[-1] = Interval(start=out[-1].start, end=iv.end)
        else:
            out.append(iv)
    return out


def speech_intervals(
    speaker: str, *, words: Sequence[Word] | None, segments: Sequence[Segment] | None
) -> list[Interval]:
    """The speaker's speech: the union of their word intervals, or of their segments when there are no words."""
    if words is not None:
        return merge(word_interval(w) for w in words if w.speaker == speaker)
    if segments is not None:
        return merge(
            Interval(start=seconds_to_samples(s.start_s), end=seconds_to_samples(s.end_s))
            for s in segments
            if s.speaker == speaker
        )
    return []


def activity(intervals: Sequence[Interval], num_microturns: int) -> np.ndarray:
    """Fraction of each micro-turn's 3,200 samples covered by `intervals` (merged, sorted), float32 (K,)."""
    bounds = np.arange(num_microturns + 1, dtype=np.int64) * SAMPLES_PER_MICROTURN
    if not intervals:
        return np.zeros(num_microturns, dtype=np.float32)
    starts = np.array([i.start for i in intervals], dtype=np.int64)
    ends = np.array([i.end for i in intervals], dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(ends - starts)])  # covered samples before interval i
    idx = np.searchsorted(starts, bounds, side="right") - 1
    covered = np.where(
        idx >= 0,
        before[np.maximum(idx, 0)]
        + np.clip(bounds - starts[np.maximum(idx, 0)], 0, (ends - starts)[np.maximum(idx, 0)]),
        0,
    )
    return (np.diff(covered) / SAMPLES_PER_MICROTURN).astype(np.float32)


def word_microturn(word: Word, *, is_output: bool, num_microturns: int) -> int:
    """Where a word goes: model (output) words in the micro-turn containing their start (about to be said), user
    words in the micro-turn containing their end (heard). Clamped to the last micro-turn."""
    sample = seconds_to_samples(word.start_s if is_output else word.end_s)
    return min(microturn_of_sample(sample), num_microturns - 1)
