"""Issue 23.5: launches that work as written. Relative paths reach a job service's workers as absolute ones; a dead
--job_endpoint, or Flink/Spark without a job server, fail at once with one line and leave no output behind. (A
Gander file is read by the job itself now, pipeline/inputs/gander.py: no local import step to refuse an s3:// output.)

.venv/bin/python -m pytest -q tests/pipeline/test_launch.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.job import run
from pipeline.options import MicroturnOptions
from pipeline.runner.runners import absolute_local_paths

from ...factories import make_bundle
from ...s3_server import free_ports
from ..test_job_portable import _stop, _wait_for_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def local_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, int]]:
    """(job endpoint, worker pool endpoint, pool port): Beam's Python job service and cli.worker_pool (bound
    to 127.0.0.1), both running in a directory of their own."""
    logs = tmp_path_factory.mktemp("pool")
    job_port, pool_port = free_ports(2)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "HF_HUB_OFFLINE": "1",
    }
    started = []
    try:
        for module, port in (
            ("apache_beam.runners.portability.local_job_service_main", job_port),
            ("cli.worker_pool", pool_port),
        ):
            log = logs / f"{module.rsplit('.', 1)[-1]}.log"
            flag = "--port" if module.startswith("apache_beam") else "--service_port"
            with open(log, "wb") as f:
                process = subprocess.Popen(
                    [sys.executable, "-m", module, flag, str(port)],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=logs,
                    start_new_session=True,
                )
            started.append(process)
            _wait_for_port(port, process, log)
        yield f"localhost:{job_port}", f"localhost:{pool_port}", pool_port
    finally:
        for process in started:
            _stop(process)


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) of the sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.append(local.rsplit(":", 1)[0])
    return found


def _cli(argv: list[str], cwd: Path, timeout_s: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "microturn_cli", "run", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout_s,
    )
    return done, time.monotonic() - start


def test_a_dead_job_endpoint_fails_at_once_with_one_line_and_touches_no_output(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "c", conv_id="c")
    (port,) = free_ports(1)  # nothing listens there
    done, seconds = _cli(
        ["--input", "in", "--output", "out", "--runner", "PortableRunner", "--job_endpoint", f"localhost:{port}"],
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"microturn run: error: --job_endpoint localhost:{port}: cannot connect")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert seconds < 60, seconds  # before: 200 s of silence, then killed
    assert not (tmp_path / "out").exists()  # neither the directory nor its lock


def test_an_endpoint_that_accepts_but_never_answers_fails_within_the_timeout(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "c", conv_id="c")
    with socket.socket() as silent:  # accepts TCP connections (backlog) and never speaks gRPC
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        done, seconds = _cli(
            [
                "--input",
                "in",
                "--output",
                "out",
                "--runner",
                "PortableRunner",
                "--job_endpoint",
                f"127.0.0.1:{port}",
                "--job_server_timeout",
                "3",
            ],
            cwd=tmp_path,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no gRPC job service answered within 3 s" in done.stderr and "Traceback" not in done.stderr
    assert seconds < 60, seconds
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("runner", "flag"), [("FlinkRunner", "--flink_job_server_jar"), ("SparkRunner", None)])
def test_flink_or_spark_without_a_job_server_is_one_line_and_leaves_nothing(
    tmp_path: Path, runner: str, flag: str | None
) -> None:
    make_bundle(tmp_path / "in" / "c", conv_id="c")
    extra = [flag, str(tmp_path / "missing.jar")] if flag else []
    done, _ = _cli(["--input", "in", "--output", "out", "--runner", runner, *extra], cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"microturn run: error: --runner {runner} without --job_endpoint")
    assert "downloads at run time" in done.stderr and "--job_endpoint HOST:8099" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_portable_runner_without_an_endpoint_is_one_line(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "c", conv_id="c")
    done, _ = _cli(["--input", "in", "--output", "out", "--runner", "PortableRunner"], cwd=tmp_path)
    assert done.returncode == 2 and "--runner PortableRunner needs --job_endpoint HOST:PORT" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_relative_paths_become_absolute_only_for_a_job_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x")
    argv = ["--input", "in", "--output", "out/ds", "--whisper_model", "model.bin", "--align_model", "some-hub-name"]
    portable = PipelineOptions([*argv, "--runner", "PortableRunner", "--job_endpoint", "localhost:1"])
    changed = absolute_local_paths(portable)
    assert changed == {
        "input": str(tmp_path / "in"),
        "output": str(tmp_path / "out" / "ds"),
        "whisper_model": str(tmp_path / "model.bin"),
    }
    opts = portable.view_as(MicroturnOptions)
    assert (opts.input, opts.align_model) == (str(tmp_path / "in"), "some-hub-name")
    assert portable.get_all_options()["output"] == str(tmp_path / "out" / "ds")  # what the workers are sent
    local = PipelineOptions(argv)
    assert absolute_local_paths(local) == {} and local.view_as(MicroturnOptions).input == "in"
    s3 = PipelineOptions(["--input", "s3://b/in", "--output", "s3://b/out", "--runner", "FlinkRunner"])
    assert absolute_local_paths(s3) == {}


def test_relative_paths_through_a_worker_pool_in_another_directory(
    local_endpoints: tuple[str, str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker pool runs in its own directory; before, every input was rejected and the output landed there."""
    job, pool, pool_port = local_endpoints
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, also as IPv4-mapped IPv6 (gRPC)
    listening = _listening(pool_port)
    assert listening and set(listening) <= loopback, listening  # cli.worker_pool: not every interface
    for i in range(2):
        make_bundle(tmp_path / "in" / f"c{i}", conv_id=f"c{i}", seconds=2.0)
    monkeypatch.chdir(tmp_path)
    manifest = run(
        [
            "--input",
            "in",
            "--output",
            "out",
            "--window_microturns",
            "8",
            "--runner",
            "PortableRunner",
            "--job_endpoint",
            job,
            "--environment_type",
            "EXTERNAL",
            "--environment_config",
            pool,
        ]
    )
    assert manifest["counts"]["conversations_written"] == 2 and manifest["counts"]["rejected"] == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["samples"] > 0
