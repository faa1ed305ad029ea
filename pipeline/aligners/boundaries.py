"""Placing words on a stream: interpolation of unplaced words and refinement of word edges on the stream's energy.

python -c "import pipeline.aligners.boundaries as b; help(b.refine_boundaries)"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.aligners import chunks
from pipeline.aligners.backend import StreamWord
from pipeline.aligners.energy import ENERGY_FRAME_SAMPLES, frame_energy, speech_runs, voiced_frames
from schemas.units import SAMPLE_RATE_HZ


def interpolate(words: Sequence[StreamWord], *, duration_s: float) -> list[StreamWord]:
    """Place unaligned words evenly in the gap between their aligned neighbours (or the stream's ends); aligned
    words are kept, clipped to [0, duration_s] and made monotone."""
    out = list(words)
    i = 0
    while i < len(out):
        if out[i].aligned:
            i += 1
            continue
        j = i
        while j < len(out) and not out[j].aligned:
            j += 1
        lo = out[i - 1].end_s if i > 0 else 0.0
        hi = out[j].start_s if j < len(out) else duration_s
        hi = max(hi, lo)
        step = (hi - lo) / (j - i)
        for k in range(i, j):
            a = lo + step * (k - i)
            out[k] = StreamWord(text=out[k].text, start_s=a, end_s=a + step, score=None, aligned=False)
        i = j
    fixed, t = [], 0.0
    for w in out:
        start = min(max(w.start_s, t), duration_s)
        end = min(max(w.end_s, start), duration_s)
        fixed.append(StreamWord(text=w.text, start_s=start, end_s=end, score=w.score, aligned=w.aligned))
        t = start
    return fixed


REFINE_MAX_SHIFT_S = 0.1
"""A word edge moves at most this far. Sweep on the demo speech (pocketsphinx, faster-whisper): 0.05 leaves
faster-whisper's late starts, more than 0.1 starts to pull edges into neighbouring crosstalk."""
REFINE_THRESHOLD_DB = -45.0
"""A frame is voiced when its energy is within this many dB of the word's loudest frame. Chosen on the demo speech
(pocketsphinx, known text): -35 dB cut word tails (end error median 6.5 ms), -45 and -50 dB both gave 3.6 ms."""


RUN_MAX_S = 1.5
"""A speech run longer than this is not one word (real speech, crosstalk): its words keep the per-word refinement."""
RUN_ATTACH_S = 0.15
"""A run no word calls main joins the nearest word's run when the silence between them is at most this (a stop's
closure is 50-150 ms)."""
SNAP_MAX_FOREIGN_S = 0.05
"""A word is not snapped to its run when the aligner spreads it over more than this of other words' main runs: in
connected speech a run can end inside a word at a stop's closure ("directly nex|t week"), and snapping there cut
"directly" short and pulled "next" and "week" 130-160 ms early (`eval-align --connected`). Only in connected
speech: careful words often spread past their own run, and snapping is what puts them right."""
UNCOVERED_MAX_S = 0.03
"""A word is not snapped when that would leave more than this of speech runs inside its aligned span uncovered
(`snap_to_speech_runs`; another word's main run does not count). 0 lost a snap by one 5 ms tail frame (the tiny
dialogue of tests/pipeline/tools); 0.03 keeps a final stop's 25 ms release burst with its word. Measured on
`eval-align --dialogues 2` (known text): p95 start error 70.7 -> 58.3 ms with this guard."""
EDGE_AMPLITUDE_DB = -40.0
"""A snapped word starts at the first sample and ends after the last sample of its run whose magnitude is within this
many dB of the run's peak: the trimming convention of the TTS words (synth.tts.TRIM_RELATIVE_THRESHOLD, 1 %), which
is also a usual "where does the sound start" definition."""
PAUSE_MIN_S = 0.1
"""A stretch without speech at least this long is a pause (`out_of_pauses`); shorter ones are a stop's closure,
which belongs to the word after it (espeak-ng's word starts: "to", "taste" start at their closure in connected
speech). Measured on `eval-align --dialogues 2` (known text): 0.07 and 0.15 both gave p95 start error 73.6 ms, 0.1
gave 70.7 ms."""
ONSET_THRESHOLD_DB = -30.0
"""A word's start lies in a pause when its 5 ms frame is more than this many dB below the loudest frame within
`energy.RUN_CONTEXT_S`: stricter than `energy.RUN_THRESHOLD_DB`, since a pause holds the previous word's fading tail
(40-55 dB below its peak, the previous word's by the TTS truth) and the aligner starts the next word there. Measured
on `eval-align --dialogues 2`: -20 dB p95 100.2 ms, -25 74.3, -30 70.7, -35 70.8, -40 72.5. Word ends keep
`energy.RUN_THRESHOLD_DB` (the tail is the word's): -30 dB there cut them (correct micro-turn 83.7 % -> 82.0 %)."""


def _in_connected_speech(pcm: np.ndarray, words: Sequence[StreamWord]) -> list[bool]:
    """For each word, whether the speech region (`chunks.speech_regions`) its middle falls in is connected speech:
    fewer speech runs (`chunks.runs_in`) than `chunks.CAREFUL_RUNS_PER_WORD` a word of the region."""
    regions = chunks.speech_regions(pcm)
    if not regions:
        return [False] * len(words)
    runs = chunks.runs_in(pcm, regions)
    mids = np.array([(w.start_s + w.end_s) / 2 * SAMPLE_RATE_HZ for w in words])
    region_of = np.searchsorted(np.array([b for _, b in regions]), mids, side="right")
    counts = np.bincount(region_of[region_of < len(regions)], minlength=len(regions))
    return [bool(r < len(regions) and len(runs[r]) < chunks.CAREFUL_RUNS_PER_WORD * counts[r]) for r in region_of]


def snap_to_speech_runs(
    pcm: np.ndarray, words: Sequence[StreamWord], energy: np.ndarray
) -> tuple[list[StreamWord], list[bool]]:
    """Words that own whole speech runs take exactly those runs' extent (to the sample).

    Where words are separated by silence (TTS speech, careful speech), the silence says where a word starts and
    ends better than the aligner's 10 ms states do: the aligner is trusted only to say which run is which word's.
    A word's main run is the run it overlaps most; a run that is the main run of exactly one word and at most
    `RUN_MAX_S` long is that word's. A run that no word calls main but some word overlaps (the release burst after
    a stop's closure) goes to the word whose own run is nearest, within `RUN_ATTACH_S`. Runs shared by several
    words (connected speech) are left to the per-word refinement.

    A word is not snapped when that would leave more than `UNCOVERED_MAX_S` of speech inside its aligned span to
    no word: a run that ends at a stop's closure inside the word ("dump|lings", "nex|t") is not the whole word
    (`eval-align --dialogues 2`, known text: p95 start error 70.7 -> 58.3 ms).

    Returns:
        (words, snapped): the words (snapped ones moved) and which were snapped.
    """
    runs = speech_runs(energy)
    if not runs:
        return list(words), [False] * len(words)
    fs = ENERGY_FRAME_SAMPLES / SAMPLE_RATE_HZ
    starts = np.array([a for a, _ in runs])
    ends = np.array([b for _, b in runs])

    def overlaps(w: StreamWord) -> np.ndarray:
        a, b = w.start_s / fs, w.end_s / fs
        return np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0, None)

    main: dict[int, list[int]] = {}
    best_word: dict[int, tuple[float, int]] = {}
    for i, w in enumerate(words):
        if not w.aligned:
            continue
        ov = overlaps(w)
        if ov.max() <= 0:
            continue
        main.setdefault(int(np.argmax(ov)), []).append(i)
        for r in np.flatnonzero(ov > 0):
            if ov[r] > best_word.get(int(r), (0.0, -1))[0]:
                best_word[int(r)] = (float(ov[r]), i)
    connected = _in_connected_speech(pcm, words)
    own: dict[int, list[int]] = {}
    for r, owners in main.items():
        if len(owners) == 1 and (ends[r] - starts[r]) * fs <= RUN_MAX_S:
            ov = overlaps(words[owners[0]])
            foreign = sum(float(ov[m]) for m in main if m != r) * fs
            if foreign <= SNAP_MAX_FOREIGN_S or not connected[owners[0]]:
                own[owners[0]] = [r]
    owned = sorted((rs[0], i) for i, rs in own.items())
    for r in sorted(best_word):  # a run no word calls main goes to the word whose own run is nearest
        if r in main or not owned:
            continue
        gap, i = min((max(starts[m] - ends[r], starts[r] - ends[m]), i) for m, i in owned)
        if gap * fs <= RUN_ATTACH_S:
            own[i].append(r)

    main_of = np.full(len(runs), -1)  # the word whose own main run each run is
    for j, rs in own.items():
        main_of[rs[0]] = j

    def speech_s(i: int, a_s: float, b_s: float) -> float:  # seconds in [a_s, b_s) of runs not another's main run
        ov = np.clip(np.minimum(ends, b_s / fs) - np.maximum(starts, a_s / fs), 0, None)
        return float(ov[(main_of < 0) | (main_of == i)].sum()) * fs

    x = np.abs(pcm)
    spans: dict[int, tuple[float, float]] = {}
    for i in sorted(own):
        start, end = _sample_edges_s(x, int(starts[min(own[i])]), int(ends[max(own[i])]))
        if speech_s(i, words[i].start_s, start) + speech_s(i, end, words[i].end_s) <= UNCOVERED_MAX_S:
            spans[i] = (start, end)  # (otherwise sound of the word would be left uncovered: a stop's closure)
    return _apply_spans(words, spans)


