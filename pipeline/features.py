"""The featurise stage: each decoded 16 kHz stream -> dMel codes, 16 frames x 80 channels per micro-turn (DESIGN §3),
and speech activity per micro-turn; with more than two parties, each perspective's `others` mix and its features.

    python -c "import numpy as np, pipeline.features as f; print(f.dmel_codes(np.zeros(16001, 'f4')).shape)"  # (96, 80)

The codec itself (analysis, quantiser, parameters, levels) is schemas/dmel.py, shared with the trainer and the
evaluations; this stage only applies it, once per stream and once per others mix (`featurise`). The perspectives
(who plays the model, who is the user, who is 'others': pipeline/speakers.py `perspective_roles`) are decided here,
the first stage that needs them, and carried on to the label stage and the windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.runner.streams import map_streams
from pipeline.speakers import Roles, perspective_roles
from schemas import dmel
from schemas.grid import activity, merge
from schemas.units import num_microturns

if TYPE_CHECKING:  # the type only: importing pipeline.align would load the decoder and Beam with this module
    from pipeline.align import AlignedConversation


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


@dataclass(frozen=True, slots=True, kw_only=True)
class OthersMix:
    """The streams of one perspective's `others` summed into one stream, with its features."""

    pcm: np.ndarray  # float32 (n,): 16 kHz samples, the conversation's num_samples
    dmel: np.ndarray  # uint8 (K * 16, 80): dMel codes, rows 16 k .. 16 k + 15 for micro-turn k
    activity: np.ndarray  # float32 (K,): fraction of each micro-turn (200 ms) in which one of the others speaks


@dataclass(frozen=True, slots=True, kw_only=True)
class FeaturisedConversation:
    """An aligned conversation with its perspectives and the features of its streams (the Featurise stage's
    output). K = num_microturns(aligned.num_samples)."""

    aligned: AlignedConversation
    roles: tuple[Roles, ...]  # the perspectives, in output_speakers order (pipeline/speakers.py)
    dmel: Mapping[str, np.ndarray]  # per speaker, uint8 (K * 16, 80)
    activity: Mapping[str, np.ndarray]  # per speaker, float32 (K,): speech fraction per micro-turn
    others: tuple[OthersMix | None, ...]  # per perspective (roles order): the mix of its others; None without others


def featurise(aligned: AlignedConversation, *, perspectives: str = "all", threads: int = 1) -> FeaturisedConversation:
    """The conversation's perspectives (perspective_roles), and the dMel codes and speech activity of every
    speaker's stream and of each perspective's others mix.

    Args:
        aligned: the aligned conversation; each stream is num_samples long (16 kHz samples).
        perspectives: "all" or "first" (WindowConfig.perspectives; pipeline/speakers.py output_speakers).
        threads: streams coded at a time (pipeline.runner.streams; the codes do not depend on it).
    """
    streams = aligned.streams
    k_total = num_microturns(aligned.num_samples)
    roles = perspective_roles(aligned.conversation, aligned.speech, perspectives)
    codes = map_streams(dmel_codes, streams.values(), threads=threads)
    mixes = [np.asarray(np.sum([streams[s] for s in r.others], axis=0, dtype=np.float32)) for r in roles if r.others]
    mix_codes = iter(map_streams(dmel_codes, mixes, threads=threads))
    mix_pcm = iter(mixes)
    others = tuple(
        OthersMix(
            pcm=next(mix_pcm),
            dmel=next(mix_codes),
            activity=activity(merge([iv for s in r.others for iv in aligned.speech[s]]), k_total),
        )
        if r.others
        else None
        for r in roles
    )
    return FeaturisedConversation(
        aligned=aligned,
        roles=roles,
        dmel=dict(zip(streams, codes, strict=True)),
        activity={s: activity(iv, k_total) for s, iv in aligned.speech.items()},
        others=others,
    )
