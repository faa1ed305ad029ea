"""Match unnamed tracks to RTTM speakers by energy, and choose the perspectives: who plays the model, who is the
user and who is 'others' in each.

    python -c "import pipeline.speakers as s; help(s.match_tracks)"

Real multi-track recordings (headset microphones) often come without saying which file is which speaker. Each
track gets loud when its own speaker talks (crosstalk from the others is quieter), which decides the pairing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.bundle import Conversation, Segment
from schemas.grid import Interval
from schemas.units import seconds_to_samples

MAX_EXHAUSTIVE = 8
FRAME_SAMPLES = 160
"""Energy frames of 10 ms: RTTM turns can be shorter than a micro-turn."""


def _active_frames(segments: Sequence[Segment], speaker: str, num_frames: int) -> np.ndarray:
    active = np.zeros(num_frames, dtype=bool)
    for s in segments:
        if s.speaker == speaker:
            a = seconds_to_samples(s.start_s) // FRAME_SAMPLES
            active[a : -(-seconds_to_samples(s.end_s) // FRAME_SAMPLES)] = True
    return active


def match_tracks(streams: Mapping[str, np.ndarray], segments: Sequence[Segment]) -> dict[str, str]:
    """Pair each stream (keyed by a provisional track name) with an RTTM speaker.

    The score of (track, speaker) is the track's mean log energy (10 ms frames) while the speaker talks minus
    while they do not; the assignment maximises the summed score (exhaustively up to 8 tracks, greedily beyond).

    Args:
        streams: 16 kHz float32 PCM per track, all the same length.
        segments: the RTTM turns.
    Returns:
        {track name: speaker}.
    Raises:
        ValueError: when tracks and RTTM speakers differ in number, or a speaker never (or always) talks.
    """
    speakers = sorted({s.speaker for s in segments})
    tracks = sorted(streams)
    if len(speakers) != len(tracks):
        raise ValueError(f"{len(tracks)} unnamed tracks but the RTTM names {len(speakers)} speakers {speakers}")
    n = len(next(iter(streams.values()))) // FRAME_SAMPLES
    active = {sp: _active_frames(segments, sp, n) for sp in speakers}
    for sp, mask in active.items():
        if not mask.any() or mask.all():
            raise ValueError(
                f"speaker {sp} talks {'never' if not mask.any() else 'all the time'} inside the audio: "
                "cannot tell which track is theirs"
            )
    score = np.zeros((len(tracks), len(speakers)))
    for i, t in enumerate(tracks):
        frames = streams[t][: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES).astype(np.float64)
        log_energy = np.log10(np.mean(frames**2, axis=1) + 1e-10)
        for j, sp in enumerate(speakers):
            score[i, j] = log_energy[active[sp]].mean() - log_energy[~active[sp]].mean()
    if len(tracks) <= MAX_EXHAUSTIVE:
        best = max(
            itertools.permutations(range(len(speakers))),
            key=lambda perm: sum(score[i, perm[i]] for i in range(len(tracks))),
        )
        return {tracks[i]: speakers[best[i]] for i in range(len(tracks))}
    out, free = {}, set(range(len(speakers)))
    for i in np.argsort(-score.max(axis=1)):
        j = max(free, key=lambda c: score[i, c])
        out[tracks[i]] = speakers[j]
        free.discard(j)
    return out


def input_roles(output_speaker: str, speech: Mapping[str, Sequence[Interval]]) -> tuple[str | None, tuple[str, ...]]:
    """(user, others) for the perspective where `output_speaker` is the model: the user is the other party who
    speaks the most (ties: smallest id), the rest are 'others'."""
    rest = sorted(s for s in speech if s != output_speaker)
    if not rest:
        return None, ()
    talk = {s: sum(iv.end - iv.start for iv in speech[s]) for s in rest}
    user = min(rest, key=lambda s: (-talk[s], s))
    return user, tuple(s for s in rest if s != user)


@dataclass(frozen=True, slots=True, kw_only=True)
class Roles:
    """Who is who in one perspective."""

    output: str  # the speaker playing the model
    user: str  # the other party who speaks the most (input_roles)
    others: tuple[str, ...]  # the remaining speakers, mixed into one `others` stream


def output_speakers(conv: Conversation, perspectives: str) -> list[str]:
    """The speakers who play the model, in the bundle's `model_speakers` order (default: speaker order); with
    `perspectives` "first", only the first of them. Empty when `model_speakers` names none of the speakers."""
    allowed = [s for s in (conv.model_speakers or conv.speakers) if s in conv.speakers]
    return allowed[:1] if perspectives == "first" else allowed


def perspective_roles(
    conv: Conversation, speech: Mapping[str, Sequence[Interval]], perspectives: str
) -> tuple[Roles, ...]:
    """The roles of each perspective of `conv` (output_speakers order): the one place that decides them.

    Args:
        conv: the aligned conversation (its speakers and `model_speakers`).
        speech: merged speech intervals per speaker (16 kHz samples); at least two speakers.
        perspectives: "all" or "first" (output_speakers).
    """
    roles = []
    for output in output_speakers(conv, perspectives):
        user, others = input_roles(output, speech)
        assert user is not None  # align() guarantees two speakers
        roles.append(Roles(output=output, user=user, others=others))
    return tuple(roles)