def _sample_edges_s(x: np.ndarray, a: int, b: int) -> tuple[float, float]:
    """The first and last sample (as seconds) of |pcm| `x` at or above EDGE_AMPLITUDE_DB below the peak of the
    energy frames [a, b), looked for within one frame of the frames' edges."""
    lo, hi = a * ENERGY_FRAME_SAMPLES, b * ENERGY_FRAME_SAMPLES
    threshold = x[lo:hi].max() * 10 ** (EDGE_AMPLITUDE_DB / 20)
    head = np.flatnonzero(x[max(lo - ENERGY_FRAME_SAMPLES, 0) : lo + ENERGY_FRAME_SAMPLES] >= threshold)
    tail = np.flatnonzero(x[hi - ENERGY_FRAME_SAMPLES : hi + ENERGY_FRAME_SAMPLES] >= threshold)
    first = max(lo - ENERGY_FRAME_SAMPLES, 0) + int(head[0]) if head.size else lo
    last = hi - ENERGY_FRAME_SAMPLES + int(tail[-1]) + 1 if tail.size else hi
    return first / SAMPLE_RATE_HZ, last / SAMPLE_RATE_HZ


def _apply_spans(
    words: Sequence[StreamWord], spans: Mapping[int, tuple[float, float]]
) -> tuple[list[StreamWord], list[bool]]:
    """`words` with word i moved to spans[i] (seconds) where that crosses no neighbour the aligner placed (a
    snapped previous word counts at its new end), and which were moved."""
    out, snapped = list(words), [False] * len(words)
    for i, (start, end) in sorted(spans.items()):
        prev_end = out[i - 1].end_s if i > 0 else 0.0
        next_start = words[i + 1].start_s if i + 1 < len(words) and i + 1 not in spans else float("inf")
        if start < prev_end - 1e-9 or end > next_start + 1e-9:
            continue  # would cross a neighbour the aligner placed there: keep the aligner's word
        out[i] = StreamWord(text=words[i].text, start_s=start, end_s=end, score=words[i].score, aligned=True)
        snapped[i] = True
    return out, snapped


