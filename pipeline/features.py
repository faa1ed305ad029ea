"""The featurise stage: each decoded 16 kHz stream -> dMel codes, 16 frames x 80 channels per micro-turn (DESIGN §3).

    python -c "import numpy as np, pipeline.features as f; print(f.dmel_codes(np.zeros(16001, 'f4')).shape)"  # (96, 80)

The codec itself (analysis, quantiser, parameters, levels) is schemas/dmel.py, shared with the trainer and the
evaluations; this stage only applies it, once per stream (job.py maps it over a conversation's streams).
"""

from __future__ import annotations

import numpy as np

from schemas import dmel


def dmel_codes(pcm: np.ndarray, *, chunk_frames: int = dmel.DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """dMel codes of one 16 kHz mono stream (`schemas.dmel.dmel_codes`).

    Args:
        pcm: (n,) float PCM in [-1, 1] at 16 kHz, n >= 0 samples.
        chunk_frames: frames per STFT chunk (memory knob; the codes do not depend on it), >= 1.

    Returns:
        (num_microturns(n) * 16, 80) uint8 codes in 0..15; rows 16 k .. 16 k + 15 belong to micro-turn k.

    Raises:
        ValueError: `pcm` is not 1-D, not floating point, or not finite; `chunk_frames` < 1.
    """
    return dmel.dmel_codes(pcm, chunk_frames=chunk_frames)
