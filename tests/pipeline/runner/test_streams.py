"""Per-stream threads: results in item order, errors as in a loop, and the automatic thread count per runner mode.

python -m pytest -q tests/pipeline/test_streams.py
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decode import resample_to_16k
from pipeline.features import dmel_codes
from pipeline.runner import streams
from pipeline.runner.streams import auto_stream_threads, map_streams


def test_results_keep_item_order_and_equal_the_serial_loop() -> None:
    rng = np.random.default_rng(1)
    pcm = [rng.standard_normal(24_000 * 3).astype(np.float32) * 0.1 for _ in range(3)]
    serial = [dmel_codes(resample_to_16k(x, 24_000)) for x in pcm]
    threaded = map_streams(lambda x: dmel_codes(resample_to_16k(x, 24_000)), pcm, threads=3)
    assert len(threaded) == 3 and all(np.array_equal(a, b) for a, b in zip(serial, threaded, strict=True))


def test_the_first_error_in_item_order_propagates() -> None:
    def fn(i: int) -> int:
        if i >= 2:
            raise ValueError(f"bad {i}")
        return i

    with pytest.raises(ValueError, match="bad 2"):
        map_streams(fn, range(5), threads=2)
    assert map_streams(fn, [0, 1], threads=1) == [0, 1]


def test_automatic_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "cores", lambda: 4)
    assert auto_stream_threads(runner=None, num_workers=1, running_mode="in_memory") == 4
    assert auto_stream_threads(runner="DirectRunner", num_workers=2, running_mode="in_memory") == 4  # one worker
    assert auto_stream_threads(runner=None, num_workers=2, running_mode="multi_processing") == 2
    assert auto_stream_threads(runner=None, num_workers=0, running_mode="multi_processing") == 1  # 0 = every core
    assert auto_stream_threads(runner=None, num_workers=8, running_mode="multi_threading") == 1
    assert auto_stream_threads(runner="PortableRunner", num_workers=1, running_mode="in_memory") == 1
    monkeypatch.setattr(streams, "cores", lambda: 64)
    assert auto_stream_threads(runner=None, num_workers=1, running_mode="in_memory") == streams.MAX_STREAM_THREADS