def refine_boundaries(pcm: np.ndarray, words: Sequence[StreamWord]) -> list[StreamWord]:
    """Snap words that own whole speech runs to them (`snap_to_speech_runs`); move each other aligned word's start
    to its first voiced 5 ms frame and its end past its last voiced frame; then take pauses out of every aligned
    word (`out_of_pauses`).

    A frame is voiced when its energy is within `REFINE_THRESHOLD_DB` of the loudest frame near the word. An edge
    moves at most `REFINE_MAX_SHIFT_S`, never past the neighbouring words' edges, and only when the word keeps at
    least one voiced frame (otherwise the aligner's times are kept). Unaligned words are not touched.
    """
    energy = frame_energy(pcm)
    n = len(energy)
    if n == 0:
        return list(words)
    fs = ENERGY_FRAME_SAMPLES / SAMPLE_RATE_HZ
    shift = int(round(REFINE_MAX_SHIFT_S / fs))
    out, snapped = snap_to_speech_runs(pcm, words, energy)
    words = out[:]
    for i, w in enumerate(words):
        if not w.aligned or snapped[i]:
            continue
        a, b = int(w.start_s / fs), int(np.ceil(w.end_s / fs))
        prev_end = int(np.ceil(out[i - 1].end_s / fs)) if i > 0 else 0
        next_start = int(words[i + 1].start_s / fs) if i + 1 < len(words) else n
        lo, hi = max(a - shift, prev_end, 0), min(b + shift, next_start, n)
        if hi <= lo or b <= a:
            continue
        core = energy[max(a, 0) : min(b, n)]
        if core.size == 0:
            continue
        peak = core.max()
        if peak <= 1e-10:
            continue
        voiced = energy[lo:hi] >= peak * 10 ** (REFINE_THRESHOLD_DB / 10)
        # the run of voiced frames reachable from the word's own voiced frames, bridging gaps shorter than 30 ms
        inside = np.flatnonzero(voiced[max(a - lo, 0) : max(b - lo, 0)])
        if inside.size == 0:
            continue
        first, last = inside[0] + max(a - lo, 0), inside[-1] + max(a - lo, 0)
        bridge = int(round(0.03 / fs))
        while first > 0 and voiced[max(first - bridge, 0) : first].any():
            first = max(first - bridge, 0) + int(np.argmax(voiced[max(first - bridge, 0) : first]))
        while last + 1 < len(voiced) and voiced[last + 1 : last + 1 + bridge].any():
            last = last + 1 + int(np.flatnonzero(voiced[last + 1 : last + 1 + bridge])[-1])
        start, end = (lo + first) * fs, (lo + last + 1) * fs
        out[i] = StreamWord(text=w.text, start_s=start, end_s=max(end, start), score=w.score, aligned=True)
    return out_of_pauses(out, energy)


