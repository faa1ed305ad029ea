"""Forced alignment of known text with pocketsphinx (its wheel ships an en-us acoustic model and dictionary).

    python -c "from pipeline.aligners import AlignerConfig, load_backend; \
        print(load_backend(AlignerConfig(backend='pocketsphinx')).model)"

Words missing from the dictionary get a pronunciation built from their parts: hyphenated words from their pieces
("mm-hmm" -> mm + hmm), AMI acronyms letter by letter ("L_C_D_" -> l + c + d), false starts ("b" of "b buttons",
`is_partial_word`) by their sounds rather than the letter's name, and anything else from a crude
letter-to-phone table, so that the audio of every word is accounted for (an unpronounceable word would pull its
neighbours). A search that fails to reach the end of the text is retried with wider beams; if that fails too, the
words come back unaligned (interpolated by the caller).

Known text is aligned twice: once on the whole track, then region by region (`pipeline.aligners.chunks`): the
stream's silences decide which words each speech region holds, and each region whose words differ from the first
pass is aligned on its own audio (measured on the demo speech, --count 2: 98.5 % -> 100 % of words in the correct
micro-turn; the AMI excerpt: no word stretched across a silence, 93.9 % -> 94.8 % inside the speaker's turns).
A word the first pass squeezed into the end (start) of a region while the next (previous) region starts (ends) with
sound no word covers is shared out freely (`_free_squeezed`: a turn's first word said over the other voice).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.aligners import AlignerConfig, AlignerError, StreamWord, chunks, is_partial_word, spoken_form, tokenize
from schemas.units import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

FRAME_S = 0.01
"""pocketsphinx's usual frames are 10 ms (100 a second); silences are compacted and whole-track times kept in them."""
BEAMS = (1e-80, 1e-120)
"""Search beams tried in turn. The default 1e-48 loses the path on long streams with long silences (measured on the
demo speech: speaker B's 34 s track failed at 1e-60 and aligned at 1e-100); wider is slower."""
FAST_FRAME_RATE_HZ = 200
"""Frame rate of the last search, tried when both beams fail at 100 frames a second. Every phone of the acoustic
model is an HMM of three states, each at least one frame long: at 100 frames a second no phone can be shorter than
30 ms, and fast speech has shorter ones (the unstressed vowel of "the", a flap), so no path reaches the end of the
text at any beam. At 200 a second the floor is 15 ms (the features are the same 25.6 ms windows, twice as often).
Measured on `eval-align --dialogues 2` (known text): es-us-f4 (espeak-ng at 190-240 words a minute) lost whole
regions at 100 and aligned every one at 200; only a fallback, since the model's transition probabilities were
trained at 100 a second."""
SEARCHES = ((100, BEAMS[0]), (100, BEAMS[1]), (FAST_FRAME_RATE_HZ, BEAMS[0]))
"""(frame rate, beam) of each search, tried in turn until one reaches the end of the text."""
EDGE_MAX_SHIFT = 2
"""`_repair_edges` tries moving up to this many words each way across a silence."""
EDGE_MAX_SWEEPS = 3
"""Measured on `eval-align --dialogues 2` (known text, 57 conversations): unplaced words 1.4 % -> 0.6 %, p95 start
error 76.6 -> 73.3 ms, within one micro-turn 98.4 -> 98.7 %. Weighing every boundary whose edge word merely scored
low (below 5e-3) instead moved correct words too (p95 95 ms, one voice 787 ms: the acoustic score alone favours
texts with fewer, stretched words) and aligned 5x slower."""
_LETTER_PHONES = {
    "a": "AE",
    "b": "B",
    "c": "K",
    "d": "D",
    "e": "EH",
    "f": "F",
    "g": "G",
    "h": "HH",
    "i": "IH",
    "j": "JH",
    "k": "K",
    "l": "L",
    "m": "M",
    "n": "N",
    "o": "AA",
    "p": "P",
    "q": "K",
    "r": "R",
    "s": "S",
    "t": "T",
    "u": "AH",
    "v": "V",
    "w": "W",
    "x": "K S",
    "y": "Y",
    "z": "Z",
}


