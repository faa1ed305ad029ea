"""Cutting a stream into speech regions at its silences and sharing known words out over them, for per-region
forced alignment.

    python -c "import pipeline.aligners.chunks as c; help(c.assign_words)"

A whole-track forced alignment can lose its place: squeeze a word into its neighbour's sound and push the next word
into a later stretch of speech (measured on the demo speech: "mm-hmm" squeezed, "that" 1.9 s early). Silences are
hard boundaries that the aligner does not see; here they decide which words each region holds, by dynamic
programming on the regions' durations against the words' expected durations, anchored to a first whole-track pass
(so that speech no text accounts for, such as crosstalk on a headset track, stays empty).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.aligners.energy import ENERGY_FRAME_SAMPLES, speech_runs
from schemas.units import SAMPLE_RATE_HZ

FRAME_SAMPLES = 160
"""10 ms energy frames."""
SILENCE_DB = -40.0
"""A frame is silent when its energy is this far below the stream's loudest (as `compact_silences`)."""
MIN_GAP_S = 0.25
"""Silences at least this long cut regions; shorter ones (stop closures, 50-150 ms) stay inside a region."""
PAD_S = 0.15
"""Silence kept on each side of a region for the aligner (at most half the gap to the next region)."""
WIDE_PAD_S = 0.5
"""Silence kept on each side of a region when its words do not all align at `PAD_S` (at most half the gap too): a
clause's last short word right at a region's end ("I tuned [the]", espeak-ng at 0.8x, then a 0.64 s pause) reached
the end of the text in no search with 0.15 s of silence after it and in every search with 0.45 s. Measured on
`eval-align --dialogues 2` (known text, 57 conversations): unplaced words 6 -> 2, within one micro-turn 99.7 ->
99.8 %, voices meeting every goal 13 -> 16 of 19."""
PHONE_S = 0.08
"""Expected duration per phone when sharing words over regions (espeak-ng and conversational speech: 60-100 ms)."""
WORD_PHONES = 2
"""Added to a word's phone count for its expected duration (a word's onset, release and the pause after it)."""
DURATION_SIGMA = float(np.log(2.0))
"""A region whose duration is twice or half its words' expected duration costs 1."""
EMPTY_COST = 1.0
EMPTY_COST_PER_S = 2.0
"""Cost of a region that gets no words (speech no text accounts for: crosstalk, noise, laughter)."""
ANCHOR_COST = 0.6
"""Cost per word of putting it in another region than the first whole-track pass did. Chosen with `RUN_COST` on
the demo speech (eval-align, known text, --count 2 and --count 4 --seed 1 and 2) and the AMI excerpt: 1.0 and 2.0
left more demo words squeezed into their neighbour's run; crosstalk is kept wordless by `loudness`."""
MAX_WORDS_PER_REGION = 80
SPREAD_MAX_S_PER_WORD = 1.0
"""Words of a region that the aligner cannot time are spread over it by phone count only when it is at most this
long per word; otherwise (long stretches of real speech) they keep the times of the level above."""
RUN_GAP_S = 0.05
"""Pauses at least this long separate speech runs (`runs_in`); 0.04 split words at stop closures on the demo speech,
0.05 does not, and it still parts most careful words."""
CAREFUL_RUNS_PER_WORD = 0.5
"""Words are shared over a region's speech runs only when it has at least this many runs a word (careful speech,
pauses between words). In connected speech a run holds several words and its pauses are stop closures inside words
("nex|t week"): sharing there cut words apart and left them interpolated (`eval-align --connected`: 8 of 148 -> 0)."""
RUN_COST = 1.5
"""Cost per speech run beyond a region's word count (a run no word accounts for)."""
BREAK_COST = 4.0
"""Cost per utterance break (`text.tokenize_lines`: a new line of the transcript, where the speaker stopped for
someone else) inside one region. Above the cost of moving a few words from their first-pass region (`ANCHOR_COST`)
and of a region twice or half its words' expected duration, so that the turn's first word is not pulled back into
the end of the speaker's previous turn; a region that truly holds a break (two turns less than `MIN_GAP_S` apart)
pays it under every assignment."""


def speech_regions(pcm: np.ndarray) -> list[tuple[int, int]]:
    """Regions [a, b) of samples that hold sound, separated by silences of at least `MIN_GAP_S`."""
    n = len(pcm) // FRAME_SAMPLES
    if n == 0:
        return []
    energy = np.mean(pcm[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES) ** 2, axis=1)
    loud = energy >= max(energy.max(), 1e-10) * 10 ** (SILENCE_DB / 10)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    if not runs:
        return []
    min_gap = int(round(MIN_GAP_S * SAMPLE_RATE_HZ / FRAME_SAMPLES))
    merged = [list(runs[0])]
    for a, b in runs[1:]:
        if a - merged[-1][1] < min_gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a * FRAME_SAMPLES, b * FRAME_SAMPLES) for a, b in merged]


