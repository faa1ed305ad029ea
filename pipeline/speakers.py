"""Match unnamed tracks to RTTM speakers by energy, and choose who is user and who is 'others' in a perspective.

    python -c "import pipeline.speakers as s; help(s.match_tracks)"

Real multi-track recordings (headset microphones) often come without saying which file is which speaker. Each
track is loudest while its own speaker talks alone, so the pairing that maximises, summed over tracks, the track's
mean log energy in its speaker's solo turns minus that in other speakers' solo turns is the assignment.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.grid import Interval
from schemas.bundle import Segment
from schemas.units import SAMPLES_PER_MICROTURN, seconds_to_samples

MAX_EXHAUSTIVE = 8


def _solo_microturns(segments: Sequence[Segment], speakers: Sequence[str], num_microturns: int) -> dict[
        str, np.ndarray]:
    """For each speaker, a boolean mask of micro-turns where only they speak (by the segments)."""
    active = np.zeros((len(speakers), num_microturns), dtype=bool)
    for s in segments:
        row = speakers.index(s.speaker)
        a = seconds_to_samples(s.start_s) // SAMPLES_PER_MICROTURN
        b = -(-seconds_to_samples(s.end_s) // SAMPLES_PER_MICROTURN)
        active[row, a:b] = True
    alone = active & (active.sum(axis=0) == 1)
    return {sp: alone[i] for i, sp in enumerate(speakers)}


def match_tracks(streams: Mapping[str, np.ndarray], segments: Sequence[Segment]) -> dict[str, str]:
    """Pair each stream (keyed by a provisional track name) with an RTTM speaker.

    Args:
        streams: 16 kHz float32 PCM per track, all the same length.
        segments: the RTTM turns.
    Returns:
        {track name: speaker}.
    Raises:
        ValueError: when tracks and RTTM speakers differ in number, or a speaker never speaks alone.
    """
    speakers = sorted({s.speaker for s in segments})
    tracks = sorted(streams)
    if len(speakers) != len(tracks):
        raise ValueError(f"{len(tracks)} unnamed tracks but the RTTM names {len(speakers)} speakers {speakers}")
    n = len(next(iter(streams.values())))
    k = n // SAMPLES_PER_MICROTURN
    solo = _solo_microturns(segments, speakers, k)
    for sp, mask in solo.items():
        if not mask.any():
            raise ValueError(f"speaker {sp} never speaks alone in the RTTM: cannot tell which track is theirs")
    score = np.zeros((len(tracks), len(speakers)))
    for i, t in enumerate(tracks):
        frames = streams[t][: k * SAMPLES_PER_MICROTURN].reshape(k, SAMPLES_PER_MICROTURN)
        log_energy = np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)
        for j, sp in enumerate(speakers):
            others = np.zeros(k, dtype=bool)
            for other, mask in solo.items():
                if other != sp:
                    others |= mask
            score[i, j] = log_energy[solo[sp]].mean() - (log_energy[others].mean() if others.any() else 0.0)
    if len(tracks) <= MAX_EXHAUSTIVE:
        best = max(itertools.permutations(range(len(speakers))),
                   key=lambda perm: sum(score[i, perm[i]] for i in range(len(tracks))))
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
