"""Dataset-level tables: index.parquet, rejected.parquet and manifest.json (DESIGN.md §5).

    python -c "from schemas.tables import INDEX_SCHEMA; print(INDEX_SCHEMA)"

Schemas and file names here, and the one set of readers (`read_index`, `read_index_rows`, `read_rejected`,
`read_manifest`); they open files through schemas/storage.py (Beam's FileSystems), so a dataset path may be local or
a URL (s3:// with the S3 options of `storage.configure` or the AWS_* environment variables, gs://). Writers:
pipeline/manifest.py.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import storage

INDEX_FILE = "index.parquet"
REJECTED_FILE = "rejected.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

LABEL_COUNT_COLUMNS = (
    "n_input_speech",
    "n_output_speech",
    "n_overlap",
    "n_silence",
    "n_backchannel",
    "n_interruption",
    "n_yield_to_input",
    "n_yield_to_output",
    "n_output_backchannel",
    "n_output_interruption",
)
"""Micro-turn counts per label in the sample (events count their onsets)."""

EVENT_COUNT_COLUMNS = ("n_events_output", "n_events_input")
"""Timed events in the sample (schemas/events.py): the model's acts (targets) and arrivals."""


def event_counts(events: Any) -> dict[str, int]:
    """The EVENT_COUNT_COLUMNS of a sample's events (records with a `side`; None: no events)."""
    sides = [e.side for e in events or ()]
    return {"n_events_output": sides.count("output"), "n_events_input": sides.count("input")}


INDEX_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),  # byte offset of the sample's first member header
        pa.field("conversation_id", pa.string(), nullable=False),
        pa.field("perspective", pa.string(), nullable=False),
        pa.field("window", pa.int32(), nullable=False),
        pa.field("start_microturn", pa.int32(), nullable=False),
        pa.field("num_microturns", pa.int32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),  # real (unpadded) audio seconds in the window
        pa.field("output_speaker", pa.string(), nullable=False),
        pa.field("input_speaker", pa.string()),
        pa.field("other_speakers", pa.list_(pa.string()), nullable=False),
        pa.field("word_count", pa.int32(), nullable=False),
        *[pa.field(name, pa.int32(), nullable=False) for name in LABEL_COUNT_COLUMNS],
        pa.field("language", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("licence", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("tags", pa.map_(pa.string(), pa.string()), nullable=False),  # the bundle's tags
        pa.field("annotations", pa.list_(pa.string()), nullable=False),  # labels of annotations in the window
        # proactive targets (schemas/targets.py) touching the window: their count and sorted unique categories
        pa.field("n_targets", pa.int32(), nullable=False),
        pa.field("target_categories", pa.list_(pa.string()), nullable=False),
        pa.field("target_counts", pa.map_(pa.string(), pa.int32()), nullable=False),  # category -> targets
        *[pa.field(name, pa.int32(), nullable=False) for name in EVENT_COUNT_COLUMNS],
    ],
    metadata={"microturn.table": "index", "microturn.version": str(MANIFEST_VERSION)},
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("input", pa.string(), nullable=False),  # where the input came from (path, manifest:line)
        pa.field("conversation_id", pa.string()),  # null when the bundle could not be parsed
        pa.field("stage", pa.string(), nullable=False),  # read | decode | align | featurise | label | write
        pa.field("kind", pa.string(), nullable=False),  # short stable kind, one of pipeline.rejects.KINDS
        pa.field("reason", pa.string(), nullable=False),
    ],
    metadata={"microturn.table": "rejected", "microturn.version": str(MANIFEST_VERSION)},
)

MANIFEST_FIELDS = {
    "manifest_version": "int",
    "format_version": "int: schemas.shard.FORMAT_VERSION of the samples",
    "code_version": "str: microturn package version",
    "config": "object: the job configuration (grid, windows, labels thresholds, shards)",
    "config_hash": "str: sha256 of the canonical config JSON",
    "counts": "{inputs, conversations_written, rejected, samples, shards}; inputs = conversations_written + rejected",
    "hours": "float: conversation audio hours written (each conversation once, not per perspective)",
    "sample_hours": "float: real audio hours over all samples (perspectives counted separately)",
    "shards": "[{name, sha256, size_bytes, samples}]",
    "label_counts": "{label: micro-turns} over all samples",
    "turn_taking": "distributions on 200 ms bins: floor transfer offsets, gaps, overlaps; event counts and rates",
    "rejected_by_stage": "{stage: inputs rejected at that stage}",
    "rejected_by": "{stage: {kind: inputs}}: rejections by stage and kind (kinds: pipeline.rejects.KINDS)",
}


def _read_parquet(path: str, schema: pa.Schema, *, missing_ok: bool, **kwargs: Any) -> pa.Table:
    if missing_ok and not storage.exists(path):
        return schema.empty_table() if "columns" not in kwargs else schema.empty_table().select(kwargs["columns"])
    with storage.open_read(path) as f:
        return pq.read_table(f, **kwargs)


def read_index(
    dataset: str, *, columns: list[str] | None = None, filters: Any = None, missing_ok: bool = False
) -> pa.Table:
    """index.parquet of `dataset` (a directory path or URL), optionally only some columns / rows.

    Args:
        columns: column names to read (all when None).
        filters: pyarrow row filters, e.g. [("key", "=", key)].
        missing_ok: an empty table instead of FileNotFoundError when the file does not exist.
    """
    return _read_parquet(
        posixpath.join(dataset, INDEX_FILE), INDEX_SCHEMA, missing_ok=missing_ok, columns=columns, filters=filters
    )


def read_index_rows(dataset: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """index.parquet of `dataset` as one dict per sample."""
    return read_index(dataset, missing_ok=missing_ok).to_pylist()


def read_rejected(dataset: str, *, missing_ok: bool = False) -> pa.Table:
    """rejected.parquet of `dataset`: one row per rejected input (REJECTED_SCHEMA)."""
    return _read_parquet(posixpath.join(dataset, REJECTED_FILE), REJECTED_SCHEMA, missing_ok=missing_ok)


def read_manifest(dataset: str) -> dict[str, Any]:
    """manifest.json of `dataset` (MANIFEST_FIELDS).

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
        ValueError: it is not JSON.
    """
    return storage.read_json(posixpath.join(dataset, MANIFEST_FILE))