TTS_PRONUNCIATIONS = {
    "mm": ("EH M EH M",),
    "hmm": ("HH AH M", "EY CH EH M EH M"),
    "uh": ("AA", "UH"),
    "huh": ("HH AA",),
    "um": ("AA M", "UH M"),
    "yeah": ("Y EH", "Y EH AH"),
    "sure": ("SH UH AH",),
}
"""Alternative pronunciations added to the dictionary's for backchannels, filled pauses and short answers, as TTS
voices say them (espeak-ng -x and flite -ps): espeak-ng and flite spell "mm" as the letters' names (EH M EH M), flite
spells "hmm" (EY CH EH M EH M), espeak-ng says "hmm" with a schwa, flite says "uh" with AA. The search takes
whichever fits: with only the dictionary's "mm M" the words around such a backchannel were pushed into the next
region. espeak-ng says "yeah" j'Eh (the dictionary: Y AE) and "sure" S'U@ (SH UH R): with only the dictionary's,
the word after a long "yeah" or a Scottish "sure" was aligned onto its tail (`eval-align --dialogues 2`: es-sc-f1
and es-us-f4 98.7 / 99.5 -> 100 % within one micro-turn, every other voice's row unchanged or better). espeak-ng's
Lancastrian voice says "uh" and "um" with the vowel of "foot" (ʊ, as northern English does): with only AH / AA the
"the" before such an "uh" was aligned onto it (es-la-m7 99.5 -> 100 %; fe-ked same micro-turn 86.8 -> 86.3 %)."""

FRAGMENT_PREFIX = "frag_"
"""Dictionary name of a false start ("b" of "b buttons"), kept apart from the word "b" (the letter's name)."""


def _phone_count(decoder, name: str) -> int:
    """Phones of the longest of `name`'s pronunciations ("hmm(2)", ... included), for its expected duration: a
    backchannel said as letters' names (flite's "hmm", EY CH EH M EH M, about a second) is held far longer than its
    first pronunciation (HH M) says; measured on `eval-align --dialogues 2`, the words after such a "hmm" were
    shared into its sound and spread there."""
    counts = []
    k = 1
    while pron := decoder.lookup_word(name if k == 1 else f"{name}({k})"):
        counts.append(len(pron.split()))
        k += 1
    return max(counts, default=1)


def _letter_phones(form: str) -> str:
    """A crude pronunciation from letters, one phone each (for fragments and words the dictionary lacks)."""
    return " ".join(_LETTER_PHONES[c] for c in form if c in _LETTER_PHONES) or "AH"


KEEP_SILENCE_S = 0.3
"""Silences longer than this (frames 40 dB below the stream's loudest) are shortened to it before aligning: long
stretches of silence (the other party's turns on a per-speaker track) are where pocketsphinx loses the path."""


