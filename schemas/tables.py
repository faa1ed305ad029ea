"""Dataset-level tables: the index, rejected.parquet and manifest.json (DESIGN.md §5).

    python -c "from schemas.tables import INDEX_SCHEMA; print(INDEX_SCHEMA)"

Layout of a dataset directory (manifest_version 2):

    shard-00000.tar ...          WebDataset shards; a bucket bigger than --shard_size_mb is split: shard-00000_01.tar
    index/shard-00000.parquet    the index rows of shard-00000.tar, sorted by key; one file per shard, written by the
                                 shard's writer, so the whole index is never held by one worker. The directory reads
                                 as one table: pyarrow.parquet.read_table("DATASET/index") or `read_index`.
    rejected.parquet             every input that did not make it, with stage, kind and reason
    manifest.json                counts, hours, per-shard sha256/size, statistics (merged from per-shard summaries)

Schemas and file names here, and the one set of readers (`read_index`, `read_index_rows`, `read_rejected`,
`read_manifest`); they open files through pyarrow's filesystems, so a dataset path may be local or a URL (s3://,
gs://, hdfs://). Writers: pipeline/manifest.py. Temporary files of a write in progress are hidden (a leading dot),
so pyarrow's dataset discovery never reads them.
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

INDEX_DIR = "index"
"""The index: a directory of one Parquet file per shard (index_file_name)."""
REJECTED_FILE = "rejected.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 2
"""2: the index is a directory of per-shard files; shards are sized by shard_size_mb (1: one index.parquet)."""


def index_file_name(shard: str) -> str:
    """`index/shard-00000.parquet` for shard `shard-00000.tar` (relative to the dataset)."""
    return f"{INDEX_DIR}/{shard.removesuffix('.tar')}.parquet"


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
    "counts": "{inputs, conversations_written, rejected, samples, shards, perspectives}; "
    "inputs = conversations_written + rejected",
    "hours": "float: conversation audio hours written (each conversation once, not per perspective)",
    "sample_hours": "float: real audio hours over all samples (perspectives counted separately)",
    "shards": "[{name, sha256, size_bytes, samples, conversations, index}]: index is the shard's index file",
    "label_counts": "{label: micro-turns} over all samples",
    "turn_taking": "distributions on 200 ms bins: floor transfer offsets, gaps, overlaps; event counts and rates",
    "rejected_by_stage": "{stage: inputs rejected at that stage}",
    "rejected_by": "{stage: {kind: inputs}}: rejections by stage and kind (kinds: pipeline.rejects.KINDS)",
}


def _filesystem(path: str) -> tuple[Any, str]:
    """pyarrow's filesystem of `path` (local, or s3:// gs:// hdfs:// URLs) and the path inside it."""
    from pyarrow import fs

    if "://" in path:
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), os.path.abspath(path)


def _open(path: str) -> IO[bytes]:
    """A binary read handle. Raises FileNotFoundError when `path` does not exist."""
    filesystem, inner = _filesystem(path)
    return filesystem.open_input_file(inner)


def _exists(path: str) -> bool:
    from pyarrow import fs

    filesystem, inner = _filesystem(path)
    return filesystem.get_file_info(inner).type != fs.FileType.NotFound


def _read_parquet(path: str, schema: pa.Schema, *, missing_ok: bool, **kwargs: Any) -> pa.Table:
    if missing_ok and not _exists(path):
        return schema.empty_table() if "columns" not in kwargs else schema.empty_table().select(kwargs["columns"])
    with _open(path) as f:
        return pq.read_table(f, **kwargs)


def read_index(
    dataset: str, *, columns: list[str] | None = None, filters: Any = None, missing_ok: bool = False
) -> pa.Table:
    """The index of `dataset` (a directory path or URL): every shard's file of index/ as one table, sorted by key;
    optionally only some columns / rows.

    Args:
        columns: column names to read (all when None).
        filters: pyarrow row filters, e.g. [("key", "=", key)].
        missing_ok: an empty table instead of FileNotFoundError when index/ does not exist.
    """
    from pyarrow import fs

    filesystem, inner = _filesystem(posixpath.join(dataset, INDEX_DIR))
    info = filesystem.get_file_info(inner)
    empty = INDEX_SCHEMA.empty_table() if columns is None else INDEX_SCHEMA.empty_table().select(columns)
    if info.type == fs.FileType.NotFound:
        if missing_ok:
            return empty
        raise FileNotFoundError(f"{posixpath.join(dataset, INDEX_DIR)}: no such index directory")
    listed = filesystem.get_file_info(fs.FileSelector(inner))
    if not any(f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_")) for f in listed):
        return empty  # a dataset without samples
    table = pq.read_table(inner, filesystem=filesystem, schema=INDEX_SCHEMA, columns=columns, filters=filters)
    return table.sort_by("key") if "key" in table.column_names else table


def read_index_rows(dataset: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The index of `dataset` as one dict per sample, sorted by key."""
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
    with _open(posixpath.join(dataset, MANIFEST_FILE)) as f:
        return json.loads(f.read().decode("utf-8"))
