"""pipeline/runner/outcome.py: a job that wrote nothing says so in one line, with its commonest rejection reasons.

.venv/bin/python -m pytest -q tests/pipeline/runner/test_outcome.py
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.runner.outcome import nothing_written
from schemas.tables import REJECTED_FILE


def manifest(*, written: int, inputs: int) -> dict:
    return {"counts": {"conversations_written": written, "inputs": inputs}}


def write_rejected(out: Path, rows: list[tuple[str, str]]) -> None:
    table = pa.table(
        {
            "input": [f"in{i}" for i in range(len(rows))],
            "conversation_id": [None] * len(rows),
            "stage": [s for s, _ in rows],
            "kind": ["x"] * len(rows),
            "reason": [r for _, r in rows],
        }
    )
    pq.write_table(table, out / REJECTED_FILE)


def test_a_job_that_wrote_something_says_nothing(tmp_path: Path) -> None:
    assert nothing_written(manifest(written=1, inputs=3), str(tmp_path)) is None  # rejected.parquet is not read


def test_an_empty_input_is_named(tmp_path: Path) -> None:
    assert nothing_written(manifest(written=0, inputs=0), str(tmp_path)) == (
        "nothing written: the input holds no conversations"
    )


def test_the_commonest_reasons_come_first_and_long_ones_are_cut(tmp_path: Path) -> None:
    long = "x" * 30
    rows = [("decode", "no audio stream")] * 3 + [("align", "words past end")] * 2 + [("read", long)]
    rows += [("read", "bad json")]
    write_rejected(tmp_path, rows)
    line = nothing_written(manifest(written=0, inputs=7), str(tmp_path), top=3, width=20)
    assert line == (
        "nothing written: all 7 inputs were rejected; commonest reasons: 3 x decode: no audio stream; "
        f"2 x align: words past end; 1 x read: {'x' * 17}... (all in {tmp_path / REJECTED_FILE})"
    )
    assert nothing_written(manifest(written=0, inputs=7), str(tmp_path), top=1).endswith(
        f"reasons: 3 x decode: no audio stream (all in {tmp_path / REJECTED_FILE})"
    )
