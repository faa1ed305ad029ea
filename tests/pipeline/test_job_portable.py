"""The job through Beam's portable job API (the API Flink's and Spark's job servers speak): Beam's own Python job
service and an EXTERNAL SDK worker pool in separate processes; output equal to the local runner's byte for byte;
runners that mis-route multi-output ParDos refused before any work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.job import run
from pipeline.runner.runners import check_runner

from ..factories import make_bundle
from ..s3_server import S3Server, free_ports

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--window_microturns", "8", "--num_shards", "2"]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{process.args} did not listen on {port} within {timeout_s:.0f} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGKILL the process group started for `process` (the pool's SDK workers are in it) and reap it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def portable_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(job endpoint, worker pool endpoint): Beam's Python job service and an SDK worker pool whose `python` is this
    interpreter (first on PATH) and which imports this checkout (PYTHONPATH)."""
    yield from _portable_services(tmp_path_factory.mktemp("portable"), {})


@pytest.fixture(scope="module")
def s3_portable_endpoints(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[tuple[str, str]]:
    """The same services, deployed as on a cluster with S3: the workers read their credentials (and the endpoint)
    from their own environment, boto3's standard chain; the job graph never carries them (issue 23.3)."""
    env = {
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    yield from _portable_services(tmp_path_factory.mktemp("portable-s3"), env)


def _portable_services(logs: Path, extra_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    job_port, pool_port = free_ports(2)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "HF_HUB_OFFLINE": "1",
        **extra_env,
    }
    started = []
    try:
        for module, flag, port in (
            ("apache_beam.runners.portability.local_job_service_main", "--port", job_port),
            ("apache_beam.runners.worker.worker_pool_main", "--service_port", pool_port),
        ):
            log = logs / f"{module.rsplit('.', 1)[-1]}.log"
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
        yield f"localhost:{job_port}", f"localhost:{pool_port}"
    finally:
        for process in started:
            _stop(process)


def _files(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (the shards, index/ and the tables) by its relative path."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, bytes]]:
    """Three small conversations and the local runner's output of them: (input dir, manifest, output files)."""
    root = tmp_path_factory.mktemp("reference")
    for i in range(3):
        make_bundle(root / "in" / f"c{i}", conv_id=f"c{i}", seconds=2.0 + 0.3 * i, rate=(16_000, 22_050)[i % 2])
    manifest = run(["--input", str(root / "in"), "--output", str(root / "local"), *OPTIONS])
    assert manifest["counts"]["conversations_written"] == 3
    return root / "in", manifest, _files(root / "local")


def test_portable_runner_with_external_workers_equals_the_local_run(
    tmp_path: Path, portable_endpoints: tuple[str, str], reference: tuple[Path, dict, dict[str, bytes]]
) -> None:
    inputs, manifest, local = reference
    job, pool = portable_endpoints
    portable = run(
        [
            "--input",
            str(inputs),
            "--output",
            str(tmp_path / "portable"),
            *OPTIONS,
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
    assert portable["counts"] == manifest["counts"]
    written = _files(tmp_path / "portable")
    assert sorted(written) == sorted(local) and any(name.startswith("shard-") for name in local)
    assert any(name.startswith("index/shard-") for name in local)
    for name in local:
        assert written[name] == local[name], f"{name} differs between the local and the portable runner"
    assert not (tmp_path / "portable" / "_work").exists()


def test_portable_runner_reads_and_writes_s3(
    s3_portable_endpoints: tuple[str, str], s3_server: S3Server, reference: tuple[Path, dict, dict[str, bytes]]
) -> None:
    """The SDK workers get the S3 endpoint from the DoFns and their credentials from their own environment (not from
    this process's state, nor from the job graph)."""
    inputs, _, local = reference
    job, pool = s3_portable_endpoints
    s3_in = s3_server.upload_tree(inputs, "portable/in")
    run(
        [
            "--input",
            s3_in,
            "--output",
            f"s3://{s3_server.bucket}/portable/out",
            *OPTIONS,
            *s3_server.beam_args(),
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
    assert s3_server.download_tree("portable/out") == local  # _work deleted, every file byte-identical


def test_portable_runner_with_credentials_from_the_environment_only(
    s3_portable_endpoints: tuple[str, str],
    s3_server: S3Server,
    reference: tuple[Path, dict, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No --s3_* flag anywhere (IAM roles, AWS_* variables): the workers used to reject every input with "Must
    provide one of client or options"."""
    inputs, manifest, local = reference
    job, pool = s3_portable_endpoints
    s3_in = s3_server.upload_tree(inputs, "portable-env/in")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    written = run(
        [
            "--input",
            s3_in,
            "--output",
            f"s3://{s3_server.bucket}/portable-env/out",
            *OPTIONS,
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
    assert written["counts"] == manifest["counts"] and written["counts"]["rejected"] == 0
    assert s3_server.download_tree("portable-env/out") == local


@pytest.mark.parametrize(
    "runner",
    ["DaskRunner", "dask", "apache_beam.runners.dask.dask_runner.DaskRunner", "PrismRunner", "SomeOtherRunner"],
)
def test_runners_that_would_write_wrong_output_are_refused_before_any_work(tmp_path: Path, runner: str) -> None:
    make_bundle(tmp_path / "in" / "c", conv_id="c", seconds=2.0)
    with pytest.raises(ValueError, match="refused before any work") as e:
        run(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--runner", runner])
    message = str(e.value)
    for name in ("PortableRunner", "FlinkRunner", "SparkRunner", "DataflowRunner", "DirectRunner"):
        assert name in message
    if "ask" in runner:
        assert "multi-output" in message
    assert not (tmp_path / "out").exists()  # nothing was created


def test_supported_runner_names() -> None:
    assert check_runner(None) is None
    for name in (
        "DirectRunner",
        "FnApiRunner",
        "PortableRunner",
        "portable",
        "FlinkRunner",
        "SparkRunner",
        "DataflowRunner",
        "apache_beam.runners.portability.flink_runner.FlinkRunner",
    ):
        assert check_runner(name) is not None


def test_cli_reports_a_refused_runner_without_a_traceback(tmp_path: Path) -> None:
    make_bundle(tmp_path / "in" / "c", conv_id="c", seconds=2.0)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "microturn_cli",
            "run",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--runner",
            "DaskRunner",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 2 and "DaskRunner" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
