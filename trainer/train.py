"""Train the interaction model on micro-turn shards.

    microturn train --data demo-out/dataset --out runs/tiny
    torchrun --standalone --nproc_per_node 2 -m microturn_cli train --data demo-out/dataset --out runs/tiny-dp \
        --device cpu

One optimiser step = `grad_accum` micro-batches. Every loss head is a sum over its targets divided by the number of
targets of the *whole step*, so accumulation gives the same gradient as one big batch; the router losses are
weighted by each micro-batch's share of routed tokens. Randomness after initialisation (flow-matching noise and
times) comes from generators seeded by (seed, step, micro-batch), so a resumed run repeats it exactly; the global
RNG states are checkpointed too, and so is the CPU thread count (sums split by thread round differently: a resume on
CPU takes the interrupted run's count). Re-running with the same --out resumes from its checkpoint.

Data parallel (under torchrun, trainer/parallel.py): each rank reads its own share of the shards and runs
`grad_accum` micro-batches per step; the target counts that normalise the losses are summed over all ranks and the
gradients are summed with an all-reduce, so a step of R ranks x A micro-batches is the step of one process with
R x A micro-batches (micro-batch i of rank r draws its flow noise as micro-batch i * R + r). Epochs advance on all
ranks together: a rank whose share of the epoch is used up contributes fully masked batches until every rank's is.
Rank 0 writes metrics and checkpoints; a checkpoint holds every rank's loader state and is refused on resume by a
different number of ranks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from trainer import checkpoint, parallel
from trainer.augment import augment_heard
from trainer.config import TrainConfig
from trainer.data import Loader
from trainer.model import Model, active_slots, speak_slots

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over warmup_steps, then cosine from 1 to min_lr_ratio at cfg.steps."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps))
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    o = cfg.optim
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _micro_batch_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step) * 1_009 + micro


def flow_generator(seed: int, step: int, micro: int) -> torch.Generator:
    return torch.Generator().manual_seed(_micro_batch_seed(seed, step, micro) % (2**63))


def augment_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The draws of trainer/augment.py for one micro-batch: a stream apart from the flow noise's."""
    return torch.Generator().manual_seed((_micro_batch_seed(seed, step, micro) * 7 + 3) % (2**63))


def step_losses(
    model: Model,
    batches: list[dict[str, torch.Tensor]],
    cfg: TrainConfig,
    step: int,
    device: torch.device,
    *,
    backward: bool,
) -> dict[str, Any]:
    """Forward (and backward) over this rank's micro-batches of one step; losses normalised by the target counts of
    the step over all ranks. The returned losses and router statistics are those of the whole step (all ranks)."""
    world = parallel.current()
    n_text, n_dmel, n_active_total = parallel.all_reduce_ints(
        [
            sum(int(b["target_text"][:, 1:].sum()) for b in batches),
            sum(int(b["target_dmel"][:, 1:].sum()) for b in batches),
            sum(int(active_slots(b).sum()) for b in batches),
        ],
        device,
    )
    n_speak = 0
    if model.speak_head is not None:  # one decision per real micro-turn
        (n_speak,) = parallel.all_reduce_ints([sum(int(speak_slots(b).sum()) for b in batches)], device)
    sums = {"text": 0.0, "dmel": 0.0, "flow": 0.0, "speak": 0.0, "aux": 0.0, "z": 0.0, "entropy": 0.0}
    load = None
    lc = cfg.loss
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for i, cpu_batch in enumerate(batches):
        micro = i * world.world_size + world.rank
        if backward:
            cpu_batch = augment_heard(cpu_batch, cfg.data, augment_generator(cfg.seed, step, micro))
        with autocast:
            out = model(to_device(cpu_batch, device), flow_generator(cfg.seed, step, micro))
        share = out["n_active"] / max(n_active_total, 1)
        text, dmel, flow = out["text"] / max(n_text, 1), out["dmel"] / max(n_dmel, 1), out["flow"] / max(n_dmel, 1)
        speak = out["speak"] / max(n_speak, 1)
        loss = text + dmel + lc.flow_weight * flow + lc.speak_weight * speak
        loss = loss + share * (lc.aux_weight * out["aux"] + lc.z_weight * out["z"])
        if backward:
            loss.backward()
        for key, value in (("text", text), ("dmel", dmel), ("flow", flow), ("speak", speak)):
            sums[key] += float(value.detach())
        for key in ("aux", "z", "entropy"):
            sums[key] += share * float(out[key].detach())
        load = out["load"] * share if load is None else load + out["load"] * share
    if world.distributed:
        keys = ("text", "dmel", "flow", "speak", "aux", "z", "entropy")
        flat = parallel.all_reduce_floats([sums[k] for k in keys] + load.flatten().tolist(), device)
        sums.update(zip(keys, flat[: len(keys)], strict=True))
        load = torch.tensor(flat[len(keys) :], dtype=load.dtype).view(load.shape)
    sums["loss"] = (
        sums["text"]
        + sums["dmel"]
        + lc.flow_weight * sums["flow"]
        + lc.speak_weight * sums["speak"]
        + lc.aux_weight * sums["aux"]
        + lc.z_weight * sums["z"]
    )
    sums.update(n_text=n_text, n_dmel=n_dmel, n_speak=n_speak, n_active=n_active_total, load=load)
    return sums


