"""Evaluate a checkpoint on (held-out) shards: per-head losses over every example, one pass, file order.

    python -c "from trainer.evaluate import eval_main; eval_main(['--checkpoint', 'runs/tiny/checkpoint.pt', \
'--data', 'demo-out/dataset'])"

Losses are averaged over targets: text in nats per byte (and END), dMel in nats per channel of a frame, flow
matching as mean squared velocity error per channel (noise drawn from a fixed seed, so reruns agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

import torch
from tqdm import tqdm

from trainer import checkpoint
from trainer.data import Loader
from trainer.model import Model, active_slots
from trainer.moe import MOE_IMPLS
from trainer.train import pick_device, to_device

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microturn eval", description="Per-head losses of a checkpoint on shards.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `microturn train`")
    p.add_argument("--data", required=True, help="dataset directory (manifest.json + shard-*.tar), ideally held out")
    p.add_argument("--max_batches", type=int, default=0, help="stop after this many batches (default: 0 = all)")
    p.add_argument("--batch_size", type=int, help="examples per batch (default: the checkpoint's)")
    p.add_argument("--moe_impl", choices=sorted(MOE_IMPLS), help="MoE implementation (default: the checkpoint's)")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    old = {"help": argparse.SUPPRESS, "default": argparse.SUPPRESS}  # the hyphen spellings before: accepted, unlisted
    for flag in ("--max-batches", "--batch-size", "--num-workers"):
        p.add_argument(flag, dest=flag[2:].replace("-", "_"), type=int, **old)
    p.add_argument("--moe-impl", dest="moe_impl", choices=sorted(MOE_IMPLS), **old)
    return p


def eval_main(argv: list[str]) -> int:
    """`microturn eval`: print per-head losses of --checkpoint on --data; returns 0."""
    args = build_parser().parse_args(argv)
    dev = pick_device(args.device)
    state = checkpoint.load(args.checkpoint, map_location=dev)
    checkpoint.require(state, args.checkpoint, "step")
    cfg = checkpoint.config_of(state, args.checkpoint)
    data = dataclasses.replace(
        cfg.data, num_workers=args.num_workers, batch_size=args.batch_size or cfg.data.batch_size
    )
    cfg = dataclasses.replace(cfg, data=data, moe_impl=args.moe_impl or cfg.moe_impl)
    model = Model(cfg).to(dev)
    checkpoint.load_weights(model, state, args.checkpoint)
    loader = Loader(args.data, cfg.data, seed=cfg.seed, epochs=1, shuffle=False)
    result = evaluate(model, loader, dev, max_batches=args.max_batches, seed=cfg.seed, progress=True)
    result["step"] = int(state["step"])
    if args.json:
        print(json.dumps(result))
    else:
        print(f"checkpoint step {result['step']}, {result['batches']} batches of {args.data}")
        print(f"  text  cross-entropy  {result['text']:.4f} nats/byte     ({result['targets_text']} targets)")
        print(f"  dmel  cross-entropy  {result['dmel']:.4f} nats/channel  ({result['targets_dmel']} frames)")
        print(f"  flow  matching MSE   {result['flow']:.4f} per channel")
        print(f"  router aux {result['aux']:.4f}, z {result['z']:.4f}")
    return 0
