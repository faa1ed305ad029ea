"""Which Beam runners may run the job, checked before any work starts; the Pipeline for the chosen one.

    python -c "from pipeline.runner.runners import check_runner; print(check_runner('PortableRunner'))"

The job routes every failure through multi-output ParDos (`with_outputs`/`TaggedOutput`) and reads Beam metrics to
report resumed work, so a runner that mis-routes tagged outputs writes silently wrong datasets. Supported:
the local runner (no --runner, DirectRunner or FnApiRunner: Beam's FnApiRunner, constructed here so that no Prism
binary is looked for), PortableRunner (Beam's portable job API: its Python job service here, Flink's or Spark's job
server on a cluster), FlinkRunner, SparkRunner and DataflowRunner. Everything else is refused with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    SparkRunnerOptions,
    StandardOptions,
)

LOCAL = ("directrunner", "fnapirunner")
SUPPORTED = {
    "directrunner": "DirectRunner",
    "fnapirunner": "FnApiRunner",
    "portablerunner": "PortableRunner",
    "flinkrunner": "FlinkRunner",
    "sparkrunner": "SparkRunner",
    "dataflowrunner": "DataflowRunner",
}
REFUSED = {
    "daskrunner": "Beam 2.77's DaskRunner sends every element of a multi-output ParDo (with_outputs/TaggedOutput, "
    "Partition) to every output and raises on metrics(); the job's rejected-input routing depends on "
    "tagged outputs, so it would write a silently wrong dataset",
    "prismrunner": "the Prism runner downloads its binary at run time, and nothing in the job may download at run "
    "time; the local runner (no --runner) or PortableRunner against a job server do the same work",
    "bundlebaseddirectrunner": "Beam's legacy bundle-based direct runner is not verified with this job; without "
    "--runner the job uses Beam's FnApiRunner (what DirectRunner uses for batch)",
    "switchingdirectrunner": "not verified with this job; without --runner the job uses Beam's FnApiRunner",
    "testdirectrunner": "a test wrapper, not verified with this job; without --runner the job uses the FnApiRunner",
    "interactiverunner": "a notebook runner that caches PCollections; not verified with this job",
    "kafkastreamsrunner": "not verified with this job (its multi-output routing and metrics are untested here)",
}


def runner_key(runner: Any) -> str | None:
    """A runner option (name, dotted class path, class or instance) as a lower-case key like 'portablerunner';
    None when no runner is given."""
    if runner is None:
        return None
    if not isinstance(runner, str):
        runner = runner.__name__ if isinstance(runner, type) else type(runner).__name__
    name = runner.rsplit(".", 1)[-1].lower()
    return name if name.endswith("runner") else name + "runner"


def check_runner(runner: Any) -> str | None:
    """The runner's key when the job supports it (None: the local runner).

    Raises:
        ValueError: naming why the runner is refused and which runners are supported.
    """
    key = runner_key(runner)
    if key is None or key in SUPPORTED:
        return key
    supported = "no --runner (the local FnApiRunner), " + ", ".join(SUPPORTED.values())
    why = REFUSED.get(
        key,
        "it is not one of the runners this job is verified on (a runner that mis-routes "
        "multi-output ParDos would write silently wrong output)",
    )
    raise ValueError(f"--runner {runner}: refused before any work: {why}. Supported runners: {supported}")


BEAM_WORKER_MODULE = " -m apache_beam.runners.worker.sdk_worker_main"


JOB_SERVICE_RUNNERS = {"portablerunner": "PortableRunner", "flinkrunner": "FlinkRunner", "sparkrunner": "SparkRunner"}
"""Runners that submit the job to a job service (Beam's portable job API)."""
JOB_ENDPOINT_WAIT_S = 20.0
"""Longest wait, in seconds, for a --job_endpoint to answer before the job is refused (Beam's --job_server_timeout,
when lower, shortens it): a dead endpoint otherwise hangs the launch for minutes."""
PATH_OPTIONS = ("input", "output", "extra_input_root")
"""Options that are always local paths unless they name a URL (s3://, gs://)."""
MODEL_PATH_OPTIONS = ("whisper_model", "align_model", "pocketsphinx_model", "pocketsphinx_dict", "diarize_model")
"""Options that are local paths when a file or directory of that name exists (else a model name)."""


def check_launch(options: PipelineOptions) -> None:
    """Refuse, before any output is touched, a launch through a job service that cannot start: PortableRunner
    without --job_endpoint; FlinkRunner/SparkRunner without --job_endpoint and without a local job-server jar (Beam
    would download the jar at run time) or java; a --job_endpoint that does not answer within JOB_ENDPOINT_WAIT_S.

    Raises:
        ValueError: one line naming the problem and the fix.
    """
    key = runner_key(options.view_as(StandardOptions).runner)
    if key not in JOB_SERVICE_RUNNERS:
        return
    name = JOB_SERVICE_RUNNERS[key]
    portable = options.view_as(PortableOptions)
    endpoint = portable.job_endpoint
    if not endpoint:
        if key == "portablerunner":
            raise ValueError(
                "--runner PortableRunner needs --job_endpoint HOST:PORT, a running job service (Flink's or Spark's "
                "Beam job server, or Beam's Python one; README 'Running at scale')"
            )
        flag, jar = (
            ("--flink_job_server_jar", options.view_as(FlinkRunnerOptions).flink_job_server_jar)
            if key == "flinkrunner"
            else ("--spark_job_server_jar", options.view_as(SparkRunnerOptions).spark_job_server_jar)
        )
        if not jar or "://" in jar or not os.path.isfile(jar):
            raise ValueError(
                f"--runner {name} without --job_endpoint starts Beam's job server from a jar that Beam downloads at "
                f"run time, and the job downloads nothing: start the job server first and give --runner "
                f"PortableRunner --job_endpoint HOST:8099 (README 'Running at scale'), or give {flag} with a local "
                "jar file"
            )
        if shutil.which("java") is None:
            raise ValueError(f"--runner {name} with {flag} needs java on PATH to start the job server")
        return
    if endpoint == "embed":
        return
    wait_s = max(1.0, min(JOB_ENDPOINT_WAIT_S, float(portable.job_server_timeout)))
    problem = _job_service_problem(endpoint, wait_s)
    if problem is not None:
        raise ValueError(
            f"--job_endpoint {endpoint}: {problem}; start the job service first (README 'Running at scale') or "
            "correct the address"
        )


def _job_service_problem(endpoint: str, wait_s: float) -> str | None:
    """None when a gRPC server answers at `endpoint` within `wait_s` seconds, else what went wrong."""
    import grpc

    host, _, port = endpoint.rpartition(":")
    host = host.removeprefix("dns:///").strip("[]")
    if host and port.isdigit():  # a refused or unreachable port fails here at once, not after the whole wait
        try:
            socket.create_connection((host, int(port)), timeout=wait_s).close()
        except OSError as e:
            return f"cannot connect ({e.strerror or type(e).__name__})"
    channel = grpc.insecure_channel(endpoint)
    try:
        grpc.channel_ready_future(channel).result(timeout=wait_s)
    except grpc.FutureTimeoutError:
        return f"no gRPC job service answered within {wait_s:.0f} s"
    finally:
        channel.close()
    return None


def absolute_local_paths(options: PipelineOptions) -> dict[str, str]:
    """On a runner whose workers are other processes with their own working directory (a job service's worker
    pool, a cluster), a relative path would be resolved there: rewrite the local path options to absolute ones
    (against this process's working directory). A cluster's workers must also see those paths (shared storage), or
    use s3:// / gs://. Returns {option: new value} for the options changed; nothing on the local runner."""
    if runner_key(options.view_as(StandardOptions).runner) in (None, *LOCAL):
        return {}
    from pipeline.options import MicroturnOptions

    opts = options.view_as(MicroturnOptions)
    changed = {}
    for name in (*PATH_OPTIONS, *MODEL_PATH_OPTIONS):
        value = getattr(opts, name, None)
        if not value or "://" in value or os.path.isabs(value):
            continue
        if name in MODEL_PATH_OPTIONS and not os.path.exists(value):
            continue  # a model name, not a path
        changed[name] = os.path.abspath(value)
        setattr(opts, name, changed[name])
    return changed


def local_runner(options: PipelineOptions) -> Any:
    """Beam's FnApiRunner (what DirectRunner uses for batch), so that no Prism binary is looked for; its worker
    processes (multi_processing) run pipeline/runner/sdk_worker.py, Beam's worker with the command's logging policy."""
    from apache_beam.portability import python_urns
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    from pipeline.runner.sdk_worker import COMMAND

    class LocalRunner(fn_runner.FnApiRunner):
        def run_via_runner_api(self, pipeline_proto: Any, options: PipelineOptions) -> Any:
            for env in pipeline_proto.components.environments.values():
                if env.urn == python_urns.SUBPROCESS_SDK and env.payload.decode("utf-8").endswith(BEAM_WORKER_MODULE):
                    env.payload = COMMAND.encode("utf-8")
            return super().run_via_runner_api(pipeline_proto, options)

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return LocalRunner(
        provision_info=fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    )


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A Pipeline on the runner `options` name, after check_runner."""
    key = check_runner(options.view_as(StandardOptions).runner)
    if key is None or key in LOCAL:
        return beam.Pipeline(runner=local_runner(options), options=options)
    return beam.Pipeline(options=options)
