"""The SDK worker pool of `--environment_type EXTERNAL`, bound to one address (pipeline/runner/worker_pool.py).

python -m cli.worker_pool --service_port 8098                 # 127.0.0.1 only (the default)
python -m cli.worker_pool --service_port 8098 --host 0.0.0.0  # every IPv4 interface
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    from pipeline.runner import worker_pool

    parser = argparse.ArgumentParser(prog="python -m cli.worker_pool", description=worker_pool.__doc__.splitlines()[0])
    parser.add_argument("--service_port", type=int, required=True, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument(
        "--container_executable", default=None, help="executable of the Beam SDK container contract (as Beam's pool)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address, server = worker_pool.start(args.host, args.service_port, args.container_executable)
    logger.info("SDK worker pool listening on %s", address)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
