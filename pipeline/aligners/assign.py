"""Whose text is whose: pair untimed per-speaker texts with the speakers' tracks by how well each text aligns.

    python -c "import pipeline.aligners.assign as a; help(a.assign_texts)"

Transcripts often come as one text file per speaker with labels that are not the track's speaker names (the AMI
excerpt in ../shared/fixtures/ami-seriously has texts A-D and RTTM speakers FEE013 ...). Word counts do not decide
it (there, ranking word counts against RTTM talk time pairs two of the three long texts wrongly); alignment does: a
text aligns through its own speaker's track and loses the path early on anyone else's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pipeline.aligners import tokenize

MAX_EXHAUSTIVE = 8
Fit = Callable[[np.ndarray, Sequence[str]], float]
"""fit(pcm, words) -> higher is better, e.g. `PocketsphinxBackend.fit` (share of the words one pass reaches)."""


def assign_texts(streams: Mapping[str, np.ndarray], texts: Mapping[str, str], fit: Fit) -> dict[str, str]:
    """Pair each text label with a speaker: the one-to-one assignment that maximises the summed `fit` of every
    text on its speaker's stream (exhaustive up to `MAX_EXHAUSTIVE`).

    Args:
        streams: 16 kHz float32 PCM per speaker.
        texts: untimed transcript per label (whitespace tokens, transcript markup allowed).
        fit: how well words fit a stream.
    Returns:
        {text label: speaker}.
    Raises:
        ValueError: more texts than streams, or too many to try every assignment.
    """
    labels, speakers = sorted(texts), sorted(streams)
    if len(labels) > len(speakers):
        raise ValueError(f"{len(labels)} texts {labels} but only {len(speakers)} tracks {speakers}")
    if len(speakers) > MAX_EXHAUSTIVE:
        raise ValueError(
            f"{len(speakers)} tracks: too many to try every assignment (at most {MAX_EXHAUSTIVE}); "
            "name each text's speaker in the bundle instead"
        )
    score = np.array([[fit(streams[s], tokenize(texts[t])) for s in speakers] for t in labels])
    best = max(
        itertools.permutations(range(len(speakers)), len(labels)),
        key=lambda perm: sum(score[i, perm[i]] for i in range(len(labels))),
    )
    return {labels[i]: speakers[best[i]] for i in range(len(labels))}
