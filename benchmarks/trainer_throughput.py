"""Trainer throughput per MoE implementation: optimiser steps on real batches, tokens/s and (on GPU) MFU.

    python benchmarks/trainer_throughput.py --data demo-out/dataset                      # tiny, CPU, loop + grouped
    python benchmarks/trainer_throughput.py --data DIR --config small --device cuda      # + triton, MFU

Tokens are layout slots (static shape: B x C x slots per micro-turn); `active` counts the slots that go through
the FFNs (real content or a prediction position). Batches are loaded before timing, so the figures are the model's,
not the loader's. MFU = 6 x active parameters x active tokens / s / peak FLOP/s (attention FLOPs not counted; active
parameters = all parameters minus the (E - K) / E share of the expert weights and minus the embedding tables).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from trainer.config import PRESETS, preset
from trainer.data import Loader
from trainer.model import Model, active_slots, parameter_counts
from trainer.moe import MOE_IMPLS
from trainer.train import make_optimizer, step_losses


def active_parameters(model: Model) -> int:
    return parameter_counts(model)["active_non_embedding"]


def bench(impl: str, args: argparse.Namespace, batches: list[dict], device: torch.device) -> dict:
    cfg = dataclasses.replace(preset(args.config), moe_impl=impl)
    torch.manual_seed(0)
    model = Model(cfg).to(device)
    opt = make_optimizer(model, cfg)
    times = []
    for i in range(args.warmup + args.steps):
        batch = [batches[i % len(batches)]]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step_losses(model, batch, cfg, i, device, backward=True)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    slots = sum(batches[i % len(batches)]["kind"].numel() for i in range(args.warmup, args.warmup + args.steps))
    active = sum(
        int(active_slots(batches[i % len(batches)]).sum()) for i in range(args.warmup, args.warmup + args.steps)
    )
    total = sum(times)
    result = {
        "impl": impl,
        "config": args.config,
        "device": str(device),
        "steps": args.steps,
        "tokens_per_s": slots / total,
        "active_tokens_per_s": active / total,
        "ms_per_step_median": 1000 * sorted(times)[len(times) // 2],
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        flops = 6 * active_parameters(model) * active / total
        result.update(active_params=active_parameters(model), mfu=flops / (args.peak_tflops * 1e12))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset directory (manifest.json + shards)")
    p.add_argument("--config", default="tiny", choices=sorted(PRESETS), help="preset (default: tiny)")
    p.add_argument("--impls", nargs="*", help="MoE implementations (default: all that run on the device)")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps per implementation (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    p.add_argument(
        "--peak-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s for MFU (default: 989, H100 SXM)"
    )
    args = p.parse_args()
    device = torch.device(args.device)
    impls = args.impls or [i for i in MOE_IMPLS if i != "triton" or device.type == "cuda"]
    cfg = preset(args.config)
    loader = Loader(args.data, cfg.data, seed=0)
    batches = [next(loader) for _ in range(min(8, args.steps + args.warmup))]
    for impl in impls:
        print(json.dumps(bench(impl, args, batches, device)))


if __name__ == "__main__":
    main()
