"""Read a written dataset back: samples as numpy or torch arrays, through webdataset, with explicit decoders.

    python -c "from schemas.reader import iter_samples; print(next(iter(iter_samples('demo-out/dataset')))['__key__'])"

A stored sample is one window with every speaker's streams once (format 3, schemas/sample.py WindowSample); the
reader decompresses and decodes its members once and yields it from each perspective (who plays the model) as the
format-2 members (`input.dmel.npy`, `labels.npy`, ...): `decode_sample` one perspective, `decode_samples` all of
them. `schemas.validate` checks whole samples with `WindowSample.from_members`. A dataset in another format
version is refused with a `FormatVersionError` that says to re-run the job.

Plain webdataset reads every member too, with the zstd pre-handler of schemas/shard.py (its `.gz` twin is
built in)::

    wds.WebDataset(urls).decode(wds_zstd)   # 'dmel.npy' -> (S, W, 16, 40) packed codes: shard.unpack_codes
 Nothing is ever unpickled: .npy members are loaded with allow_pickle=False, JSON with
json, FLAC with soundfile.
A dataset on S3 (``s3://bucket/prefix``) is read the same way: importing this module lets webdataset open s3://
shards through Beam's FileSystems (schemas.storage; S3 options from its flags or the AWS_* environment variables).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import webdataset as wds

from schemas import storage
from schemas.frames import decode_frames, patchify
from schemas.sample import decode_window_members, perspective_members
from schemas.shard import require_format, wds_zstd  # noqa: F401 - wds_zstd: documented here
from schemas.tables import read_manifest, read_shard_list

storage.register_webdataset_schemes()  # s3:// shards stream through Beam's FileSystems (here and in loader workers)


def decode_window(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A raw webdataset sample of a stored window ({'__key__', 'meta.json.zst': bytes, ...}) -> its decoded members
    by plain name (dMel unpacked to codes; schemas.sample.decode_window_members).

    Raises:
        FormatVersionError: a sample of another format version (a one-line message saying to re-run the job).
        ValueError: a member that does not decode (names it).
    """
    decoded = decode_window_members({k: v for k, v in raw.items() if not k.startswith("__")})
    problems = [p for p in decoded.pop("__problems__") if not p.startswith("missing member")]
    if problems:
        raise ValueError(f"sample {raw.get('__key__')!r}: " + "; ".join(problems))
    return decoded


def perspectives_of(window: Mapping[str, Any]) -> list[str]:
    """The perspectives (key-safe ids of the speakers playing the model) of a decoded window, in stored order."""
    return [p["perspective"] for p in window["meta.json"]["perspectives"]]


def decode_sample(
    raw: Mapping[str, Any],
    *,
    perspective: str | None = None,
    as_torch: bool = False,
    patches: bool = False,
) -> dict[str, Any]:
    """A raw webdataset sample (one stored window) seen from one perspective (default: its first) -> the decoded
    format-2 members: 'meta.json' (dict, with 'perspective'), 'input.dmel.npy' (W, 16, 80) uint8, 'labels.npy', ...

    With video, adds ``frames`` (uint8 (W, H, W_px, 3), black where masked) and ``frame_mask`` (uint8 (W,)); with
    `patches`, ``frames`` is (W, H/40, W_px/40, 40, 40, 3) instead (schemas.frames.patchify)."""
    window = decode_window(raw)
    names = perspectives_of(window)
    if perspective is not None and perspective not in names:
        raise ValueError(f"sample {raw.get('__key__')!r} has no perspective {perspective!r}; it has {names}")
    p = 0 if perspective is None else names.index(perspective)
    return _view(raw, window, p, as_torch=as_torch, patches=patches)


def decode_samples(raw: Mapping[str, Any], *, as_torch: bool = False, patches: bool = False) -> list[dict[str, Any]]:
    """Every perspective of a raw stored window, decoded as `decode_sample` does (the window is decoded once)."""
    window = decode_window(raw)
    return [_view(raw, window, p, as_torch=as_torch, patches=patches) for p in range(len(perspectives_of(window)))]


def _view(raw: Mapping[str, Any], window: Mapping[str, Any], p: int, *, as_torch: bool, patches: bool) -> dict:
    out: dict[str, Any] = {k: v for k, v in raw.items() if k.startswith("__")}
    out.update(perspective_members(window, p))
    if "frames.mjpeg" in window and "frames.index.npy" in window:
        index = window["frames.index.npy"]
        if index[:, 1].any():
            frames, mask = decode_frames(window["frames.mjpeg"], index)
            out["frames"] = patchify(frames) if patches else frames
            out["frame_mask"] = mask
    if as_torch:
        import torch

        for name, value in list(out.items()):
            if isinstance(value, np.ndarray):
                out[name] = torch.from_numpy(np.ascontiguousarray(value).copy())
    return out


def check_version(dataset: str) -> None:
    """Refuse a dataset written in another shard format (its manifest's format_version).

    Raises:
        FormatVersionError: with a one-line message saying to re-run the job.
    """
    require_format(read_manifest(dataset), dataset)


def shard_urls(dataset: str) -> list[str]:
    """The shard paths of a dataset (a local directory or an s3:// prefix), from its manifest, in name order; or,
    for a shard list file (a path ending in .txt: the dataset's shards.txt, or a subset of it written by hand), the
    shards it names (schemas.tables.read_shard_list).

    Raises:
        FormatVersionError: the manifest says another format version (re-run the job).
    """
    if dataset.endswith(".txt"):
        return read_shard_list(dataset)
    check_version(dataset)
    manifest = read_manifest(dataset)
    return [posixpath.join(dataset, s["name"]) for s in manifest["shards"]]


def dataset(
    dataset_dir: str, *, as_torch: bool = False, shardshuffle: bool | int = False, patches: bool = False
) -> wds.WebDataset:
    """A webdataset pipeline over the dataset's shards yielding decoded samples, one per (window, perspective)
    (errors are re-raised)."""
    urls = shard_urls(dataset_dir)
    if not urls:
        raise ValueError(f"{dataset_dir}: the manifest lists no shards (nothing was written)")

    def views(source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for raw in source:
            yield from decode_samples(raw, as_torch=as_torch, patches=patches)

    return wds.WebDataset(urls, shardshuffle=shardshuffle, handler=wds.reraise_exception, empty_check=False).compose(
        views
    )


def iter_samples(dataset_dir: str, *, as_torch: bool = False, patches: bool = False) -> Iterator[dict[str, Any]]:
    """Every sample of the dataset (one per window and perspective), shard by shard in file order."""
    yield from dataset(dataset_dir, as_torch=as_torch, patches=patches)
