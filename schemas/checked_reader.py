"""Read a dataset that may be damaged or crafted: a truncated shard or a malformed ``meta.json`` is one
`DatasetError` naming the dataset and the shard or sample, never a traceback from deep inside tarfile or a consumer.

    python -c "from schemas.checked_reader import checked_samples as c; print(next(c('demo-out/dataset'))['__key__'])"

The commands that read samples to write something else (`respond`, `eval behaviour`, `export gander`, `inspect`)
read through here; `microturn validate` reports the same damage as violations instead.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Container, Iterable, Iterator
from typing import Any

from schemas import storage
from schemas.reader import iter_samples, join_windows, shard_urls
from schemas.sample import SampleMeta, SampleWord


class DatasetError(ValueError):
    """A dataset that cannot be read as written: the message names the dataset and the shard or sample."""


READ_ERRORS = (tarfile.TarError, zlib.error, EOFError, ValueError, KeyError, TypeError, RuntimeError)
"""What a damaged shard raises while it is read and decoded (tarfile's ReadError, a member that does not decode
(json, numpy, FLAC), webdataset's grouping of members)."""


def check_sample(sample: dict[str, Any], where: str) -> dict[str, Any]:
    """`sample` after checking its ``meta.json`` (and ``words.json``) against the sample record.

    Raises:
        DatasetError: meta.json is missing, not an object, or has a field of the wrong type.
    """
    key = sample.get("__key__", "?")
    try:
        meta = SampleMeta.from_dict(sample["meta.json"])
        _check_types(meta, META_TYPES, "meta.json")
        for w in sample.get("words.json") or ():
            _check_types(SampleWord.from_dict(w), WORD_TYPES, "words.json")
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{where}: sample {key}: malformed meta.json or words.json: {_one_line(e)}") from e
    return sample


META_TYPES: dict[str, type | tuple[type, ...]] = {
    "conversation_id": str,
    "conversation_key": str,
    "perspective": str,
    "window": int,
    "start_microturn": int,
    "num_microturns": int,
    "window_microturns": int,
    "conversation_samples": int,
    "language": str,
    "source": str,
    "licence": str,
}
"""The meta fields that readers of samples use, with their JSON types (ints are never negative)."""
WORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "text": str,
    "stream": str,
    "start_s": (int, float),
    "end_s": (int, float),
    "microturn": int,
}


def _check_types(record: object, types: dict[str, type | tuple[type, ...]], where: str) -> None:
    for name, kind in types.items():
        value = getattr(record, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, kind)
            or (isinstance(value, int) and value < 0 and kind is int)
        ):
            raise ValueError(f"{where}: {name} is {value!r:.60}, expected {getattr(kind, '__name__', 'a number')}")
        if isinstance(value, float) and value != value:
            raise ValueError(f"{where}: {name} is NaN")


COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
"""Leading bytes of compressed files. A shard is a plain tar (members are compressed one by one): a compressed one
is not ours, and decompressing it whole could expand without bound (a tar bomb), so it is refused unread."""


def shard_problem(url: str) -> str | None:
    """Why the shard at `url` is not a plain tar (e.g. ``"gzip-compressed, ..."``), or None when it may be one."""
    with storage.open_read(url) as f:
        head = f.read(8)
    for magic, name in COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            return f"{name}-compressed: microturn shards are plain tars (members compressed one by one); not read"
    return None


def check_shards(dataset: str) -> None:
    """Refuse a dataset with a compressed shard (`shard_problem`) before anything decompresses it.

    Raises:
        DatasetError: naming the shard.
    """
    for url in shard_urls(dataset):
        problem = shard_problem(url)
        if problem:
            raise DatasetError(f"{url}: {problem}")


def checked_samples(dataset: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """`schemas.reader.iter_samples(dataset, **kwargs)`, each sample checked (`check_sample`).

    Raises:
        DatasetError: a shard is compressed (`check_shards`), truncated or corrupt, or a sample's meta.json is
            malformed.
        OSError: a shard is missing or unreadable.
    """
    check_shards(dataset)
    samples = iter_samples(dataset, **kwargs)
    while True:
        try:
            sample = next(samples)
        except StopIteration:
            return
        except DatasetError:
            raise
        except OSError:
            raise
        except READ_ERRORS as e:
            raise DatasetError(f"{dataset}: a shard is truncated or corrupt: {_one_line(e)}") from e
        yield check_sample(sample, dataset)


def _one_line(e: BaseException) -> str:
    first = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    lines = first.strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def iter_conversations(
    dataset_dir: str, *, checked: bool = True, conversation_ids: Container[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every conversation of the dataset from each of its perspectives, joined from its windows (`join_windows`), in
    (conversation_key, perspective) order. The dataset's samples are read (and held) first.

    Args:
        checked: read through checked_samples (a malformed sample: a DatasetError naming
            it); False: plain iter_samples.
        conversation_ids: keep only these conversations (bundle ids as given); None: all.
    """
    if checked:
        samples: Iterable[dict[str, Any]] = checked_samples(dataset_dir)
    else:
        samples = iter_samples(dataset_dir)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sample in samples:
        meta = sample["meta.json"]
        if conversation_ids is not None and meta["conversation_id"] not in conversation_ids:
            continue
        groups.setdefault((meta["conversation_key"], meta["perspective"]), []).append(sample)
    for _, windows in sorted(groups.items(), key=lambda item: item[0]):
        yield join_windows(windows)
