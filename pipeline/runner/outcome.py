"""A job that wrote nothing must not look like success: one line saying so, with the commonest rejection reasons.

python -c "from pipeline.runner.outcome import nothing_written; print(nothing_written.__doc__)"
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.tables import REJECTED_FILE


def nothing_written(manifest: Mapping[str, Any], output: str, *, top: int = 3, width: int = 100) -> str | None:
    """None when the job wrote at least one conversation; else one line: how many inputs were rejected and the
    `top` commonest (stage, reason) pairs with their counts (reasons cut to `width` characters)."""
    counts = manifest["counts"]
    if counts["conversations_written"] > 0:
        return None
    if not counts["inputs"]:
        return "nothing written: the input holds no conversations"
    with FileSystems.open(posixpath.join(output, REJECTED_FILE)) as f:
        rows = pq.read_table(f, columns=["stage", "reason"]).to_pylist()
    common = Counter((r["stage"], r["reason"]) for r in rows).most_common(top)
    shown = "; ".join(
        f"{n} x {stage}: {reason if len(reason) <= width else reason[: width - 3] + '...'}"
        for (stage, reason), n in common
    )
    return (
        f"nothing written: all {counts['inputs']} inputs were rejected; commonest reasons: {shown} "
        f"(all in {posixpath.join(output, REJECTED_FILE)})"
    )
