"""Atomic checkpoints of the whole training state, loaded with `torch.load(weights_only=True)`.

    python -c "import torch; print(torch.load('runs/tiny/checkpoint.pt', weights_only=True)['step'])"

A checkpoint holds only tensors and plain Python values (no pickled classes): model, optimiser and scheduler state
dicts, the step, the config as a dict, the loader state, and the torch (CPU and CUDA) and Python RNG states.
It is written to a temporary file in the same directory, flushed to disk, then renamed over the old one.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
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


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message is one line naming the file and what is wrong with it."""


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects.

    Raises:
        OSError: the file is missing or unreadable.
        CheckpointError: it is not a whole checkpoint (truncated, another format, not a dict).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, or not written by `microturn train`): {_first_line(e)}"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(state).__name__}, not a dict of states)")
    return state


def require(state: dict[str, Any], path: str | Path, *keys: str) -> None:
    """Refuse a checkpoint that lacks one of `keys` (e.g. written by another tool, or an older format)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint has no {', '.join(map(repr, missing))} (not a training checkpoint)")


def config_of(state: dict[str, Any], path: str | Path) -> Any:
    """The checkpoint's `TrainConfig`; a missing, malformed or newer config (a key this code does not know) is a
    `CheckpointError`."""
    from trainer.config import TrainConfig

    require(state, path, "config")
    try:
        return TrainConfig.from_dict(state["config"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"{path}: its config does not fit this version of microturn (a newer or malformed checkpoint): "
            f"{_first_line(e)}"
        ) from e


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load the checkpoint's model weights into `model`; missing, unexpected or mis-shaped tensors (a checkpoint
    of another config) are a `CheckpointError` naming the first few."""
    require(state, path, "model")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        problems = [_short(ln.strip()) for ln in str(e).splitlines()[1:] if ln.strip()]
        detail = "; ".join(problems[:3]) if problems else _first_line(e)
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: weights do not fit its model (another config?): {detail}{more}") from e


def _short(text: str, chars: int = 200) -> str:
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def load_model(checkpoint_path: str, device: str = "cpu") -> Any:
    """A `trainer.model.Model` with the checkpoint's config and weights, in eval mode.

    Raises:
        OSError: the file is missing.
        CheckpointError: the file is truncated, lacks its config or weights, or its weights do not fit its config.
    """
    from trainer.model import Model

    state = load(checkpoint_path, map_location=device)
    model = Model(config_of(state, checkpoint_path)).to(device)
    load_weights(model, state, checkpoint_path)
    return model.eval()
