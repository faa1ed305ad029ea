"""The job's S3 options on every SDK worker: DoFns carry them and point Beam's FileSystems at them in `setup`.

    python -c "from pipeline.runner.worker_storage import storage_flags; print(storage_flags(None))"

A worker started by Beam's own harness (local runner, Dataflow) gets its FileSystems options from the pipeline
options, but a worker that a worker pool starts (PortableRunner with --environment_type EXTERNAL, the way Flink
and Spark deployments often run Python) does not: without this its first s3:// access fails with "Must provide
one of client or options".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, S3Options

from schemas import storage

Fn = TypeVar("Fn", bound="WorkerStorageFn")


def storage_flags(options: PipelineOptions | None) -> tuple[str, ...]:
    """The S3 options given in `options`, as Beam flags (empty when none)."""
    if options is None:
        return ()
    s3 = options.view_as(S3Options)
    flags: list[str] = []
    for name in (
        "s3_access_key_id",
        "s3_secret_access_key",
        "s3_session_token",
        "s3_endpoint_url",
        "s3_region_name",
        "s3_api_version",
        "s3_verify",
    ):
        value = getattr(s3, name, None)
        if value is not None:
            flags += [f"--{name}", str(value)]
    if getattr(s3, "s3_disable_ssl", False):
        flags.append("--s3_disable_ssl")
    return tuple(flags)


def configure_worker(flags: Sequence[str]) -> None:
    """Point this worker process's FileSystems at `flags` (nothing to do without S3 options)."""
    if flags:
        storage.configure(list(flags), export=False)


class WorkerStorageFn(beam.DoFn):
    """A DoFn that configures its worker's FileSystems with the job's S3 options (set by `with_storage`)."""

    storage_flags: tuple[str, ...] = ()

    def setup(self) -> None:
        configure_worker(self.storage_flags)


def with_storage(fn: Fn, options: Any) -> Fn:
    """`fn` carrying the S3 options of `options` to its workers."""
    fn.storage_flags = storage_flags(options)
    return fn
