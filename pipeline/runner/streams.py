"""Per-stream work of one conversation (resampling, dMel) on a few threads, so that a single in-process worker uses
more than one core without torch's intra-op threads (which busy-wait and slow down badly on a busy machine).

    python -c "from pipeline.runner.streams import map_streams; print(map_streams(abs, [-1, -2, 3], threads=2))"  # [1, 2, 3]

Each item is computed by exactly the code a serial loop runs (torch and numpy release the GIL inside their
kernels), one item per thread with torch's single intra-op thread, so results are bit-identical to the serial loop,
in the order of the items.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_STREAM_THREADS = 8
_pools: dict[int, ThreadPoolExecutor] = {}


def map_streams(fn: Callable[[T], R], items: Iterable[T], *, threads: int) -> list[R]:
    """[fn(item) for item in items], with up to `threads` items at a time (threads <= 1: a plain loop).

    The first exception raised by `fn` (in item order) propagates, as in the loop."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    pool = _pools.get(threads)
    if pool is None:
        pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="microturn-stream")
    return list(pool.map(fn, items))


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_stream_threads(*, runner: str | None, num_workers: int, running_mode: str) -> int:
    """Threads per worker for per-stream work when the user gives none (``--stream_threads 0``).

    Beam's local runner with its one in-process worker (``in_memory``): every core (up to MAX_STREAM_THREADS). With
    N workers (``multi_processing`` or ``multi_threading``): the cores divided among them. Any other runner
    (portable, a cluster, whose workers already fill their machines): 1.
    """
    if runner not in (None, "DirectRunner", "FnApiRunner"):
        return 1
    n = cores()
    if running_mode == "in_memory":  # Beam runs one worker in this process, whatever direct_num_workers says
        return min(n, MAX_STREAM_THREADS)
    workers = n if num_workers == 0 else max(1, num_workers)
    return max(1, min(n // workers, MAX_STREAM_THREADS))
