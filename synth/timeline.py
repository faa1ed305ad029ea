"""Place synthesised words on per-speaker tracks, on integer samples, and derive their exact times.

    python -c "import numpy as np; from synth.timeline import Placement, place_words; \
print(place_words([Placement(speaker='A', text='hi', audio=np.ones(4, np.float32), start_sample=2)], \
sample_rate_hz=8, tail_samples=2).words)"

Placement is done on integer samples; seconds are computed once at the end, so a word's ``start_s`` is exactly
``start_sample / sample_rate_hz`` and its ``end_s`` is ``(start_sample + len(audio)) / sample_rate_hz``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from schemas.bundle import Word


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """One word to put on a speaker's track.

    Attributes:
        speaker: whose track.
        text: the word, as it goes into the transcript.
        audio: float32 (num_samples,) at the timeline's rate; its first and last samples are the word's start
            and end (a `TTSBackend` returns such arrays).
        start_sample: where the word's first sample goes on the conversation clock.
    """

    speaker: str
    text: str
    audio: np.ndarray
    start_sample: int

    @property
    def end_sample(self) -> int:
        """One past the word's last sample."""
        return self.start_sample + len(self.audio)


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Per-speaker tracks (float32, all `num_samples` long) and the words on them, sorted by (start, end, speaker)."""

    tracks: dict[str, np.ndarray]
    words: tuple[Word, ...]
    sample_rate_hz: int
    num_samples: int

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate_hz


def place_words(
    placements: Iterable[Placement],
    *,
    sample_rate_hz: int,
    tail_samples: int,
    speakers: Sequence[str] = (),
) -> Timeline:
    """Write each word's samples into its speaker's track; everything else stays digital silence.

    Args:
        placements: the words; order does not matter.
        sample_rate_hz: rate of every placement's audio and of the tracks.
        tail_samples: silence after the last word ends; the tracks are ``last end + tail_samples`` long.
        speakers: speakers that get a track even if they say nothing (others are added as they appear); track
            order is these first, then first appearance.
    Returns:
        The tracks and `schemas.bundle.Word`s with ``source="tts"`` and exact sample-derived times.
    Raises:
        ValueError: a word starts before sample 0, is empty, or overlaps another word of the same speaker.
    """
    items = list(placements)
    if tail_samples < 0:
        raise ValueError(f"tail_samples must be >= 0, got {tail_samples}")
    order = list(dict.fromkeys([*speakers, *(p.speaker for p in items)]))
    for p in items:
        if p.start_sample < 0:
            raise ValueError(f"word {p.text!r} of {p.speaker} starts at sample {p.start_sample} < 0")
        if p.audio.ndim != 1 or len(p.audio) == 0:
            raise ValueError(f"word {p.text!r} of {p.speaker} has audio of shape {p.audio.shape}; need (n>0,)")
    num_samples = max((p.end_sample for p in items), default=0) + tail_samples
    tracks = {s: np.zeros(num_samples, dtype=np.float32) for s in order}
    by_speaker: dict[str, list[Placement]] = {s: [] for s in order}
    for p in items:
        by_speaker[p.speaker].append(p)
    for speaker, mine in by_speaker.items():
        mine.sort(key=lambda p: p.start_sample)
        for prev, cur in pairwise(mine):
            if cur.start_sample < prev.end_sample:
                raise ValueError(
                    f"{speaker}'s words {prev.text!r} (samples {prev.start_sample}-{prev.end_sample}) and "
                    f"{cur.text!r} (from {cur.start_sample}) overlap; one speaker says one word at a time"
                )
        for p in mine:
            tracks[speaker][p.start_sample : p.end_sample] = p.audio
    words = sorted(
        (
            Word(
                text=p.text,
                start_s=p.start_sample / sample_rate_hz,
                end_s=p.end_sample / sample_rate_hz,
                speaker=p.speaker,
                source="tts",
            )
            for p in items
        ),
        key=lambda w: (w.start_s, w.end_s, w.speaker),
    )
    return Timeline(tracks=tracks, words=tuple(words), sample_rate_hz=sample_rate_hz, num_samples=num_samples)