def _quiet_stretch(voiced: np.ndarray, f: int) -> tuple[int, int]:
    """The stretch [a, b) of frames without sound around frame `f` (which has none)."""
    loud = np.flatnonzero(voiced)
    a = loud[loud < f]
    b = loud[loud > f]
    return (int(a[-1]) + 1 if a.size else 0), (int(b[0]) if b.size else len(voiced))


def out_of_pauses(words: Sequence[StreamWord], energy: np.ndarray) -> list[StreamWord]:
    """Take pauses out of aligned words: a start that lies in a pause moves to the speech onset after it, an end
    that lies in a pause back to the speech offset before it, when that onset (offset) is inside the word.

    A pause is a stretch of at least `PAUSE_MIN_S` of 5 ms frames (`energy`, `energy.frame_energy`) without sound
    (`energy.voiced_frames`: `ONSET_THRESHOLD_DB` for starts, `energy.RUN_THRESHOLD_DB` for ends). The per-word
    refinement moves an edge at most `REFINE_MAX_SHIFT_S`; a word after a short pause inside a turn can start
    100-430 ms early, taking in the pause (`eval-align --dialogues 2`: "but", "the", "I"). Shorter silences are
    left alone (a stop's closure belongs to its word). Words only shrink, so no neighbour is crossed; unaligned
    words are not touched.
    """
    n = len(energy)
    if n == 0:
        return list(words)
    fs = ENERGY_FRAME_SAMPLES / SAMPLE_RATE_HZ
    pause = int(round(PAUSE_MIN_S / fs))
    onset_voiced, offset_voiced = voiced_frames(energy, ONSET_THRESHOLD_DB), voiced_frames(energy)
    out = []
    for w in words:
        a = min(max(int(round(w.start_s / fs)), 0), n - 1)
        b = min(max(int(round(w.end_s / fs)), 1), n)
        start, end = w.start_s, w.end_s
        if w.aligned and a < b and not onset_voiced[a]:
            lo, hi = _quiet_stretch(onset_voiced, a)
            if hi - lo >= pause and hi < b:
                start = hi * fs
        if w.aligned and a < b and not offset_voiced[b - 1]:
            lo, hi = _quiet_stretch(offset_voiced, b - 1)
            if hi - lo >= pause and lo > a and lo * fs > start:
                end = lo * fs
        out.append(dataclasses.replace(w, start_s=start, end_s=end) if (start, end) != (w.start_s, w.end_s) else w)
    return out
