"""Trainer configuration: dataclasses with named presets (`tiny` for CPU tests, `small` for one GPU).

python -c "from trainer.config import preset; print(preset('tiny'))"
"""

from __future__ import annotations

import dataclasses
from typing import Any

from schemas.layout import LayoutSpec


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    dim: int = 64  # residual width D
    layers: int = 2
    heads: int = 4  # attention heads; head dim = dim / heads (even, for RoPE)
    experts: int = 4  # E routed experts per MoE layer
    top_k: int = 2  # K experts per token (dropless: no capacity limit)
    ffn_dim: int = 128  # F, hidden width of each SwiGLU expert
    rope_base: float = 10_000.0
    norm_eps: float = 1e-6
    stem_dim: int = 64  # hidden width of the hMLP patch stem


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    context_microturns: int = 4  # C micro-turns per training example (a window is cut into ceil(W / C) examples)
    batch_size: int = 4  # examples per micro-batch
    num_workers: int = 0  # DataLoader worker processes per rank
    shuffle_buffer: int = 64  # examples held for shuffling within one worker's stream
    frame_patches: int = 48  # PATCH slots per micro-turn (DESIGN.md §3 default 320x240 -> 48)
    text_slots: int = 16  # byte slots per micro-turn and side, the last for END
    event_slots: int = 8  # of those, at most this many carry timed events (schemas/layout.py); the rest spills
    user_text: str = "heard"  # user words fed as text: "heard" (at their end) or "none" (audio and video only)
    # Training-time variation of the heard dMel per example (trainer/augment.py); 0 = off. Never at inference.
    augment_channels: int = 0  # mel-axis shift of up to +- this many channels
    augment_levels: int = 0  # gain of up to +- this many levels (6 dB each) on non-silent codes
    augment_tilt: int = 0  # spectral tilt of up to +- this many levels, highest channel against lowest

    def __post_init__(self) -> None:
        self.layout  # noqa: B018 - validates the slot counts and user_text early, with the layout's messages
        for name in ("augment_channels", "augment_levels", "augment_tilt"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def layout(self) -> LayoutSpec:
        return LayoutSpec(
            frame_patches=self.frame_patches,
            text_slots=self.text_slots,
            event_slots=self.event_slots,
            user_text=self.user_text,
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OptimConfig:
    lr: float = 3e-3  # peak learning rate, per step
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of lr
    warmup_steps: int = 10
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global L2 norm of the gradients
    grad_accum: int = 1  # micro-batches per optimiser step; losses normalised by the step's target count


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LossConfig:
    flow_weight: float = 1.0
    aux_weight: float = 0.01  # load-balancing loss (Switch Transformer form), mean over layers
    z_weight: float = 1e-3  # router z-loss (ST-MoE), mean over layers
    flow_scale: float = 2.5  # log-mel targets are normalised as (x - flow_center) / flow_scale
    flow_center: float = -3.0
    # The speak head (trainer/heads.py SpeakHead): BCE per micro-turn on "the model speaks in this micro-turn (or in
    # the next speak_horizon ones)", read at the SPEAK slot; generation keeps the model silent where it says no. With
    # speak_weight 0 there is no head: parameters and loss of a checkpoint without it are as before it existed.
    # speak_focus weighs the micro-turns where the floor may change (the model silent in k - 1 and the user silent in
    # k, or the model speaking in k - 1 and the user speaking in k) against the rest, where carrying on is right.
    speak_weight: float = 0.0  # weight of the speak head's loss; 0 = no speak head
    speak_horizon: int = 0  # micro-turns the speak target looks ahead (speaks in k .. k + H)
    speak_focus: float = 1.0  # weight of the speak loss where the floor may change, relative to elsewhere


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    name: str = "tiny"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    steps: int = 200  # optimiser steps, the length of the cosine LR schedule
    seed: int = 0  # seed of initialisation, data order and noise
    moe_impl: str = "grouped"  # MoE expert implementation
    log_interval: int = 10  # optimiser steps between metric lines (metrics.jsonl)
    checkpoint_interval: int = 100  # optimiser steps between checkpoints (one is always written at the end)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        optim = dict(d["optim"])
        optim["betas"] = tuple(optim["betas"])
        return TrainConfig(
            **{k: v for k, v in d.items() if k not in ("model", "data", "optim", "loss")},
            model=ModelConfig(**d["model"]),
            data=DataConfig(**d["data"]),
            optim=OptimConfig(**optim),
            loss=LossConfig(**d["loss"]),
        )


PRESETS = {
    "tiny": TrainConfig(name="tiny"),
    "small": TrainConfig(
        name="small",
        model=ModelConfig(dim=512, layers=8, heads=8, experts=8, top_k=2, ffn_dim=1024, stem_dim=256),
        data=DataConfig(context_microturns=32, batch_size=8, num_workers=4, shuffle_buffer=256),
        optim=OptimConfig(lr=1e-3, warmup_steps=200),
        steps=5_000,
        log_interval=20,
        checkpoint_interval=500,
    ),
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
