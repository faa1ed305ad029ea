"""Split a single-track mixed recording into one stream per speaker: diarize, then keep each speaker's turns.

    python -c "from pipeline.aligners.diarize import split_streams; import numpy as np; \
        from schemas.bundle import Segment; print(split_streams(np.ones(32000, 'f4'), [Segment(start_s=0.5, end_s=1.0, \
        speaker='A'), Segment(start_s=1.0, end_s=1.5, speaker='B')]).keys())"

Speaker turns come from the bundle's RTTM when it has one, else from a pyannote speaker-diarization pipeline
loaded from a local directory (``--diarize_model``, through whisperx's `DiarizationPipeline`). Each speaker's
stream is the mixture inside that speaker's turns (with `PAD_S` of context, faded in and out over `FADE_S`) and
silence elsewhere; overlapped speech is in both streams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from schemas.bundle import Segment
from schemas.units import SAMPLE_RATE_HZ, seconds_to_samples

PAD_S = 0.1
FADE_S = 0.02


class DiarizationError(ValueError):
    """A mixed recording that cannot be split into speakers; the message is the rejected list's reason."""


class Diarizer:
    """A pyannote speaker-diarization pipeline from a local directory (config.yaml + the checkpoints it names)."""

    def __init__(self, path: str, *, device: str = "cpu") -> None:
        import os

        if not os.path.isfile(os.path.join(path, "config.yaml")):  # else whisperx would take it for a Hub name
            raise ValueError(
                f"--diarize_model {path!r} has no config.yaml: give the local directory of a pyannote "
                "speaker-diarization pipeline (models are never downloaded)"
            )
        from whisperx.diarize import DiarizationPipeline

        self.model = f"pyannote:{path.rstrip('/').split('/')[-1]}"
        try:
            self._pipeline = DiarizationPipeline(model_name=path, device=device)
        except Exception as e:  # pyannote's own errors name files inside the pipeline, not the option
            raise ValueError(
                f"--diarize_model {path!r}: the pyannote pipeline does not load ({type(e).__name__}: {e})"
            ) from e

    def __call__(self, pcm: np.ndarray, *, num_speakers: int | None = None) -> tuple[Segment, ...]:
        frame = self._pipeline(np.ascontiguousarray(pcm, dtype=np.float32), num_speakers=num_speakers)
        turns = [
            Segment(start_s=float(r.start), end_s=float(r.end), speaker=str(r.speaker)) for r in frame.itertuples()
        ]
        return tuple(sorted(turns, key=lambda s: (s.start_s, s.end_s, s.speaker)))


def split_streams(mixture: np.ndarray, segments: Sequence[Segment]) -> Mapping[str, np.ndarray]:
    """One stream per speaker of `segments`: the mixture inside their turns, silence elsewhere.

    Args:
        mixture: 16 kHz float32 mono, the whole recording.
        segments: speaker turns in seconds.
    Returns:
        {speaker: float32 array as long as `mixture`}, speakers sorted.
    Raises:
        DiarizationError: fewer than two speakers in `segments`.
    """
    speakers = sorted({s.speaker for s in segments})
    if len(speakers) < 2:
        raise DiarizationError(
            f"diarization found {len(speakers)} speaker(s) {speakers} in the mixed track; a "
            "conversation needs at least two"
        )
    n = len(mixture)
    pad, fade = seconds_to_samples(PAD_S), max(seconds_to_samples(FADE_S), 1)
    kernel = np.hanning(2 * fade + 1).astype(np.float32)
    kernel /= kernel.sum()
    out = {}
    for sp in speakers:
        mask = np.zeros(n, dtype=np.float32)
        for s in segments:
            if s.speaker == sp:
                mask[max(seconds_to_samples(s.start_s) - pad, 0) : min(seconds_to_samples(s.end_s) + pad, n)] = 1.0
        mask = np.convolve(mask, kernel, mode="same").astype(np.float32)
        out[sp] = (mixture * mask).astype(np.float32)
    return out


__all__ = ["Diarizer", "DiarizationError", "split_streams", "PAD_S", "SAMPLE_RATE_HZ"]
