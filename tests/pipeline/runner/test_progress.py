"""Issue 23.9: `microturn run` shows a progress bar on a terminal, one line per conversation only with -v, and no
command prints Beam's optional-dependency notices ("apitools not found, ...").

.venv/bin/python -m pytest -q tests/pipeline/test_progress.py
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from pipeline.runner.progress import DECODED, DONE, ProgressBar, ProgressFn, wanted

from ...factories import make_bundle

REPO = Path(__file__).resolve().parents[3]
RUN = [sys.executable, "-m", "microturn_cli", "run"]
PER_CONVERSATION = ("wrote 2 samples of", "rejected ")
BEAM_NOISE = (
    "apitools",
    "bigquery client libraries",
    "Logging handler created",
    "sdk harness",
    "Discarding unparseable",
)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "in"
    for name in ("c0", "c1", "c2"):
        make_bundle(root / name, conv_id=name, seconds=2.0)
    make_bundle(root / "broken", conv_id="broken")
    (root / "broken" / "B.wav").write_bytes(b"not audio")  # rejected at decode: a per-conversation line under -v
    return root


def _run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal of 120 columns; (exit status, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, cwd=REPO, env=_env())
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=300), shown.decode("utf-8", "replace")


def test_without_a_terminal_no_line_per_conversation_and_no_beam_notices(inputs: Path, tmp_path: Path) -> None:
    """Two worker processes: neither the launcher nor Beam's workers print a line per conversation or Beam's
    start-up and optional-dependency lines; `validate` prints no notice either."""
    out = tmp_path / "out"
    argv = [*RUN, "--input", str(inputs), "--output", str(out)]
    proc = subprocess.run(
        [*argv, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 written, 1 rejected, 4 inputs" in proc.stdout
    for text in (*PER_CONVERSATION, *BEAM_NOISE, "conv/s"):
        assert text not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) <= 3, proc.stderr  # "4 inputs under ...", "wrote shard-00000.tar ..."
    check = subprocess.run(
        [sys.executable, "-m", "microturn_cli", "validate", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=300,
    )
    assert check.returncode == 0 and "apitools" not in check.stderr, check.stdout + check.stderr


def test_verbose_brings_the_lines_per_conversation_back(inputs: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [*RUN, "-v", "--input", str(inputs), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("c0", "c1", "c2"):
        assert f"INFO pipeline.conversations: wrote 2 samples of {name}" in proc.stderr, proc.stderr[-3000:]
    assert "pipeline.conversations: rejected " in proc.stderr and "broken" in proc.stderr
    assert "apitools" not in proc.stderr


def test_a_terminal_shows_the_bar_and_no_progress_hides_it(inputs: Path, tmp_path: Path) -> None:
    status, shown = _run_on_a_terminal([*RUN, "--input", str(inputs), "--output", str(tmp_path / "a")])
    assert status == 0, shown[-3000:]
    final = [line for line in shown.replace("\r", "\n").splitlines() if "4/4" in line]
    assert final, shown[-3000:]  # done/total, with tqdm's elapsed<ETA and rate
    assert "100%" in final[-1] and "min, " in final[-1] and "x real time" in final[-1], final[-1]
    assert "apitools" not in shown and "wrote 2 samples of" not in shown
    status, shown = _run_on_a_terminal([*RUN, "--input", str(inputs), "--output", str(tmp_path / "b"), "--no-progress"])
    assert status == 0, shown[-3000:]
    assert "4/4" not in shown and "conv/s" not in shown and "x real time" not in shown, shown[-3000:]


def test_progress_lines_are_counted_and_capped_at_the_total(tmp_path: Path) -> None:
    class Decoded:
        num_samples = 16_000 * 90  # 1.5 min

    stream = io.StringIO()
    with ProgressBar(2, stream=stream) as bar:
        done, decoded = ProgressFn(bar.path, DONE), ProgressFn(bar.path, DECODED)
        done.setup(), decoded.setup()
        for _ in range(3):  # a retried bundle records a conversation twice
            assert list(done.process(object())) == []
        list(decoded.process(Decoded()))
        done.teardown(), decoded.teardown()
        bar.update()
        assert (bar.done, bar.seconds) == (3, 90.0)
        assert bar._bar.n == 2
    assert not os.path.exists(bar.path)
    assert "2/2" in stream.getvalue() and "1.5 min" in stream.getvalue()
    lost = ProgressFn(str(tmp_path / "elsewhere" / "progress.txt"), DONE)  # a worker on another machine
    lost.setup()
    assert list(lost.process(object())) == []
    with pytest.raises(ValueError, match="kind must be"):
        ProgressFn(bar.path, "other")


def test_bar_only_on_a_terminal_and_the_local_runner() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wanted(False, True, Tty())
    assert not wanted(True, True, Tty())  # --no_progress
    assert not wanted(False, False, Tty())  # another runner: its workers are elsewhere
    assert not wanted(False, True, io.StringIO())  # not a terminal
