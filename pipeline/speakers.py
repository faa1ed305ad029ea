"""Match unnamed tracks to RTTM speakers by energy, and choose who is user and who is 'others' in a perspective.

    python -c "import pipeline.speakers as s; help(s.match_tracks)"

Real multi-track recordings (headset microphones) often come without saying which file is which speaker. Each
track gets loud when its own speaker talks (crosstalk from the others is quieter), which decides the pairing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from schemas.bundle import Segment
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
