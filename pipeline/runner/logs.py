"""Which log lines reach the user's terminal: Beam's optional-dependency notices never, each conversation's own lines
only with -v. Shared by the `microturn` command and the local runner's worker processes (pipeline/runner/sdk_worker.py).

    python -c "from pipeline.runner.logs import CONVERSATIONS; print(CONVERSATIONS)"

Beam logs its optional-dependency notices ("apitools not found, and bigquery client libraries are not available
...") with `logging.warning` on the root logger while it is imported, so no level set on Beam's loggers hides them:
`BeamNoticeFilter` on the root logger does.
"""

from __future__ import annotations

import logging
import os
import re

CONVERSATIONS = "pipeline.conversations"
"""Logger of the lines about one conversation (written, rejected): INFO, shown only with -v (100,000 conversations
would print 100,000 lines); rejected.parquet and the run's summary hold the same facts."""
VERBOSE_ENV = "MICROTURN_VERBOSE"
"""Set to "1" by the command under -v, so that the local runner's worker processes log as the command does."""

_BEAM_DIR = f"{os.sep}apache_beam{os.sep}"
_OPTIONAL_DEPENDENCY = re.compile(
    r"not found|not available|not installed|could not import|unable to import|no module named", re.IGNORECASE
)


class BeamNoticeFilter(logging.Filter):
    """Drops the warnings that Beam's own modules log on the root logger about a missing optional dependency
    (apitools, the BigQuery and other cloud client libraries); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "root"
            and record.levelno <= logging.WARNING
            and _BEAM_DIR in record.pathname
            and _OPTIONAL_DEPENDENCY.search(record.getMessage()) is not None
        )


class WorkerLogFilter(BeamNoticeFilter):
    """A worker process's stderr under the command's policy: without -v, Beam's own lines below ERROR (its harness
    start-up and shut-down, a dozen per worker) and each conversation's lines are dropped; our other lines pass."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        if self.verbose:
            return True
        if record.name == CONVERSATIONS or record.name.startswith(CONVERSATIONS + "."):
            return record.levelno >= logging.WARNING
        if record.name.startswith(("apache_beam", "__main__")) or _BEAM_DIR in record.pathname:
            return record.levelno >= logging.ERROR
        return True


def quiet_beam_notices() -> None:
    """Keep Beam's optional-dependency notices out of every handler (idempotent); call before Beam is imported."""
    root = logging.getLogger()
    if not any(isinstance(f, BeamNoticeFilter) for f in root.filters):
        root.addFilter(BeamNoticeFilter())