def runs_in(pcm: np.ndarray, regions: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The speech runs [a, b) in samples (`energy.speech_runs`) of each region, merged across pauses shorter than
    `RUN_GAP_S`: in careful speech one run a word (a stop's closure inside a word can split it too)."""

    n = len(pcm) // ENERGY_FRAME_SAMPLES
    energy = np.mean(pcm[: n * ENERGY_FRAME_SAMPLES].astype(np.float64).reshape(n, ENERGY_FRAME_SAMPLES) ** 2, axis=1)
    runs = [(a * ENERGY_FRAME_SAMPLES, b * ENERGY_FRAME_SAMPLES) for a, b in speech_runs(energy)]
    gap = RUN_GAP_S * SAMPLE_RATE_HZ
    out: list[list[tuple[int, int]]] = []
    for lo, hi in regions:
        merged: list[list[int]] = []
        for a, b in runs:
            if b <= lo or a >= hi:
                continue
            if merged and a - merged[-1][1] < gap:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        out.append([(a, b) for a, b in merged])
    return out


def loudness(pcm: np.ndarray, regions: Sequence[tuple[int, int]]) -> list[float]:
    """Each region's peak 10 ms RMS over the stream's, in (0, 1]: speech that is much quieter than the stream's
    own (another speaker's crosstalk on a headset track) is cheap to leave without words."""
    n = len(pcm) // FRAME_SAMPLES
    if n == 0:
        return [1.0] * len(regions)
    rms = np.sqrt(np.mean(pcm[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES) ** 2, axis=1))
    top = max(rms.max(), 1e-10)
    return [
        float(rms[a // FRAME_SAMPLES : max(b // FRAME_SAMPLES, a // FRAME_SAMPLES + 1)].max(initial=0.0) / top)
        for a, b in regions
    ]


def padded(regions: Sequence[tuple[int, int]], num_samples: int, pad_s: float = PAD_S) -> list[tuple[int, int]]:
    """Each region widened by `pad_s` seconds of its surrounding silence, never past half the gap to its
    neighbours."""
    pad = int(pad_s * SAMPLE_RATE_HZ)
    out = []
    for k, (a, b) in enumerate(regions):
        lo = (regions[k - 1][1] + a) // 2 if k > 0 else 0
        hi = (b + regions[k + 1][0]) // 2 if k + 1 < len(regions) else num_samples
        out.append((max(a - pad, lo), min(b + pad, hi)))
    return out


def anchor_regions(regions: Sequence[tuple[int, int]], spans_s: Sequence[tuple[float, float] | None]) -> list[int]:
    """For each word's (start_s, end_s) from a first pass, the region it overlaps most (or the nearest; -1: none)."""
    out = []
    for span in spans_s:
        if span is None or not regions:
            out.append(-1)
            continue
        a, b = span[0] * SAMPLE_RATE_HZ, span[1] * SAMPLE_RATE_HZ
        overlap = [min(b, e) - max(a, s) for s, e in regions]
        out.append(int(np.argmax(overlap)))
    return out


def assign_words(
    durations_s: Sequence[float],
    expected_s: Sequence[float],
    anchors: Sequence[int],
    runs: Sequence[Sequence[tuple[int, int]]],
    loudness: Sequence[float] | None = None,
    breaks: Sequence[int] = (),
) -> list[int]:
    """The region of each word: a monotone assignment (regions may stay empty) that minimises the summed costs of
    duration mismatch (squared log ratio of a region's duration to its words' expected durations, over
    `DURATION_SIGMA`), empty regions, words moved from their first-pass region (`anchors`, -1: free) and
    utterance breaks inside a region (`BREAK_COST`).

    Args:
        durations_s: each region's duration (s), in time order.
        expected_s: each word's expected duration (s), in text order.
        anchors: each word's region in the first pass, or -1.
        breaks: indices of the words that begin an utterance (a region should start there).
    Returns:
        region index per word (non-decreasing).
    """
    R, N = len(durations_s), len(expected_s)
    if R == 0:
        raise ValueError("no speech regions to share words over")
    cum = np.concatenate([[0.0], np.cumsum(expected_s)])
    anchors_arr = np.asarray(anchors)
    begins = np.zeros(N + 1, dtype=np.int64)
    begins[[b for b in breaks if 0 < b < N]] = 1
    opened = np.cumsum(begins)  # opened[k - 1] - opened[j]: breaks at words j+1 .. k-1, inside the group j .. k-1
    inf = float("inf")
    cost = np.full((R + 1, N + 1), inf)
    back = np.zeros((R + 1, N + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for r in range(R):
        d = max(durations_s[r], 1e-3)
        moved = np.cumsum(np.concatenate([[0], (anchors_arr >= 0) & (anchors_arr != r)]))
        for j in range(N + 1):
            if cost[r, j] == inf:
                continue
            empty = cost[r, j] + (EMPTY_COST + EMPTY_COST_PER_S * d) * (1.0 if loudness is None else loudness[r])
            if empty < cost[r + 1, j]:
                cost[r + 1, j], back[r + 1, j] = empty, j
            for k in range(j + 1, min(N, j + MAX_WORDS_PER_REGION) + 1):
                c = (
                    cost[r, j]
                    + (np.log(d / max(cum[k] - cum[j], 1e-3)) / DURATION_SIGMA) ** 2
                    + ANCHOR_COST * (moved[k] - moved[j])
                    + RUN_COST * max(len(runs[r]) - (k - j), 0)
                    + BREAK_COST * (opened[k - 1] - opened[j])
                )
                if c < cost[r + 1, k]:
                    cost[r + 1, k], back[r + 1, k] = c, j
    if cost[R, N] == inf:
        raise ValueError(f"{N} words do not fit {R} regions (at most {MAX_WORDS_PER_REGION} words a region)")
    out = [0] * N
    k = N
    for r in range(R, 0, -1):
        j = int(back[r, k])
        for w in range(j, k):
            out[w] = r - 1
        k = j
    return out