def compact_silences(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`pcm` with long silences shortened to `KEEP_SILENCE_S`, and for each kept 10 ms frame its original frame."""
    hop = 160
    n = len(pcm) // hop
    if n == 0:
        return pcm, np.arange(0)
    energy = np.mean(pcm[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1)
    silent = energy < max(energy.max(), 1e-10) * 1e-4
    keep = np.ones(n, dtype=bool)
    limit = int(KEEP_SILENCE_S / FRAME_S)
    i = 0
    while i < n:
        if silent[i]:
            j = i
            while j < n and silent[j]:
                j += 1
            if j - i > limit:
                keep[i + limit // 2 : j - limit // 2] = False
            i = j
        else:
            i += 1
    frames = np.flatnonzero(keep)
    return pcm[: n * hop].reshape(n, hop)[frames].reshape(-1), frames


NOISE_FLOOR_RMS = 3e-4
"""Gaussian noise (-70 dBFS, fixed seed) added to what pocketsphinx hears. Its acoustic model knows no digital
silence: on the demo tracks (exact zeros between words) it lost the path and squeezed short words; measured on 2 demo
conversations (eval-align, known text): 1e-4 still lost 4 words, 3e-4 none and the best micro-turn share, 1e-3 and
3e-3 none but later word ends. Below any real microphone's noise floor, so recordings are unchanged in effect."""


def _to_int16(pcm: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(len(pcm)) * NOISE_FLOOR_RMS
    return (np.clip(pcm + noise, -1.0, 1.0) * 32767).astype(np.int16)


SQUEEZED_SCORE = 1e-3
"""A first-pass word whose per-frame acoustic density (`_score`) is below this was squeezed into a neighbour's
sound (the connected-speech set: "right", which starts a turn over the other voice, scored 2e-4 at the end of the
speaker's previous turn; every correctly placed word there scored above 2e-3): its region is left free when
the sound across the silence is not accounted for (`_free_squeezed`)."""
UNCOVERED_S = 0.15
"""Sound at a region's edge at least this long (a short word) that no first-pass word covers."""
EDGE_UNCOVERED_S = 0.1
"""`_repair_edges` counts a region's edge facing the silence as a wrong split, as it does a squeezed word, where at
least this much of the region's sound lies beyond the split's outermost word ("at uh [the] / harbour": "the"
squeezed onto the filler, its own 0.14 s of sound at the next region's start left to no word; that split had the
higher likelihood). Measured on `eval-align --dialogues 2`: es-la-m7 within one micro-turn 98.5 -> 99.5 %, every
other voice's figures unchanged."""
SQUEEZED_S_PER_PHONE = 0.05
"""A region's edge word with a score below `SQUEEZED_SCORE` that spans less than this per phone of its
pronunciation was squeezed into sound that is not its own (the first word of a turn pulled back into the end of the
speaker's previous turn, or a last word pushed into the next): `_repair_edges` tries it across the silence, as it
does unplaced words. Measured on `eval-align --dialogues 2` (known text, 57 conversations, 3,393 words): words
placed beyond one micro-turn spanned 10-47 ms a phone, the region-edge words placed within one 35 ms a phone or more
but for 6 of 510. With the rule, unplaced words 0.7 % -> 0.4 %, es-us-f4 p95 start error 124 -> 79 ms and its
unplaced 4.9 % -> 0 %, within one micro-turn 99.1 % -> 99.2 %; choosing, among the splits, the one with the fewest
squeezed words before the best log-likelihood: within one 99.3 %, p95 58.3 -> 57.3 ms, voices meeting every goal
5 -> 7 of 19. Also trying the boundaries where the other side has sound no word covers (`UNCOVERED_S`) moved correct
words: within one 98.9 %, es-gb-f3 p95 113 ms."""


SQUEEZE_CONTEXT = 2
"""`_repair_squeezed` realigns a squeezed word with up to this many words on each side (those of its region)."""


def _squeezed(span_s: float, score: float | None, own_phones: int) -> bool:
    """Whether a word aligned over `span_s` seconds at `score` (`_score`; None: unplaced) with `own_phones` phones
    was squeezed into sound that is not its own (`SQUEEZED_SCORE`, `SQUEEZED_S_PER_PHONE`)."""
    return score is not None and score < SQUEEZED_SCORE and span_s < SQUEEZED_S_PER_PHONE * max(own_phones, 1)


def _free_squeezed(
    anchors: list[int],
    times: Sequence[tuple[float, float, float | None] | None],
    regions: Sequence[tuple[int, int]],
) -> list[int]:
    """`anchors` with -1 (free) for a word squeezed at the edge of its region: the last (first) of its region's
    words, with a first-pass score below `SQUEEZED_SCORE`, while the next (previous) region's sound starts (ends)
    at least `UNCOVERED_S` before (after) any of that region's words does: sound no word accounts for on the other
    side of the silence."""
    out = list(anchors)
    spans = [(t[0], t[1]) if t is not None else None for t in times]
    for j, (a, t) in enumerate(zip(anchors, times, strict=True)):
        if a < 0 or t is None or t[2] is None or t[2] >= SQUEEZED_SCORE:
            continue
        if (j + 1 == len(anchors) or anchors[j + 1] != a) and a + 1 < len(regions):
            starts = [s[0] for s, r in zip(spans, anchors, strict=True) if s is not None and r == a + 1]
            head = regions[a + 1][0] / SAMPLE_RATE_HZ
            if min(starts, default=regions[a + 1][1] / SAMPLE_RATE_HZ) - head >= UNCOVERED_S:
                out[j] = -1
        if (j == 0 or anchors[j - 1] != a) and a > 0:
            ends = [s[1] for s, r in zip(spans, anchors, strict=True) if s is not None and r == a - 1]
            tail = regions[a - 1][1] / SAMPLE_RATE_HZ
            if tail - max(ends, default=regions[a - 1][0] / SAMPLE_RATE_HZ) >= UNCOVERED_S:
                out[j] = -1
    return out


def _score(seg) -> float:
    """Confidence of a word segment: the per-frame geometric mean of its acoustic density, in (0, 1]."""
    frames = max(seg.end_frame + 1 - seg.start_frame, 1)
    return round(float(np.exp(max(np.log(max(seg.ascore, 1e-300)) / frames, -50.0))), 4)


@dataclass(frozen=True, slots=True)
class _Seg:
    """A word segment of one search, in seconds from the start of the audio it searched."""

    start_s: float
    end_s: float
    score: float
    log_like: float  # summed log acoustic density
    frames: int


@dataclass(frozen=True, slots=True)
class _Search:
    decoder: Any
    frame_rate_hz: int
    beam: float


def _stream_times(lo: int, timed: Sequence[_Seg]) -> list[tuple[float, float, float]]:
    """(start_s, end_s, score) in stream time of segments searched on audio from sample `lo` (`_align_region`
    starts at the 10 ms frame that holds it)."""
    t0 = (lo - lo % 160) / SAMPLE_RATE_HZ
    return [(t0 + g.start_s, t0 + g.end_s, g.score) for g in timed]


class PocketsphinxBackend:
    name = "pocketsphinx"

    def __init__(self, config: AlignerConfig) -> None:
        import pocketsphinx

        self.config = config
        base = pocketsphinx.get_model_path()
        hmm = config.pocketsphinx_model or os.path.join(base, "en-us", "en-us")
        dic = config.pocketsphinx_dict or os.path.join(base, "en-us", "cmudict-en-us.dict")
        self.model = "pocketsphinx:" + (config.pocketsphinx_model or "en-us (wheel)")
        self._hmm, self._dict = hmm, dic
        self._searches = [
            _Search(
                pocketsphinx.Decoder(
                    hmm=hmm,
                    dict=dic,
                    lm=None,
                    loglevel="FATAL",
                    dither=True,
                    seed=1,
                    beam=beam,
                    wbeam=beam,
                    pbeam=beam,
                    frate=rate,
                ),
                rate,
                beam,
            )
            for rate, beam in SEARCHES
        ]
        for search in self._searches:
            for word, prons in TTS_PRONUNCIATIONS.items():
                for k, pron in enumerate(prons, start=2):  # "mm(2)": the dictionary's way to name an alternative
                    if search.decoder.lookup_word(word) and not search.decoder.lookup_word(f"{word}({k})"):
                        search.decoder.add_word(f"{word}({k})", pron, True)
        self._transcriber = None
        if config.whisper_model:
            from pipeline.aligners.faster_whisper_backend import FasterWhisperBackend

            self._transcriber = FasterWhisperBackend(config)

    def transcribe(self, pcm: np.ndarray) -> list[StreamWord]:
        if self._transcriber is None:
            raise AlignerError(
                "the stream has no text and --aligner pocketsphinx only times known text: set "
                "--whisper_model to transcribe it first"
            )
        heard = self._transcriber.transcribe(pcm)
        return [
            StreamWord(text=h.text, start_s=w.start_s, end_s=w.end_s, score=w.score, aligned=w.aligned)
            for h, w in zip(heard, self.align(pcm, [h.text for h in heard]), strict=True)
        ]

    def _pronunciation(self, decoder, form: str) -> str:
        found = decoder.lookup_word(form)
        if found:
            return found
        parts = [p for p in form.replace("_", "-").split("-") if p]
        if len(parts) > 1:
            return " ".join(self._pronunciation(decoder, p) for p in parts)
        return _letter_phones(form)

    def _align_once(self, search: _Search, raw: bytes, names: Sequence[str]) -> list[_Seg] | None:
        """Word segments of `names` on `raw` (16 kHz int16): the aligned prefix of `names` (pocketsphinx may stop
        before the end of the text), or None when the search failed outright. Each search starts from the decoder's
        initial feature state: pocketsphinx otherwise carries its cepstral mean normalisation and dither generator
        from one utterance to the next, and the same audio aligned after other audio got other scores and times (a
        bundle retried on a worker with another history would not give the same bytes). `self.last_log_like` is then the
        summed log acoustic density of every segment (silences too: the whole audio's, for comparing texts)."""
        decoder = search.decoder
        decoder.reinit_feat()  # no state from earlier searches (feature normalisation, dither): same audio, same times
        decoder.set_align_text(" ".join(names))
        decoder.start_utt()
        decoder.process_raw(raw, full_utt=True)
        decoder.end_utt()
        segs = decoder.seg()
        if segs is None:
            return None
        segs = list(segs)
        self.last_log_like = sum(float(np.log(max(s.ascore, 1e-300))) for s in segs)
        frame_s = 1.0 / search.frame_rate_hz
        return [
            _Seg(
                s.start_frame * frame_s,
                (s.end_frame + 1) * frame_s,
                _score(s),
                float(np.log(max(s.ascore, 1e-300))),
                s.end_frame + 1 - s.start_frame,
            )
            for s in segs
            if not (s.word.startswith("<") or s.word.startswith("[") or s.word == "(NULL)")
        ]

    def _names(self, words: Sequence[str]) -> tuple[list[int], list[str]]:
        """Indices of `words` that hold something to say, and their dictionary names (added when missing)."""
        forms = [spoken_form(w) for w in words]
        keep = [i for i, f in enumerate(forms) if f and tokenize(f)]
        names = []
        for k, i in enumerate(keep):
            name = forms[i]
            fragment = k + 1 < len(keep) and is_partial_word(name, forms[keep[k + 1]])
            if fragment:  # said as its sounds ("b" -> B), not the letter's name (B IY)
                name = FRAGMENT_PREFIX + name
            for search in self._searches:
                decoder = search.decoder
                if not decoder.lookup_word(name):
                    pron = _letter_phones(forms[i]) if fragment else self._pronunciation(decoder, name)
                    decoder.add_word(name, pron, True)
            names.append(name)
        return keep, names

    def fit(self, pcm: np.ndarray, words: Sequence[str]) -> float:
        """How well `words` fit `pcm`, for telling whose text is whose: one alignment pass (no retries), the share
        of the words it reaches before losing the path, plus a tie-break in [0, 0.01) that grows with the
        per-frame acoustic likelihood (so two texts that both align fully are told apart by how well)."""
        keep, names = self._names(words)
        if not names:
            return 0.0
        compact, _ = compact_silences(pcm)
        timed = self._align_once(self._searches[0], _to_int16(compact).tobytes(), names) or []
        frames = sum(s.frames for s in timed)
        log_like = sum(s.log_like for s in timed) / max(frames, 1) if timed else -50.0
        return len(timed) / len(names) + 0.01 * float(np.exp(max(log_like, -50.0)))

    def align(self, pcm: np.ndarray, words: Sequence[str], breaks: Sequence[int] = ()) -> list[StreamWord]:
        """Align all of `words`: a whole-track pass (`align_whole`), then region by region (`chunks`).

        The stream is cut at its silences (`chunks.speech_regions`); the words are shared out over the regions by
        `chunks.assign_words` (durations, speech runs a region holds, anchored to the first pass) and each region
        is aligned on its own audio (`chunks.PAD_S` of silence each side, and again with `chunks.WIDE_PAD_S` where
        no search reaches the end of its text), so no word crosses a silence or is pushed into another region's
        speech. Then
        the same again one level down: within each region, over its speech runs (`chunks.runs_in`; pauses between
        careful words). Where a region's words do not all align, the level above keeps its times for them.
        `breaks` (indices of `words` that begin an utterance) keep the words of two utterances in two regions
        (`chunks.BREAK_COST`) and decide between the splits `_repair_edges` tries."""
        first = self.align_whole(pcm, words)
        keep, names = self._names(words)
        if not keep:
            return first
        begins = {int(np.searchsorted(keep, i)) for i in breaks} - {0, len(keep)}
        decoder = self._searches[0].decoder
        phones = [_phone_count(decoder, n) + chunks.WORD_PHONES for n in names]
        times: list[tuple[float, float, float | None] | None] = [
            (first[i].start_s, first[i].end_s, first[i].score) if first[i].aligned else None for i in keep
        ]
        regions = chunks.speech_regions(pcm)
        by_region = self._share(
            pcm, regions, list(range(len(keep))), names, phones, times, begins, only_changed=True, free_squeezed=True
        )
        self._repair_edges(pcm, regions, by_region, names, phones, times, begins)
        for r, ks in by_region.items():
            runs = chunks.runs_in(pcm, regions[r : r + 1])[0]
            if len(ks) > 1 and len(runs) >= max(2.0, chunks.CAREFUL_RUNS_PER_WORD * len(ks)):
                self._share(pcm, runs, ks, names, phones, times, begins, only_changed=True, keep_aligned=True)
        self._repair_squeezed(pcm, regions, names, phones, times)
        out = list(first)
        for k, t in enumerate(times):
            if t is not None:
                i = keep[k]
                out[i] = StreamWord(text=words[i], start_s=t[0], end_s=t[1], score=t[2])
        return out

    def _share(
        self,
        pcm: np.ndarray,
        regions: Sequence[tuple[int, int]],
        ks: Sequence[int],
        names: Sequence[str],
        phones: Sequence[int],
        times: list,
        begins: Collection[int] = frozenset(),
        *,
        only_changed: bool = False,
        free_squeezed: bool = False,
        keep_aligned: bool = False,
    ) -> dict[int, list[int]]:
        """Share words `ks` (indices into `names`; those in `begins` start an utterance) over `regions`
        (`chunks.assign_words`, anchored to `times`) and
        align each region's words on its padded audio, updating `times` (start_s, end_s, score) in place where
        all of a region's words align; where they do not, a long region's words keep their times (as do words the
        level above aligned, with `keep_aligned`) and a short region's are spread over it by phone count
        (`chunks.SPREAD_MAX_S_PER_WORD`; score None, so counted as interpolated). `keep_aligned`: the regions are
        a region's speech runs, a refinement (a run cut at a stop's closure inside a word, or a word shared into
        the run beside its own, does not align: the region's times are better than a spread). `only_changed`:
        align only the regions whose words differ from the anchors' (a word split by a stop's closure keeps its
        times). `free_squeezed`: words squeezed at a region's edge are not anchored (`_free_squeezed`; regions
        only, not a careful region's runs, where every word is at an edge). Returns {region: its words}."""
        if len(regions) < 2:
            return {0: list(ks)} if regions else {}
        durations = [(b - a) / SAMPLE_RATE_HZ for a, b in regions]
        spans = [times[k][:2] if times[k] is not None else None for k in ks]
        anchors = chunks.anchor_regions(regions, spans)
        if free_squeezed:
            anchors = _free_squeezed(anchors, [times[k] for k in ks], regions)
        used = sorted({a for a in anchors if a >= 0})
        # expected word durations at this stream's own speaking rate: the regions the anchors use, per phone
        rate = sum(durations[r] for r in used) / max(sum(phones[k] for k in ks), 1) if used else chunks.PHONE_S
        runs = chunks.runs_in(pcm, regions)
        try:
            region_of = chunks.assign_words(
                durations,
                [phones[k] * rate for k in ks],
                anchors,
                runs,
                chunks.loudness(pcm, regions),
                breaks=[n for n, k in enumerate(ks) if k in begins],
            )
        except ValueError as e:
            logger.info("per-region alignment skipped: %s", e)
            return {}
        groups: dict[int, list[int]] = {}
        for k, r in zip(ks, region_of, strict=True):
            groups.setdefault(r, []).append(k)
        windows = chunks.padded(regions, len(pcm))
        wide = chunks.padded(regions, len(pcm), chunks.WIDE_PAD_S)
        anchored: dict[int, list[int]] = {}
        for k, r in zip(ks, anchors, strict=True):
            anchored.setdefault(r, []).append(k)
        for r, group in groups.items():
            if only_changed and anchored.get(r) == group:
                continue
            timed = self._align_region(pcm, windows[r], [names[k] for k in group], wide[r])
            too_long = (regions[r][1] - regions[r][0]) / SAMPLE_RATE_HZ > chunks.SPREAD_MAX_S_PER_WORD * len(group)
            aligned_above = keep_aligned and all(times[k] is not None and times[k][2] is not None for k in group)
            if timed is None and (too_long or aligned_above):
                logger.debug(
                    "region %.2f-%.2f s: its %d words did not all align; kept the times of the level above",
                    regions[r][0] / SAMPLE_RATE_HZ,
                    regions[r][1] / SAMPLE_RATE_HZ,
                    len(group),
                )
                continue
            if timed is None:  # the region is theirs but the aligner cannot say where: shared by expected duration
                logger.debug(
                    "region %.2f-%.2f s: its %d words did not all align; spread by their phone counts",
                    regions[r][0] / SAMPLE_RATE_HZ,
                    regions[r][1] / SAMPLE_RATE_HZ,
                    len(group),
                )
                edges = np.cumsum([0.0] + [float(phones[k]) for k in group])
                a, b = regions[r][0] / SAMPLE_RATE_HZ, regions[r][1] / SAMPLE_RATE_HZ
                for n, k in enumerate(group):
                    times[k] = (a + (b - a) * edges[n] / edges[-1], a + (b - a) * edges[n + 1] / edges[-1], None)
                continue
            for k, t in zip(group, _stream_times(windows[r][0], timed), strict=True):
                times[k] = t
        return groups

    def _repair_edges(
        self,
        pcm: np.ndarray,
        regions: Sequence[tuple[int, int]],
        by_region: dict[int, list[int]],
        names: Sequence[str],
        phones: Sequence[int],
        times: list,
        begins: Collection[int] = frozenset(),
    ) -> None:
        """Move words across the silence between two neighbouring regions where the acoustic model or the
        transcript's utterance breaks (`begins`) say they belong on the other side (`by_region` and `times` updated
        in place).

        The sharing of words over regions (`chunks.assign_words`) goes by expected durations and the first pass,
        and a turn's first word can be pulled back into the end of the speaker's previous turn (or its last word
        pushed into the next one): that region then fails to align and its words are spread over it (unplaced).
        At every boundary between two regions with words where an edge word is unplaced or squeezed
        (`SQUEEZED_S_PER_PHONE`), each split that moves up to `EDGE_MAX_SHIFT` words out of the failed region into
        the other is aligned, and of the splits under which both regions align the one with the fewest squeezed
        words and uncovered edges (`EDGE_UNCOVERED_S`: sound facing the silence that no word of the split covers)
        wins, then the split as it was (a move that squeezes no fewer words is not made: a filler before a
        pause, squeezed at its region's end, was moved 1.1 s on, where it was squeezed too), then the highest
        summed log-likelihood of their whole audio (same audio, so the totals compare); before all of these, a
        split at an utterance break wins over one that leaves the break inside a region (a boundary whose words
        hold a break within `EDGE_MAX_SHIFT` words of it is tried too, moving words towards the break only).
        Otherwise words are never moved into a failed region: a region that fails on its own words (a
        "mm-hmm" said otherwise than the dictionary has it) aligns once a neighbour's word is squeezed in beside
        them (the demo speech: "that" pulled 1.9 s early). Sweeps repeat while a split changes (a word pushed
        along several regions comes back one region per sweep)."""
        windows = chunks.padded(regions, len(pcm))
        wide = chunks.padded(regions, len(pcm), chunks.WIDE_PAD_S)
        cache: dict[tuple[int, tuple[int, ...]], tuple[list[_Seg] | None, float]] = {}

        def aligned(region: int, ks: tuple[int, ...]) -> tuple[list[_Seg] | None, float]:
            if (region, ks) not in cache:
                timed = self._align_region(pcm, windows[region], [names[k] for k in ks], wide[region])
                cache[region, ks] = (timed, self.last_log_like if timed is not None else float("-inf"))
            return cache[region, ks]

        def suspect(k: int) -> bool:
            t = times[k]
            return t is None or t[2] is None or _squeezed(t[1] - t[0], t[2], phones[k] - chunks.WORD_PHONES)

        def squeezed_in(ks: list[int], timed: list[_Seg] | None) -> int:
            return sum(
                _squeezed(g.end_s - g.start_s, g.score, phones[k] - chunks.WORD_PHONES)
                for k, g in zip(ks, timed or [], strict=False)
            )

        def uncovered(r: int, left: list[_Seg], q: int, right: list[_Seg]) -> int:
            """Edges facing the silence between regions r and q with sound no word of the split covers."""
            end = _stream_times(windows[r][0], left[-1:])[0][1]
            start = _stream_times(windows[q][0], right[:1])[0][0]
            return int(regions[r][1] / SAMPLE_RATE_HZ - end >= EDGE_UNCOVERED_S) + int(
                start - regions[q][0] / SAMPLE_RATE_HZ >= EDGE_UNCOVERED_S
            )

        for _ in range(EDGE_MAX_SWEEPS):
            changed = False
            used = sorted(r for r, ks in by_region.items() if ks)
            for r, q in zip(used, used[1:], strict=False):
                a, b = by_region[r], by_region[q]
                both = a + b
                near = [n for n in range(1, len(both)) if both[n] in begins and abs(n - len(a)) <= EDGE_MAX_SHIFT]
                left_failed, right_failed = suspect(a[-1]), suspect(b[0])
                if not (left_failed or right_failed or (near and len(a) not in near)):
                    continue
                # words only leave a region that failed (adding words to it would squeeze them into its sound),
                # or move towards an utterance break
                lowest = max(1, len(a) - EDGE_MAX_SHIFT) if left_failed else min([len(a), *near])
                highest = min(len(both) - 1, len(a) + EDGE_MAX_SHIFT) if right_failed else max([len(a), *near])
                # the splits under which both regions align: (break not at the cut, squeezed words + uncovered
                # edges, words moved, -summed log-likelihood, cut, segments); a move that squeezes no fewer words
                # and uncovers no fewer edges is not made
                splits: list[tuple[bool, int, bool, float, int, list[_Seg], list[_Seg]]] = []
                for cut in range(lowest, highest + 1):
                    left, left_ll = aligned(r, tuple(both[:cut]))
                    right, right_ll = aligned(q, tuple(both[cut:]))
                    if left and right:  # (one region's likelihood alone favours texts with fewer, stretched words)
                        squeezed = squeezed_in(both[:cut], left) + squeezed_in(both[cut:], right)
                        splits.append(
                            (
                                bool(near) and cut not in near,
                                squeezed + uncovered(r, left, q, right),
                                cut != len(a),
                                -(left_ll + right_ll),
                                cut,
                                left,
                                right,
                            )
                        )
                if not splits:
                    continue
                *_, cut, left, right = min(splits, key=lambda x: x[:4])
                for window, ks, timed in ((windows[r], both[:cut], left), (windows[q], both[cut:], right)):
                    for k, t in zip(ks, _stream_times(window[0], timed), strict=True):
                        times[k] = t
                if cut != len(a):
                    logger.debug("words moved across the silence after %.2f s", regions[r][1] / SAMPLE_RATE_HZ)
                    by_region[r], by_region[q] = both[:cut], both[cut:]
                    changed = True
            if not changed:
                break

    def _repair_squeezed(
        self,
        pcm: np.ndarray,
        regions: Sequence[tuple[int, int]],
        names: Sequence[str],
        phones: Sequence[int],
        times: list,
    ) -> None:
        """Realign each word still squeezed (`_squeezed`) together with up to `SQUEEZE_CONTEXT` aligned words on each
        side in its speech region, on their stretch of the region's audio (`chunks.PAD_S` beyond the first and last
        word), and keep the new times where fewer of those words are squeezed (`times` updated in place); words
        never leave their region here. The region's search may have had to fall back to the fast frame rate or the
        widest beam, which let a neighbour take the word's sound; a shorter stretch may align at the usual rate,
        whose 30 ms floor per phone keeps every word its sound. A stretch whose search fails (its edges cut inside
        a neighbour's sound) changes nothing."""

        def squeezed(k: int, span: tuple[float, float, float | None]) -> bool:
            return _squeezed(span[1] - span[0], span[2], phones[k] - chunks.WORD_PHONES)

        windows = chunks.padded(regions, len(pcm))
        spans = [(t[0], t[1]) if t is not None else None for t in times]
        region_of = chunks.anchor_regions(regions, spans)
        pad = int(chunks.PAD_S * SAMPLE_RATE_HZ)
        for k in range(len(times)):
            if times[k] is None or region_of[k] < 0 or not squeezed(k, times[k]):
                continue
            ks = [
                j
                for j in range(max(0, k - SQUEEZE_CONTEXT), min(len(times), k + SQUEEZE_CONTEXT + 1))
                if region_of[j] == region_of[k] and times[j] is not None and times[j][2] is not None
            ]
            if len(ks) < 2 or ks != list(range(ks[0], ks[-1] + 1)):
                continue
            window = windows[region_of[k]]
            lo = max(int(times[ks[0]][0] * SAMPLE_RATE_HZ) - pad, window[0])
            hi = min(int(times[ks[-1]][1] * SAMPLE_RATE_HZ) + pad, window[1])
            timed = self._align_region(pcm, (lo, hi), [names[j] for j in ks])
            if timed is None:
                continue
            new = _stream_times(lo, timed)
            if sum(squeezed(j, t) for j, t in zip(ks, new, strict=True)) < sum(squeezed(j, times[j]) for j in ks):
                logger.debug("squeezed word %r realigned with its neighbours", names[k])
                for j, t in zip(ks, new, strict=True):
                    times[j] = t

    def _align_region(
        self,
        pcm: np.ndarray,
        window: tuple[int, int],
        names: Sequence[str],
        wide: tuple[int, int] | None = None,
    ) -> list[_Seg] | None:
        """Word segments of `names` on `pcm[window]` (seconds from the 10 ms frame that holds window[0]), or None
        when not every word aligns. `wide`: a window around it (more of the region's silence, `chunks.WIDE_PAD_S`)
        searched when no search reaches the end of the text on `window`; its segments are given in the same time
        base. (`self.last_log_like` is then the wide window's: more silence, a lower total.)"""
        for lo, hi in (window,) if wide is None or wide == window else (window, wide):
            raw = _to_int16(pcm[lo - lo % 160 : hi]).tobytes()
            for search in self._searches:
                timed = self._align_once(search, raw, names)
                if timed is not None and len(timed) == len(names):
                    shift = ((lo - lo % 160) - (window[0] - window[0] % 160)) / SAMPLE_RATE_HZ
                    return [_Seg(g.start_s + shift, g.end_s + shift, g.score, g.log_like, g.frames) for g in timed]
        return None

    def align_whole(self, pcm: np.ndarray, words: Sequence[str]) -> list[StreamWord]:
        """Align all of `words` on the whole of `pcm`. pocketsphinx can lose the path on long streams and then
        returns an aligned prefix of the text (or nothing): the rest is aligned again on the audio after the last
        aligned word, and a word that cannot be started at all is left unaligned (interpolated) and the search
        goes on after it."""
        keep, names = self._names(words)
        out = [StreamWord(text=w, start_s=0.0, end_s=0.0, aligned=False) for w in words]
        compact, frame_of = compact_silences(pcm)
        samples = _to_int16(compact)
        done, offset, skipped = 0, 0, 0  # words of `keep` handled so far; first 10 ms frame not yet used
        while done < len(keep):
            if (len(samples) - offset * 160) < 160 * 10:  # no audio left for the rest: interpolated
                skipped += len(keep) - done
                break
            timed = None
            for search in self._searches:
                timed = self._align_once(search, samples[offset * 160 :].tobytes(), names[done:])
                if timed:
                    break
                logger.info(
                    "pocketsphinx lost the alignment path at beam %g, %d frames/s; retrying",
                    search.beam,
                    search.frame_rate_hz,
                )
            if not timed:  # no progress: leave the next word to interpolation and go on without it
                skipped += 1
                done += 1
                continue
            for seg in timed:
                i = keep[done]
                first = min(offset + int(seg.start_s / FRAME_S + 1e-6), len(frame_of) - 1)
                last = min(offset + int(np.ceil(seg.end_s / FRAME_S - 1e-6)) - 1, len(frame_of) - 1)
                last = max(last, first)
                cut = np.flatnonzero(np.diff(frame_of[first : last + 1]) > 1)
                if cut.size:  # the word spans a shortened silence: keep its longest piece of sound
                    bounds = [first, *(first + cut + 1).tolist(), last + 1]
                    first, stop = max(zip(bounds, bounds[1:], strict=False), key=lambda ab: ab[1] - ab[0])
                    last = stop - 1
                out[i] = StreamWord(
                    text=words[i],
                    start_s=frame_of[first] * FRAME_S,
                    end_s=(frame_of[last] + 1) * FRAME_S,
                    score=seg.score,
                )
                done += 1
            offset += int(np.ceil(timed[-1].end_s / FRAME_S - 1e-6))
        if skipped:
            logger.warning("pocketsphinx could not align %d of %d words; they are interpolated", skipped, len(words))
        return out
