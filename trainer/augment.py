"""Training-time augmentation of what the model hears: the user's (and others') dMel, varied per example as if
another voice or another channel had spoken it.

A few synthetic voices teach cues that stay with those voices (issue 21: the held-out voices' cue is what limits
turn-taking). Each training example draws, for its heard streams, one of each (the same for all its frames, as a
voice's traits are):

- a shift along the mel axis by up to `DataConfig.augment_channels` channels (the spectrum moved up or down, as a
  shorter or longer vocal tract or a higher or lower voice moves it; the edge channel fills the vacated ones);
- a gain of up to `DataConfig.augment_levels` levels (one level = 0.6 log10 units, 6 dB);
- a spectral tilt of up to `DataConfig.augment_tilt` levels between the lowest and the highest channel (brighter
  or duller engines and microphones).

Gain and tilt move only the codes above digital silence (`schemas.dmel.SILENCE_CODE`), which stays silence, and the
result is clipped to the codes' range (silence .. 15). The model's own stream (OUT_DMEL, its targets) is never
touched, nor is anything at inference. Draws come from a generator seeded by (seed, step, micro-batch), so a resumed
run repeats them (trainer/train.py).
"""

from __future__ import annotations

import torch

from schemas.dmel import DMEL_LEVELS, SILENCE_CODE
from schemas.layout import IN_DMEL
from trainer.config import DataConfig


def augments(cfg: DataConfig) -> bool:
    """Whether `cfg` asks for any augmentation of the heard dMel."""
    return bool(cfg.augment_channels or cfg.augment_levels or cfg.augment_tilt)


def vary_codes(
    codes_BMC: torch.Tensor, channel_shift_B: torch.Tensor, level_shift_B: torch.Tensor, tilt_B: torch.Tensor
) -> torch.Tensor:
    """dMel codes of B examples, each moved by its own shift, gain and tilt.

    Args:
        codes_BMC: (B, M, 80) integer codes (M frames of each example).
        channel_shift_B: (B,) int, channels to move the spectrum up (> 0) or down (< 0).
        level_shift_B: (B,) int, levels added to every non-silent code.
        tilt_B: (B,) float, levels added at the highest channel minus those at the lowest (linear in between, rounded).

    Returns:
        (B, M, 80) codes of the same dtype.
    """
    b, _, c = codes_BMC.shape
    channels = torch.arange(c, device=codes_BMC.device)
    source_BC = (channels[None] - channel_shift_B[:, None]).clamp(0, c - 1)
    moved = torch.gather(codes_BMC.long(), 2, source_BC[:, None, :].expand(b, codes_BMC.shape[1], c))
    ramp = channels.float() / (c - 1) - 0.5
    offset_BC = (level_shift_B[:, None].float() + tilt_B[:, None] * ramp[None]).round().long()
    loud = moved > SILENCE_CODE
    varied = torch.where(loud, (moved + offset_BC[:, None, :]).clamp(SILENCE_CODE, DMEL_LEVELS - 1), moved)
    return varied.to(codes_BMC.dtype)


def _draws(cfg: DataConfig, b: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    def ints(bound: int) -> torch.Tensor:
        return torch.randint(-bound, bound + 1, (b,), generator=generator)

    tilt = (torch.rand(b, generator=generator) * 2 - 1) * cfg.augment_tilt
    return ints(cfg.augment_channels), ints(cfg.augment_levels), tilt


def augment_heard(batch: dict[str, torch.Tensor], cfg: DataConfig, generator: torch.Generator) -> dict:
    """`batch` (trainer/data.py's, on the CPU) with its IN_DMEL slots' codes varied per example (the user's stream,
    and the others' stream with draws of its own); every other field shared, not copied. Without augmentation in
    `cfg`: `batch` itself, and no draw is made."""
    if not augments(cfg):
        return batch
    cols = (batch["kind"][0] == IN_DMEL).nonzero(as_tuple=True)[0]
    out = dict(batch)
    b = batch["dmel"].shape[0]
    for key in ("dmel", "others_dmel"):
        draws = _draws(cfg, b, generator)  # drawn for both streams always, so the user's draws never depend on others
        if key not in batch or (key == "others_dmel" and not batch["has_others"].any()):
            continue  # all-zero others (none in the batch): nothing to vary
        varied = batch[key].clone()
        varied[:, cols] = vary_codes(batch[key][:, cols], *draws)
        out[key] = varied
    return out
