"""The local runner's worker processes (`--direct_running_mode multi_processing`): Beam's SDK worker, logging to
stderr under the `microturn` command's policy (pipeline/runner/logs.py) instead of Beam's start-up lines, its
optional-dependency notices and one line per conversation.

    python -c "import pipeline.runner.sdk_worker as w; print(w.COMMAND)"

pipeline/runner/runners.py starts `python -m pipeline.runner.sdk_worker` where Beam would start
`python -m apache_beam.runners.worker.sdk_worker_main`, with the same environment (CONTROL_API_SERVICE_DESCRIPTOR,
PIPELINE_OPTIONS, ...). Every record still goes to the runner through Beam's logging service as before.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

from pipeline.runner.logs import VERBOSE_ENV, WorkerLogFilter, quiet_beam_notices

COMMAND = f"{shlex.quote(sys.executable)} -m pipeline.runner.sdk_worker"
"""The worker's command line (run by Beam with a shell, as Beam's own one is)."""


def main() -> None:
    verbose = os.environ.get(VERBOSE_ENV) == "1"
    handler = logging.StreamHandler()
    handler.addFilter(WorkerLogFilter(verbose))
    rank = int(os.environ.get("RANK", "0"))
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    quiet_beam_notices()
    from apache_beam.runners.worker import sdk_worker_main  # imported after the logging set-up: its notices filtered

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
