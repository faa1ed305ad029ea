"""The job's S3 settings on every SDK worker, without its credentials: DoFns carry the endpoint and such, and point
Beam's FileSystems at them in `setup`; credentials never enter the job graph.

    python -c "from pipeline.runner.worker_storage import storage_flags; print(storage_flags(None))"

A DoFn is pickled into the pipeline graph, which runners show and stage (Dataflow's UI and staging bucket, Flink's
job graph), so a DoFn carries only `SETTINGS` (endpoint, region, TLS), never `CREDENTIALS`. A worker gets its
credentials where Beam's harness and boto3 look for them:

- from the pipeline options, when the runner's harness hands them to the worker (Beam's local runner, in-process
  or multi_processing; Beam's PROCESS and DOCKER environments; Dataflow): `--s3_access_key_id` and
  `--s3_secret_access_key` work there, and are as visible as the runner makes its pipeline options;
- else from boto3's standard chain on the worker: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
  ``AWS_SESSION_TOKEN`` (and ``AWS_ENDPOINT_URL_S3``) in the worker's environment, ``~/.aws`` files, or an
  instance role. A worker pool that runs SDK workers as threads (``worker_pool_main``, PortableRunner with
  ``--environment_type EXTERNAL``, the way Flink and Spark deployments often run Python) never sees the pipeline
  options: its own environment must hold the credentials.

A worker whose FileSystems has no options at all (the worker pool's) is given some here: without them Beam's S3 file
system fails with "Must provide one of client or options" even when the environment holds credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options

from schemas import storage
from schemas.s3 import install_shared_clients

Fn = TypeVar("Fn", bound="WorkerStorageFn")

SETTINGS = ("s3_endpoint_url", "s3_region_name", "s3_api_version", "s3_verify")
"""S3 options a DoFn may carry (plus the switch --s3_disable_ssl): where the store is, not who may read it."""
CREDENTIALS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")
"""S3 options that never enter the job graph."""


def _flags(s3: Any, names: Sequence[str], *, disable_ssl: bool) -> list[str]:
    flags: list[str] = []
    for name in names:
        value = getattr(s3, name, None)
        if value is not None:
            flags += [f"--{name}", str(value)]
    if disable_ssl and getattr(s3, "s3_disable_ssl", False):
        flags.append("--s3_disable_ssl")
    return flags


def storage_flags(options: PipelineOptions | None) -> tuple[str, ...]:
    """The S3 settings given in `options` (no credentials), as Beam flags (empty when none)."""
    if options is None:
        return ()
    return tuple(_flags(options.view_as(S3Options), SETTINGS, disable_ssl=True))


def configure_worker(flags: Sequence[str]) -> None:
    """Point this worker process's FileSystems at the job's S3 settings `flags`, keeping the credentials its options
    already hold (the harness's, from the pipeline options); a process with no FileSystems options gets some."""
    current = FileSystems._pipeline_options
    if current is not None:
        if not flags or _flags(current.view_as(S3Options), SETTINGS, disable_ssl=True) == list(flags):
            install_shared_clients()
            return  # the harness (or the launcher, in process) configured this job already
        keep = _flags(current.view_as(S3Options), CREDENTIALS, disable_ssl=False)
    else:
        keep = []
    storage.configure([*keep, *flags], export=False)


class WorkerStorageFn(beam.DoFn):
    """A DoFn that configures its worker's FileSystems with the job's S3 settings (set by `with_storage`)."""

    storage_flags: tuple[str, ...] = ()

    def setup(self) -> None:
        configure_worker(self.storage_flags)


def with_storage(fn: Fn, options: Any) -> Fn:
    """`fn` carrying the S3 settings (not the credentials) of `options` to its workers."""
    fn.storage_flags = storage_flags(options)
    return fn
