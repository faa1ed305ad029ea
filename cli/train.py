"""`microturn train` and `microturn eval` (per-head losses): the trainer's commands; the flags of settings that live in
`trainer.config` are derived from its dataclasses (`cli.flags`).

    microturn train --data demo-out/dataset --out runs/tiny --steps 20
    microturn eval --checkpoint runs/tiny/checkpoint.pt --data demo-out/dataset
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cli.flags import add_flags, flag_values

if TYPE_CHECKING:
    from trainer.config import TrainConfig

OLD = {"help": argparse.SUPPRESS, "default": argparse.SUPPRESS}  # the hyphen spellings before: accepted, unlisted
TRAIN_FIELDS = ("steps", "moe_impl", "seed", "log_interval", "checkpoint_interval")
DATA_FIELDS = ("batch_size", "num_workers", "user_text", "augment_channels", "augment_levels", "augment_tilt")
OPTIM_FIELDS = ("grad_accum", "lr")
LOSS_FIELDS = ("speak_weight", "speak_horizon", "speak_focus")


def train_parser() -> argparse.ArgumentParser:
    from schemas.layout import USER_TEXT_MODES
    from trainer.config import PRESETS, DataConfig, LossConfig, OptimConfig, TrainConfig
    from trainer.data import BAD_SHARD_POLICIES
    from trainer.moe import MOE_IMPLS

    p = argparse.ArgumentParser(prog="microturn train", description="Train the MoE interaction model on shards.")
    p.add_argument(
        "--data",
        required=True,
        help="dataset directory (manifest.json + shard-*.tar), or a shard list file (its shards.txt, or a subset: "
        "one shard a line)",
    )
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt and metrics.jsonl; resumes if present")
    p.add_argument("--config", default="tiny", choices=sorted(PRESETS), help="preset (default: tiny)")
    p.add_argument("--stop_at", type=int, help="stop after this optimiser step (checkpoint kept, schedule unchanged)")
    p.add_argument("--stop-at", dest="stop_at", type=int, **OLD)
    preset_s = {"default_text": "preset's", "hyphen_spellings": True}
    add_flags(p, TrainConfig, names=TRAIN_FIELDS, choices={"moe_impl": sorted(MOE_IMPLS)}, **preset_s)
    add_flags(p, DataConfig, names=DATA_FIELDS, choices={"user_text": USER_TEXT_MODES}, **preset_s)
    add_flags(p, OptimConfig, names=OPTIM_FIELDS, **preset_s)
    add_flags(p, LossConfig, names=LOSS_FIELDS, **preset_s)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", **OLD)
    p.add_argument(
        "--bad_shards",
        choices=BAD_SHARD_POLICIES,
        default="stop",
        help="at a corrupt shard: stop with a message naming it, or skip it (logged and counted) (default: stop)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset of --config with the flags given; ValueError for a count below 1."""
    from trainer.config import DataConfig, LossConfig, OptimConfig, TrainConfig, preset

    cfg = preset(args.config)
    data, optim = flag_values(DataConfig, args, names=DATA_FIELDS), flag_values(OptimConfig, args, names=OPTIM_FIELDS)
    loss = flag_values(LossConfig, args, names=LOSS_FIELDS)
    cfg = dataclasses.replace(cfg, **flag_values(TrainConfig, args, names=TRAIN_FIELDS))
    for name, value in (
        ("steps", cfg.steps),
        ("batch_size", data.get("batch_size", 1)),
        ("grad_accum", optim.get("grad_accum", 1)),
    ):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, **data),
        optim=dataclasses.replace(cfg.optim, **optim),
        loss=dataclasses.replace(cfg.loss, **loss),
    )


def cmd_train(argv: list[str]) -> int:
    """`microturn train`: parse flags, train, return 0."""
    from trainer import checkpoint, parallel
    from trainer.train import train

    args = train_parser().parse_args(argv)
    cfg = config_from_args(args)
    started = parallel.init_from_env(args.device)
    try:
        records = train(
            cfg,
            args.data,
            args.out,
            device=args.device,
            stop_at=args.stop_at,
            progress=not args.no_progress,
            bad_shards=args.bad_shards,
        )
    finally:
        if started:
            parallel.shutdown()
    if records:
        last = records[-1]
        print(
            f"step {last['step']}: loss {last['loss']:.4f} (text {last['text']:.4f}, dmel {last['dmel']:.4f}, "
            f"flow {last['flow']:.4f}); checkpoint {Path(args.out) / checkpoint.CHECKPOINT_FILE}"
        )
    return 0


def eval_parser() -> argparse.ArgumentParser:
    from trainer.config import DataConfig, TrainConfig
    from trainer.moe import MOE_IMPLS

    p = argparse.ArgumentParser(prog="microturn eval", description="Per-head losses of a checkpoint on shards.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `microturn train`")
    p.add_argument("--data", required=True, help="dataset directory (manifest.json + shard-*.tar), ideally held out")
    p.add_argument("--max_batches", type=int, default=0, help="stop after this many batches (default: 0 = all)")
    p.add_argument("--max-batches", dest="max_batches", type=int, **OLD)
    checkpoints = {"default_text": "the checkpoint's", "hyphen_spellings": True}
    add_flags(p, DataConfig, names=("batch_size",), **checkpoints)
    add_flags(p, TrainConfig, names=("moe_impl",), choices={"moe_impl": sorted(MOE_IMPLS)}, **checkpoints)
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    p.add_argument("--num-workers", dest="num_workers", type=int, **OLD)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def cmd_eval(argv: list[str]) -> int:
    """`microturn eval`: print per-head losses of --checkpoint on --data; returns 0."""
    from trainer import checkpoint
    from trainer.data import Loader
    from trainer.evaluate import evaluate
    from trainer.model import Model
    from trainer.train import pick_device

    args = eval_parser().parse_args(argv)
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
