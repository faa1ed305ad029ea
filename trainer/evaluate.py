"""Evaluate a checkpoint on (held-out) shards: per-head losses over every example, one pass, file order.

    python -c "from cli.train import cmd_eval; cmd_eval(['--checkpoint', 'runs/tiny/checkpoint.pt', \
'--data', 'demo-out/dataset'])"

Losses are averaged over targets: text in nats per byte (and END), dMel in nats per channel of a frame, flow
matching as mean squared velocity error per channel (noise drawn from a fixed seed, so reruns agree).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from tqdm import tqdm

from trainer.data import Loader
from trainer.model import Model, active_slots
from trainer.train import to_device

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    model: Model, loader: Loader, device: torch.device, *, max_batches: int = 0, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Target-weighted mean losses over the loader's batches (all of them when max_batches is 0)."""
    model.eval()
    sums = {"text": 0.0, "dmel": 0.0, "flow": 0.0, "aux": 0.0, "z": 0.0}
    n_text = n_dmel = n_active = batches = 0
    generator = torch.Generator().manual_seed(seed)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for batch in tqdm(loader, disable=not progress, unit="batch"):
        with autocast:
            out = model(to_device(batch, device), generator)
        active = int(active_slots(batch).sum())
        for key in ("text", "dmel", "flow"):
            sums[key] += float(out[key])
        for key in ("aux", "z"):
            sums[key] += float(out[key]) * active
        n_text, n_dmel, n_active = n_text + out["n_text"], n_dmel + out["n_dmel"], n_active + active
        batches += 1
        if max_batches and batches >= max_batches:
            break
    return {
        "text": sums["text"] / max(n_text, 1),
        "dmel": sums["dmel"] / max(n_dmel, 1),
        "flow": sums["flow"] / max(n_dmel, 1),
        "aux": sums["aux"] / max(n_active, 1),
        "z": sums["z"] / max(n_active, 1),
        "targets_text": n_text,
        "targets_dmel": n_dmel,
        "batches": batches,
    }
