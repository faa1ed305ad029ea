"""Dataset-level tables: index.parquet, rejected.parquet and manifest.json (DESIGN.md §5).

    python -c "from schemas.tables import INDEX_SCHEMA; print(INDEX_SCHEMA)"
"""

from __future__ import annotations

import pyarrow as pa

INDEX_FILE = "index.parquet"
REJECTED_FILE = "rejected.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

LABEL_COUNT_COLUMNS = (
    "n_input_speech", "n_output_speech", "n_overlap", "n_silence", "n_backchannel", "n_interruption",
    "n_yield_to_input", "n_yield_to_output", "n_output_backchannel", "n_output_interruption",
)
"""Micro-turn counts per label in the sample (events count their onsets)."""

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
    ],
    metadata={"microturn.table": "index", "microturn.version": str(MANIFEST_VERSION)},
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("input", pa.string(), nullable=False),  # where the input came from (path, manifest:line)
        pa.field("conversation_id", pa.string()),  # null when the bundle could not be parsed
        pa.field("stage", pa.string(), nullable=False),  # read | decode | featurise | label | write
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
}
