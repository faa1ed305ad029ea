"""A local run's progress on the terminal: conversations done/total, hours decoded, x real time and ETA (tqdm).

    microturn run --input demo-out/bundles --output /tmp/ds      # a bar on a terminal; --no_progress: none

On the local runner the job's DoFns run in the launching process or in worker processes on the same machine
(`--direct_running_mode multi_processing`), so `ProgressFn` records each decoded conversation's duration and each
finished one (written, resumed or rejected) as one short line appended to a local file, which `ProgressBar` in the
launching process reads twice a second. Other runners' workers run elsewhere: no bar there (the runner's own UI
shows Beam's counters). A retried bundle may record a conversation twice; the bar never passes the total.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TextIO

import apache_beam as beam

from schemas.units import SAMPLE_RATE_HZ

DONE = "done"  # ProgressFn kinds: a conversation finished (any element), or decoded (a DecodedConversation)
DECODED = "decoded"
POLL_S = 0.5


def wanted(no_progress: bool, local_runner: bool, stream: TextIO | None = None) -> bool:
    """Whether to show a bar: on the local runner, with a terminal on stderr, unless --no_progress."""
    stream = sys.stderr if stream is None else stream
    return local_runner and not no_progress and hasattr(stream, "isatty") and stream.isatty()


def audio_text(seconds: float) -> str:
    """Decoded audio so far: hours from 0.1 h on, minutes below."""
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


class ProgressFn(beam.DoFn):
    """Appends one line per element to the progress file `path` (nothing when it is not there: another machine);
    yields nothing."""

    def __init__(self, path: str, kind: str) -> None:
        if kind not in (DONE, DECODED):
            raise ValueError(f"kind must be {DONE!r} or {DECODED!r}, got {kind!r}")
        self.path, self.kind = path, kind
        self._fd: int | None = None

    def setup(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError:
            self._fd = None

    def process(self, element: Any) -> Iterator[Any]:
        if self._fd is not None:
            line = "d\n" if self.kind == DONE else f"s {element.num_samples / SAMPLE_RATE_HZ:.3f}\n"
            os.write(self._fd, line.encode("ascii"))  # one short O_APPEND write: lines of two processes never mix
        return iter(())

    def teardown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ProgressBar:
    """A tqdm bar over `total` conversations, fed by the lines ProgressFn appends to `path` (a temporary file made
    here, removed on exit). Log lines are printed above the bar while it is shown."""

    def __init__(self, total: int, *, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        fd, self.path = tempfile.mkstemp(prefix="microturn-progress-", suffix=".txt")
        os.close(fd)
        self.done, self.seconds = 0, 0.0
        self._offset, self._start = 0, time.monotonic()
        self._stop = threading.Event()

    def __enter__(self) -> ProgressBar:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bar = tqdm(total=self.total, unit="conv", file=self.stream, dynamic_ncols=True, smoothing=0.05)
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="microturn-progress", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.update()

    def update(self) -> None:
        """Read the lines appended since the last call and redraw the bar."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self._offset += len(complete)
        for line in complete.decode("ascii").splitlines():
            if line == "d":
                self.done += 1
            elif line.startswith("s "):
                self.seconds += float(line[2:])
        elapsed = max(time.monotonic() - self._start, 1e-9)
        self._bar.n = min(self.done, self.total)
        self._bar.set_postfix_str(f"{audio_text(self.seconds)}, {self.seconds / elapsed:.0f}x real time", refresh=False)
        self._bar.refresh()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.update()
        finally:
            self._bar.close()
            self._redirect.__exit__(kind, value, tb)
            os.unlink(self.path)
