"""Atomic checkpoints of the whole training state, loaded with `torch.load(weights_only=True)`.

    python -c "import torch; print(torch.load('runs/tiny/checkpoint.pt', weights_only=True)['step'])"

A checkpoint holds only tensors and plain Python values (no pickled classes): model, optimiser and scheduler state
dicts, the step, the config as a dict, the loader state, and the torch (CPU and CUDA) and Python RNG states.
It is written to a temporary file in the same directory, flushed to disk, then renamed over the old one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(checkpoint_path: str, device: str = "cpu") -> Any:
    """A `trainer.model.Model` with the checkpoint's config and weights, in eval mode."""
    from trainer.config import TrainConfig
    from trainer.model import Model

    state = load(checkpoint_path, map_location=device)
    model = Model(TrainConfig.from_dict(state["config"])).to(device)
    model.load_state_dict(state["model"])
    return model.eval()
