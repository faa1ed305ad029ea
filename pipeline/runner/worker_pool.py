"""Beam's SDK worker pool (the workers of `--environment_type EXTERNAL`) listening on one address only.

    python -m cli.worker_pool --service_port 8098                 # 127.0.0.1 only (the default)
    python -m cli.worker_pool --service_port 8098 --host 0.0.0.0  # every IPv4 interface

Beam 2.77's own `python -m apache_beam.runners.worker.worker_pool_main --service_port 8098` binds every interface
(`[::]`, hard-coded): anyone who reaches the port can start worker processes on the machine. This is the same
servicer (Beam's BeamFnExternalWorkerPoolServicer, one worker process per request), bound to `--host`. Give the job
`--environment_type EXTERNAL --environment_config localhost:8098`.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def start(host: str, port: int, container_executable: str | None = None) -> tuple[str, Any]:
    """Start the pool's gRPC server on `host`:`port` (0: a free port); returns (address, server)."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
    from apache_beam.utils import thread_pool_executor

    options = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(), options=options)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    pool = BeamFnExternalWorkerPoolServicer(use_process=True, container_executable=container_executable)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    return f"{host}:{bound}", server
