"""Output heads on the model's output slots: text bytes, dMel codes, and flow matching on continuous log-mel frames.

    python -m pytest -q tests/trainer/test_model.py

Each head returns a *sum* of per-target losses and the number of targets, so the training loop can normalise by the
token count of a whole optimiser step (gradient accumulation stays exact).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from schemas.dmel import DMEL_CHANNELS, DMEL_LEVELS
from schemas.layout import TEXT_END

TEXT_CLASSES = TEXT_END + 1
"""Bytes 0..255 and TEXT_END (TEXT_PAD is never a target)."""


class TextHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, TEXT_CLASSES)

    def forward(self, h_MD: torch.Tensor, target_M: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy (nats) of M text targets (int, 0..256)."""
        return F.cross_entropy(self.proj(h_MD).float(), target_M.long(), reduction="sum")


class DmelHead(nn.Module):
    """80 channels x 16 levels: one 16-way softmax per channel; a frame's loss is the mean over channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, DMEL_CHANNELS * DMEL_LEVELS)

    def forward(self, h_MD: torch.Tensor, codes_MC: torch.Tensor) -> torch.Tensor:
        logits = self.proj(h_MD).float().view(-1, DMEL_LEVELS)
        per_channel = F.cross_entropy(logits, codes_MC.reshape(-1).long(), reduction="sum")
        return per_channel / DMEL_CHANNELS


class SpeakHead(nn.Module):
    """Does the model speak in this micro-turn? One logit from the hidden state at the micro-turn's SPEAK slot, which
    has heard all input up to the micro-turn's end and none of the model's own output in it (DESIGN.md §6). The
    target is `schemas.dmel.speech_frames` of the micro-turn's 16 model dMel frames, any of them: the measure the
    behaviour evaluation reads generated speech with (evals/vocode.py). An explicit turn-taking decision, as the
    state tokens of duplex models (listen / speak) and voice activity projection heads are."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)

    def logits(self, h_MD: torch.Tensor) -> torch.Tensor:
        """(M, D) hidden states at SPEAK slots -> (M,) fp32 logits of speaking."""
        return self.proj(h_MD).float().squeeze(-1)

    def forward(self, h_MD: torch.Tensor, speaks_M: torch.Tensor, weight_M: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Summed binary cross-entropy (nats) of M decisions (bool targets), each times its weight."""
        bce = F.binary_cross_entropy_with_logits(self.logits(h_MD), speaks_M.float(), reduction="none")
        return (bce * weight_M).sum()


def time_embedding(t_M1: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time t in [0, 1]: (M, 1) -> (M, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t_M1.device, dtype=torch.float32) / half)
    angles = 1000.0 * t_M1.float() * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowHead(nn.Module):
    """Rectified flow on a frame x1 (80 log-mel channels, normalised): x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I);
    the head predicts the velocity x1 - x0 from (hidden state, x_t, t). A frame's loss is the mean squared error
    over its 80 channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cond = nn.Linear(dim, dim)
        self.inp = nn.Linear(DMEL_CHANNELS, dim)
        self.time = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, DMEL_CHANNELS))
        self.dim = dim

    def velocity(self, h_MD: torch.Tensor, x_MC: torch.Tensor, t_M1: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.cond(h_MD) + self.inp(x_MC) + self.time(time_embedding(t_M1, self.dim)))

    def forward(self, h_MD: torch.Tensor, x1_MC: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Summed per-frame MSE. Noise and times come from `generator` (a CPU generator: same draws on any device)."""
        m = x1_MC.shape[0]
        x0 = torch.randn(m, DMEL_CHANNELS, generator=generator).to(x1_MC.device)
        t = torch.rand(m, 1, generator=generator).to(x1_MC.device)
        x_t = (1 - t) * x0 + t * x1_MC
        v = self.velocity(h_MD, x_t.to(h_MD.dtype), t).float()
        return (v - (x1_MC - x0)).square().mean(-1).sum()