def draw_batches(loader: Loader, count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """This rank's `count` micro-batches of a step. A rank whose share of the epoch is used up gets fully masked
    batches (no targets, no loss) until every rank's is; then all ranks start the next epoch together."""
    batches: list[dict[str, torch.Tensor]] = []
    fresh_epoch = False
    while len(batches) < count:
        batch = loader.next_in_epoch()
        (ranks_with_data,) = parallel.all_reduce_ints([batch is not None], device)
        if ranks_with_data == 0:
            if fresh_epoch:
                raise ValueError(f"an epoch of {loader.urls[0]}... gave no batch: the shards hold no real micro-turns")
            loader.next_epoch()
            fresh_epoch = True
            continue
        fresh_epoch = False
        batches.append(batch if batch is not None else loader.empty_batch())
    return batches


def train(
    cfg: TrainConfig,
    data_dir: str,
    out_dir: str,
    *,
    device: str = "auto",
    stop_at: int | None = None,
    progress: bool = True,
    bad_shards: str = "stop",
    max_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Train (or resume from out_dir/checkpoint.pt) until step cfg.steps or `stop_at`; returns the metric records
    written by this call (on rank 0; other ranks return an empty list). Runs data-parallel when a process group is
    initialised (see trainer/parallel.py). `max_seconds` (one process only): the step that ends past this many
    seconds of this call is the last (metrics and checkpoint written; the schedule keeps its length)."""
    world = parallel.current()
    if max_seconds is not None and world.distributed:
        raise ValueError("max_seconds stops one process by its own clock; with several ranks use stop_at instead")
    t_begin = time.monotonic()
    dev = parallel.device_of(world, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / checkpoint.CHECKPOINT_FILE
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = Model(cfg).to(dev)
    parallel.broadcast_parameters(model)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    loader = Loader(
        data_dir, cfg.data, seed=cfg.seed, rank=world.rank, world_size=world.world_size, bad_shards=bad_shards
    )
    step = 0
    if ckpt_path.exists():
        step = _resume(ckpt_path, cfg, world, dev, model=model, opt=opt, sched=sched, loader=loader)
    if world.is_main:
        _truncate_metrics(out / METRICS_FILE, step)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    records: list[dict[str, Any]] = []
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "model: %.2fM parameters, device %s, moe_impl %s, %d rank(s)",
        n_params / 1e6,
        dev,
        cfg.moe_impl,
        world.world_size,
    )
    bar = tqdm(total=end, initial=step, disable=not (progress and world.is_main), unit="step", dynamic_ncols=True)
    t_last, slots_since = time.perf_counter(), 0
    while step < end:
        batches = draw_batches(loader, cfg.optim.grad_accum, dev)
        model.train()
        s = step_losses(model, batches, cfg, step, dev, backward=True)
        parallel.all_reduce_grads(model.parameters())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip))
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        slots_since += sum(b["kind"].numel() for b in batches) * world.world_size
        bar.update(1)
        bar.set_postfix(loss=f"{s['loss']:.3f}")
        if max_seconds is not None and step < end and time.monotonic() - t_begin > max_seconds:
            end = step  # out of time: this step is the last, logged and checkpointed below
        if step % cfg.log_interval == 0 or step == end:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            record = _metrics_record(step, loader.epoch, lr, s, grad_norm, tokens_per_s=slots_since / (now - t_last))
            if world.is_main:
                records.append(record)
                with open(out / METRICS_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            t_last, slots_since = now, 0
        if step % cfg.checkpoint_interval == 0 or step == end:
            _save(ckpt_path, cfg, world, step, model=model, opt=opt, sched=sched, loader=loader)
    bar.close()
    return records


def _resume(
    ckpt_path: Path,
    cfg: TrainConfig,
    world: parallel.World,
    dev: torch.device,
    *,
    model: Model,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loader: Loader,
) -> int:
    """Load model, optimiser, scheduler, this rank's loader position and the RNGs from `ckpt_path`; the step it was
    written at. The checkpoint must come from the same config (up to moe_impl and the intervals) and rank count."""
    state = checkpoint.load(ckpt_path, map_location=dev)
    checkpoint.require(state, ckpt_path, "model", "optimizer", "scheduler", "step", "loaders", "rng")
    saved = checkpoint.config_of(state, ckpt_path)
    free = {k: getattr(cfg, k) for k in ("moe_impl", "log_interval", "checkpoint_interval")}
    if dataclasses.replace(saved, **free) != cfg:
        raise ValueError(
            f"{ckpt_path} was written with another config ({saved}); resume with the same flags or use a new --out"
        )
    loaders = state["loaders"]
    if len(loaders) != world.world_size:
        raise ValueError(
            f"{ckpt_path} was written by {len(loaders)} rank(s), this run has {world.world_size}: "
            f"resume with --nproc_per_node {len(loaders)} (the data split depends on it)"
        )
    checkpoint.load_weights(model, state, ckpt_path)
    try:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        loader.load_state_dict(loaders[world.rank])
        checkpoint.set_rng_state(state["rng"])
        step = int(state["step"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise checkpoint.CheckpointError(
            f"{ckpt_path}: its optimiser, scheduler, loader or RNG state does not fit this run: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    threads = state.get("cpu_threads")
    if dev.type == "cpu" and isinstance(threads, int) and threads != torch.get_num_threads():
        # CPU sums (matmuls, reductions) split by thread: another count gives other low bits, which grow
        logger.warning(
            "%s was written with %d CPU threads, this process has %d: using %d, so that the resumed run "
            "repeats the uninterrupted one exactly",
            ckpt_path,
            threads,
            torch.get_num_threads(),
            threads,
        )
        torch.set_num_threads(threads)
    logger.info("resumed from %s at step %d", ckpt_path, step)
    return step


def _metrics_record(
    step: int, epoch: int, lr: float, s: Mapping[str, Any], grad_norm: float, *, tokens_per_s: float
) -> dict[str, Any]:
    """One line of metrics.jsonl from a step's losses and counts `s` (see `step_losses`)."""
    return {
        "step": step,
        "epoch": epoch,
        "lr": lr,
        "loss": s["loss"],
        "text": s["text"],
        "dmel": s["dmel"],
        "flow": s["flow"],
        **({"speak": s["speak"]} if s["n_speak"] else {}),  # only with the speak head: old curves stay as they were
        "aux": s["aux"],
        "z": s["z"],
        "grad_norm": grad_norm,
        "router_entropy": s["entropy"],
        "expert_load": [[round(float(v), 5) for v in row] for row in s["load"]],
        "targets_text": s["n_text"],
        "targets_dmel": s["n_dmel"],
        "active_tokens": s["n_active"],
        "tokens_per_s": tokens_per_s,
    }


def _save(
    ckpt_path: Path,
    cfg: TrainConfig,
    world: parallel.World,
    step: int,
    *,
    model: Model,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loader: Loader,
) -> None:
    """Write the checkpoint at `step` (rank 0) with every rank's loader position, after checking that the ranks'
    parameters are identical; all ranks wait for it."""
    loaders = parallel.all_gather_objects(loader.state_dict())
    digests = parallel.all_gather_objects(parallel.parameter_digest(model)) if world.distributed else []
    if len(set(digests)) > 1:
        raise RuntimeError(
            f"step {step}: the ranks' parameters differ (digests {digests}); data-parallel replicas must stay identical"
        )
    if world.is_main:
        checkpoint.save(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "config": cfg.to_dict(),
                "loaders": loaders,
                "rng": checkpoint.rng_state(),
                "rank_digests": digests,
                "cpu_threads": torch.get_num_threads(),  # a resume on CPU uses the same count
            },
        )
    parallel.barrier()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines after `step` (written by a run that died before its next checkpoint)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
