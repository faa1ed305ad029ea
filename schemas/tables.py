"""Dataset-level tables: the index, rejected.parquet and manifest.json (DESIGN.md §5).

    python -c "from schemas.tables import INDEX_SCHEMA; print(INDEX_SCHEMA)"

Layout of a dataset directory (manifest_version 2):

    shard-00000.tar ...          WebDataset shards; a bucket bigger than --shard_size_mb is split: shard-00000_01.tar
    index/shard-00000.parquet    the index rows of shard-00000.tar, sorted by key; one file per shard, written by the
                                 shard's writer, so the whole index is never held by one worker. The directory reads
                                 as one table: pyarrow.parquet.read_table("DATASET/index") or `read_index`.
    rejected.parquet             every input that did not make it, with stage, kind and reason
    shards.txt                   the shard file names, one a line, sorted: shard numbers have gaps (a hash bucket
                                 can be empty, a full one is split), so brace patterns cannot enumerate them
    manifest.json                counts, hours, per-shard sha256/size, statistics (merged from per-shard summaries)

Schemas and file names here, and the one set of readers (`read_index`, `read_index_rows`, `read_rejected`,
`read_manifest`); they open files through schemas/storage.py (Beam's FileSystems), so a dataset path may be local or
a URL (s3:// with the S3 options of `storage.configure` or the AWS_* environment variables, gs://). Writers:
pipeline/manifest.py. Temporary files of a write in progress are hidden (a leading dot), so neither `read_index` nor
pyarrow's dataset discovery reads them.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import storage

INDEX_DIR = "index"
"""The index: a directory of one Parquet file per shard (index_file_name)."""
REJECTED_FILE = "rejected.parquet"
MANIFEST_FILE = "manifest.json"
SHARD_LIST_FILE = "shards.txt"
"""The dataset's shard file names, one a line, sorted (the names of manifest.json's `shards`): what a WebDataset
user reads instead of a brace pattern; `schemas.reader.shard_urls` and the trainer's `--data` accept it too."""
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


PARQUET_COMPRESSION = "zstd"
"""Compression of every table the job writes (index files, rejected.parquet)."""


def parquet_bytes(table: pa.Table) -> bytes:
    """`table` as Parquet file bytes (PARQUET_COMPRESSION)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
    return buf.getvalue().to_pybytes()


def _read_parquet(path: str, schema: pa.Schema, *, missing_ok: bool, **kwargs: Any) -> pa.Table:
    if missing_ok and not storage.exists(path):
        return schema.empty_table() if "columns" not in kwargs else schema.empty_table().select(kwargs["columns"])
    with storage.open_read(path) as f:
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
    index_dir = posixpath.join(dataset.rstrip("/"), INDEX_DIR)
    empty = INDEX_SCHEMA.empty_table() if columns is None else INDEX_SCHEMA.empty_table().select(columns)
    files = index_files(dataset)
    if not files:
        if missing_ok or storage.dir_exists(index_dir):
            return empty  # no index/, or a dataset without samples
        raise FileNotFoundError(f"{index_dir}: no such index directory")
    tables = []
    for path in files:
        with storage.open_read(path) as f:
            tables.append(pq.read_table(f, schema=INDEX_SCHEMA, columns=columns, filters=filters))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.sort_by("key") if "key" in table.column_names else table


def index_files(dataset: str) -> list[str]:
    """The paths of the per-shard index files of `dataset` (index/*.parquet, not temporary or hidden ones), sorted;
    through schemas/storage.py, so on s3:// too."""
    pattern = posixpath.join(dataset.rstrip("/"), INDEX_DIR, "*.parquet")
    return [p for p in storage.list_files(pattern) if not posixpath.basename(p).startswith((".", "_"))]


def read_index_rows(dataset: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The index of `dataset` as one dict per sample, sorted by key."""
    return read_index(dataset, missing_ok=missing_ok).to_pylist()


def read_rejected(dataset: str, *, missing_ok: bool = False) -> pa.Table:
    """rejected.parquet of `dataset`: one row per rejected input (REJECTED_SCHEMA)."""
    return _read_parquet(posixpath.join(dataset, REJECTED_FILE), REJECTED_SCHEMA, missing_ok=missing_ok)


def shard_list_text(names: Any) -> str:
    """SHARD_LIST_FILE's text for shard file names `names`: sorted, one a line, each line ended by a newline."""
    return "".join(f"{name}\n" for name in sorted(names))


def read_shard_list(path: str) -> list[str]:
    """The shard URLs a shard list file names (SHARD_LIST_FILE, or any such file a user writes: one shard a line;
    blank lines and lines starting with # are skipped), in the file's order. A name without a scheme or a leading
    slash is relative to the list's own directory.

    Raises:
        OSError: the file cannot be read. ValueError: it is not UTF-8 text, or a name is not a .tar file.
    """
    try:
        text = storage.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: a shard list must be UTF-8 text, one shard file name a line ({e})") from None
    base = posixpath.dirname(path)
    urls = []
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if not name.endswith(".tar"):
            raise ValueError(f"{path}:{number}: {name[:100]!r} is not a shard (.tar) file name")
        urls.append(name if "://" in name or name.startswith("/") else posixpath.join(base, name))
    return urls


def read_manifest(dataset: str) -> dict[str, Any]:
    """manifest.json of `dataset` (MANIFEST_FIELDS).

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
        ValueError: it is not JSON.
    """
    return storage.read_json(posixpath.join(dataset, MANIFEST_FILE))
