"""Data parallelism: one process per rank (torchrun), gradients summed with an explicit all-reduce.

    torchrun --standalone --nproc_per_node 2 -m microturn_cli train --data demo-out/dataset --out runs/tiny-dp

`init_from_env` starts the process group when torchrun's RANK / WORLD_SIZE / LOCAL_RANK are set (gloo on CPU, nccl
on CUDA) and is a no-op otherwise, so a single process needs no launcher. Every loss of a step is divided by the
target counts of the whole step over *all* ranks (`all_reduce_ints`), so summing the ranks' gradients
(`all_reduce_grads`) gives exactly the gradient of one process over the same global batch; only the order of the
floating-point additions differs. Ranks never hold a DDP wrapper: the model may leave parameters unused in a
batch (the patch stem without video, the others' dMel table without an `others` stream), which DDP's reducer
rejects; here a parameter unused on some ranks contributes zeros from them, and one unused everywhere keeps no
gradient, as in one process.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

BUCKET_ELEMENTS = 1 << 24
"""Gradients are flattened into buckets of at most this many elements (64 MiB in fp32) per all-reduce."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> World:
    """This process's place among the ranks of the initialised process group (rank 0 of 1 without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )


def init_from_env(device: str = "auto") -> bool:
    """Start the process group from torchrun's environment; returns True when this call started it.

    Args:
        device: the --device flag; the backend is nccl when the ranks run on CUDA, else gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or dist.is_initialized():
        return False
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(
                f"WORLD_SIZE={world_size} but {key} is not set: launch with torchrun "
                "(torchrun --standalone --nproc_per_node N -m microturn_cli train ...)"
            )
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    logger.info("rank %d of %d (%s)", dist.get_rank(), world_size, dist.get_backend())
    return True


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def device_of(world: World, name: str) -> torch.device:
    """--device for this rank: `auto` and `cuda` mean cuda:LOCAL_RANK under torchrun."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return torch.device(name)


def all_reduce_ints(values: Sequence[int], device: torch.device) -> list[int]:
    """Sum integers over the ranks (exact: int64)."""
    if not current().distributed:
        return [int(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


def all_reduce_floats(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum float metrics over the ranks (fp64)."""
    if not current().distributed:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in place. As in one process, a parameter that no rank used
    keeps no gradient (so AdamW skips it: no weight decay, no state); one that only some ranks used counts as zeros
    on the others."""
    if not current().distributed:
        return
    params = [p for p in params if p.requires_grad]
    device = params[0].device
    used = all_reduce_ints([p.grad is not None for p in params], device)
    bucket: list[torch.Tensor] = []
    size = 0
    for p, n in zip(params, used, strict=True):
        if n == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel()
        if size >= BUCKET_ELEMENTS:
            _reduce_bucket(bucket)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket)


def _reduce_bucket(grads: list[torch.Tensor]) -> None:
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters (they are already equal when seeded alike; this makes sure)."""
    if not current().distributed:
        return
    for t in module.state_dict().values():
        dist.broadcast(t, src=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable plain data), in rank order; [obj] without a process group."""
    if not current().distributed:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of the parameters' bytes in state-dict order: equal digests = bit-identical replicas."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def barrier() -> None:
    if current().distributed:
        dist.barrier()
