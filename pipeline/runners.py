"""Which Beam runners may run the job, checked before any work starts; the Pipeline for the chosen one.

    python -c "from pipeline.runners import check_runner; print(check_runner('PortableRunner'))"

The job routes every failure through multi-output ParDos (`with_outputs`/`TaggedOutput`) and reads Beam metrics to
report resumed work, so a runner that mis-routes tagged outputs writes silently wrong datasets. Supported:
the local runner (no --runner, DirectRunner or FnApiRunner: Beam's FnApiRunner, constructed here so that no Prism
binary is looked for), PortableRunner (Beam's portable job API: its Python job service here, Flink's or Spark's job
server on a cluster), FlinkRunner, SparkRunner and DataflowRunner. Everything else is refused with the reason.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

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


def local_runner(options: PipelineOptions) -> Any:
    """Beam's FnApiRunner (what DirectRunner uses for batch), so that no Prism binary is looked for; its worker
    processes (multi_processing) run pipeline/sdk_worker.py, Beam's worker with the command's logging policy."""
    from apache_beam.portability import python_urns
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    from pipeline.sdk_worker import COMMAND

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
