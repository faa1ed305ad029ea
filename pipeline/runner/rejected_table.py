"""rejected.parquet with bounded memory: the rejections go to sorted run files in the work directory, a few thousand
rows at a time, each with its counts by stage and kind, and one pass merges the runs into the table.

    python -c "from pipeline.runner.rejected_table import RUN_ROWS; print(RUN_ROWS)"  # 20000

No worker holds the job's rejections: a `RejectedRunsFn` keeps at most RUN_ROWS rows before it writes them, sorted,
as one run (named by the sha256 of its bytes, so a retried bundle leaves the same file); the merge reads at most
MAX_FANIN runs at a time (more are merged level by level), MERGE_BATCH_ROWS rows at a time from each, and writes
row groups of ROW_GROUP_ROWS rows. The table is sorted by its full rows (input, stage, reason, kind, conversation
id), so its bytes depend on the rejections only, not on how a runner bundled them.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import posixpath
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.rejects import Rejection
from pipeline.runner.worker_storage import WorkerStorageFn
from pipeline.write import commit_bytes, commit_file
from schemas.tables import PARQUET_COMPRESSION, REJECTED_FILE, REJECTED_SCHEMA, parquet_bytes

RUN_ROWS = 20_000
"""Rejections a worker holds before writing them as a sorted run (a row is a few hundred bytes)."""
MERGE_BATCH_ROWS = 1_024
"""Rows read at a time from each run while merging."""
MAX_FANIN = 64
"""Runs merged at once: the merge holds at most MAX_FANIN * MERGE_BATCH_ROWS rows whatever the rejections."""
ROW_GROUP_ROWS = 65_536
"""Rows per row group of rejected.parquet (fixed, so the bytes do not depend on the runs)."""


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """The table's order: input, stage, reason, kind, conversation id (None first)."""
    cid = row["conversation_id"]
    return (row["input"], row["stage"], row["reason"], row["kind"], "" if cid is None else "\x01" + cid)


def _table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{f.name: r[f.name] for f in REJECTED_SCHEMA} for r in rows], schema=REJECTED_SCHEMA)


def write_sorted_rows(path: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows already in `row_key` order to the Parquet file `path` (a local temporary file first, then copied
    through a temporary name and renamed); returns the number of rows."""
    count = 0
    with tempfile.NamedTemporaryFile(suffix=".parquet") as local:
        with pq.ParquetWriter(local.name, REJECTED_SCHEMA, compression=PARQUET_COMPRESSION) as writer:
            it = iter(rows)
            while chunk := list(itertools.islice(it, ROW_GROUP_ROWS)):
                writer.write_table(_table(chunk), row_group_size=ROW_GROUP_ROWS)
                count += len(chunk)
            if count == 0:
                writer.write_table(_table([]))
        commit_file(local.name, path)
    return count


def write_run(run_dir: str, rows: list[dict[str, Any]]) -> str:
    """Sort `rows` and write them as one run under `run_dir`, named by the sha256 of its bytes; returns its path."""
    rows.sort(key=row_key)
    data = parquet_bytes(_table(rows))
    path = posixpath.join(run_dir, f"run-{hashlib.sha256(data).hexdigest()[:24]}.parquet")
    commit_bytes(path, data)
    return path


def _run_rows(path: str) -> Iterator[dict[str, Any]]:
    with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=MERGE_BATCH_ROWS):
            yield from batch.to_pylist()


def _merge(paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    return heapq.merge(*(_run_rows(path) for path in paths), key=row_key)


def merge_runs(output: str, runs: Iterable[str]) -> int:
    """Merge sorted runs into `output`/rejected.parquet; returns the number of rows. More than MAX_FANIN runs are
    first merged MAX_FANIN at a time into runs beside them (named by their inputs), level by level."""
    runs = sorted(runs)
    while len(runs) > MAX_FANIN:
        groups = [runs[i : i + MAX_FANIN] for i in range(0, len(runs), MAX_FANIN)]
        runs = []
        for group in groups:
            name = hashlib.sha256("\n".join(group).encode("utf-8")).hexdigest()[:24]
            path = posixpath.join(posixpath.dirname(group[0]), f"merged-{name}.parquet")
            write_sorted_rows(path, _merge(group))
            runs.append(path)
    return write_sorted_rows(posixpath.join(output, REJECTED_FILE), _merge(runs))


class RejectedRunsFn(WorkerStorageFn):
    """Rejections -> (path, counts by (stage, kind)) of sorted runs of at most RUN_ROWS rows under the directory
    `run_name` of the work directory (a side input of `process`)."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name
        self.run_dir = ""

    def start_bundle(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def process(self, rejection: Rejection, work_dir: str) -> Iterator[tuple[str, dict[tuple[str, str], int]]]:
        self.run_dir = posixpath.join(work_dir, self.run_name)
        self.rows.append(rejection.to_row())
        if len(self.rows) >= RUN_ROWS:
            yield self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self.rows:
            yield WindowedValue(self._flush(), MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> tuple[str, dict[tuple[str, str], int]]:
        counts = dict(Counter((r["stage"], r["kind"]) for r in self.rows))
        path = write_run(self.run_dir, self.rows)
        self.rows = []
        return path, counts


def rejected_summary(counts: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """The manifest's rejection fields from counts by (stage, kind)."""
    by: dict[str, dict[str, int]] = {}
    for (stage, kind), n in sorted(counts.items()):
        by.setdefault(stage, {})[kind] = n
    return {
        "rejected": sum(counts.values()),
        "rejected_by_stage": {stage: sum(kinds.values()) for stage, kinds in by.items()},
        "rejected_by": by,
    }


def write_rejected_runs(output: str, runs: Iterable[tuple[str, Mapping[tuple[str, str], int]]]) -> dict[str, Any]:
    """Merge the runs (RejectedRunsFn's outputs) into `output`/rejected.parquet; return the manifest's fields."""
    runs = list(runs)  # one small entry per RUN_ROWS rejections
    counts: Counter = Counter()
    for _, run_counts in runs:
        counts.update(run_counts)
    merge_runs(output, [path for path, _ in runs])
    return rejected_summary(counts)
