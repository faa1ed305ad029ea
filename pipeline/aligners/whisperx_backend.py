"""whisperx: faster-whisper transcription (VAD-cut batches) and wav2vec2 CTC forced alignment, all from local paths.

    python -c "from pipeline.aligners.whisperx_backend import offline_punkt; print(offline_punkt('/tmp/punkt'))"

whisperx splits each segment into sentences with NLTK's Punkt and, when the ``punkt_tab`` data is missing, calls
``nltk.download``. `offline_punkt` writes an untrained Punkt parameter set (the four empty files that
``save_punkt_params(PunktParameters())`` would write: no abbreviations, collocations or sentence starters; sentences
end at '.', '?' and '!') in the ``punkt_tab`` layout into a local directory and puts that first on
``nltk.data.path``, so the lookup succeeds and nothing is downloaded. Sentence
splitting only groups the aligned words into sub-segments; it does not move any word.

The VAD is the pyannote segmentation model that the whisperx wheel ships (``whisperx/assets/pytorch_model.bin``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence

import numpy as np

from pipeline.aligners import AlignerConfig, AlignerError, StreamWord, spoken_form
from pipeline.aligners.faster_whisper_backend import model_label

logger = logging.getLogger(__name__)

PUNKT_LANGUAGES = ("english",)
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
"""The punkt_tab layout that nltk.tokenize.punkt.load_punkt_params reads."""


def offline_punkt(root: str | None = None, languages: Sequence[str] = PUNKT_LANGUAGES) -> str:
    """Write empty (untrained) Punkt parameters for `languages` under `root`/tokenizers/punkt_tab/ and prepend
    `root` to ``nltk.data.path``. Returns `root`. Languages that already have parameters there are left alone."""
    import nltk

    root = root or os.path.join(tempfile.gettempdir(), "microturn-nltk-data")
    for lang in languages:
        lang_dir = os.path.join(root, "tokenizers", "punkt_tab", lang)
        os.makedirs(lang_dir, exist_ok=True)
        for name in PUNKT_FILES:  # empty files: what save_punkt_params writes for PunktParameters()
            path = os.path.join(lang_dir, name)
            if not os.path.exists(path):
                open(path, "w", encoding="utf-8").close()
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    return root


class WhisperXBackend:
    name = "whisperx"

    def __init__(self, config: AlignerConfig) -> None:
        import whisperx

        if not config.align_model:
            raise ValueError("--aligner whisperx needs --align_model (a local Wav2Vec2ForCTC directory)")
        offline_punkt()
        self.config = config
        self._whisperx = whisperx
        self._align_model, self._metadata = whisperx.load_align_model(
            config.language, config.device, model_name=config.align_model, model_cache_only=True
        )
        self.model = f"whisperx:{model_label(config.align_model)}"
        self._asr = None
        if config.whisper_model:
            self._asr = whisperx.load_model(
                config.whisper_model,
                config.device,
                compute_type=config.compute_type,
                language=config.language,
                vad_method="pyannote",
                local_files_only=True,
            )
            self.model = f"whisperx:{model_label(config.whisper_model)}+{model_label(config.align_model)}"

    def _align_segments(self, pcm: np.ndarray, segments: list[dict]) -> list[dict]:
        result = self._whisperx.align(
            segments, self._align_model, self._metadata, np.ascontiguousarray(pcm, dtype=np.float32), self.config.device
        )
        return [w for seg in result["segments"] for w in seg.get("words", [])]

    def transcribe(self, pcm: np.ndarray) -> list[StreamWord]:
        if self._asr is None:
            raise AlignerError(
                "the stream has no text and --aligner whisperx was given no --whisper_model to transcribe it"
            )
        result = self._asr.transcribe(
            np.ascontiguousarray(pcm, dtype=np.float32),
            batch_size=self.config.batch_size,
            language=self.config.language,
        )
        segments = [s for s in result["segments"] if s["text"].strip()]
        if not segments:
            return []
        words = [w for s in segments for w in s["text"].split()]
        aligned = self._align_segments(pcm, segments)
        return self._to_stream_words(words, aligned, len(pcm) / 16_000)

    def align(self, pcm: np.ndarray, words: Sequence[str], breaks: Sequence[int] = ()) -> list[StreamWord]:
        """Align the known words as one segment spanning the whole stream (text without times has no segments;
        utterance `breaks` carry no times, so they are not used)."""
        if not words:
            return []
        # one whitespace token per word, as the model spells it (AMI "L_C_D_" -> "lcd")
        tokens = [spoken_form(w).replace("_", "") or "?" for w in words]
        segment = {"start": 0.0, "end": len(pcm) / 16_000, "text": " ".join(tokens)}
        return self._to_stream_words(list(words), self._align_segments(pcm, [segment]), len(pcm) / 16_000)

    @staticmethod
    def _to_stream_words(words: Sequence[str], aligned: Sequence[dict], duration_s: float) -> list[StreamWord]:
        if len(aligned) != len(words):
            raise AlignerError(f"whisperx returned {len(aligned)} words for {len(words)}")
        out = []
        for text, w in zip(words, aligned, strict=True):
            if "start" in w and "end" in w and w["start"] is not None:
                start = min(max(float(w["start"]), 0.0), duration_s)
                out.append(
                    StreamWord(
                        text=text,
                        start_s=start,
                        end_s=min(max(float(w["end"]), start), duration_s),
                        score=None if w.get("score") is None else round(float(w["score"]), 4),
                    )
                )
            else:
                out.append(StreamWord(text=text, start_s=0.0, end_s=0.0, aligned=False))
        return out
