"""Read a written dataset back: samples as numpy or torch arrays, through webdataset, with explicit decoders.

    python -c "from schemas.reader import iter_samples; print(next(iter(iter_samples('demo-out/dataset')))['__key__'])"

Members are decoded one by one with the decoders of the sample record (schemas/sample.py: MEMBERS), so a partial
sample (e.g. the trainer's synthetic one, without meta) reads too; `schemas.validate` checks whole samples with
`MicroTurnSample.from_members`. Nothing is ever unpickled: .npy members are loaded with allow_pickle=False, JSON with
json, FLAC with soundfile.
A dataset on S3 (``s3://bucket/prefix``) is read the same way: importing this module lets webdataset open s3://
shards through Beam's FileSystems (schemas.storage; S3 options from its flags or the AWS_* environment variables).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np
import webdataset as wds

from schemas import storage
from schemas.frames import decode_frames, patchify
from schemas.sample import decode_member  # the reader's public per-member decoder
from schemas.shard import decode_array
from schemas.tables import read_manifest, read_shard_list

storage.register_webdataset_schemes()  # s3:// shards stream through Beam's FileSystems (here and in loader workers)


def decode_sample(raw: dict[str, Any], *, as_torch: bool = False, patches: bool = False) -> dict[str, Any]:
    """A raw webdataset sample ({'__key__', 'meta.json': bytes, ...}) -> decoded arrays and objects.

    With video, adds ``frames`` (uint8 (W, H, W_px, 3), black where masked) and ``frame_mask`` (uint8 (W,)); with
    `patches`, ``frames`` is (W, H/40, W_px/40, 40, 40, 3) instead (schemas.frames.patchify)."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name.startswith("__"):
            out[name] = value
            continue
        decoded = decode_member(name, value)
        if as_torch and isinstance(decoded, np.ndarray):
            import torch

            decoded = torch.from_numpy(decoded.copy() if not decoded.flags.writeable else decoded)
        out[name] = decoded
    if "frames.mjpeg" in raw and "frames.index.npy" in raw:
        index = decode_array(raw["frames.index.npy"])
        if index[:, 1].any():
            frames, mask = decode_frames(raw["frames.mjpeg"], index)
            out["frames"] = patchify(frames) if patches else frames
            out["frame_mask"] = mask
        if as_torch:
            import torch

            for name in ("frames", "frame_mask"):
                if name in out:
                    out[name] = torch.from_numpy(out[name])
    return out


def shard_urls(dataset: str) -> list[str]:
    """The shard paths of a dataset (a local directory or an s3:// prefix), from its manifest, in name order; or,
    for a shard list file (a path ending in .txt: the dataset's shards.txt, or a subset of it written by hand), the
    shards it names (schemas.tables.read_shard_list)."""
    if dataset.endswith(".txt"):
        return read_shard_list(dataset)
    manifest = read_manifest(dataset)
    return [posixpath.join(dataset, s["name"]) for s in manifest["shards"]]


def dataset(
    dataset_dir: str, *, as_torch: bool = False, shardshuffle: bool | int = False, patches: bool = False
) -> wds.WebDataset:
    """A webdataset pipeline over the dataset's shards yielding decoded samples (errors are re-raised)."""
    urls = shard_urls(dataset_dir)
    if not urls:
        raise ValueError(f"{dataset_dir}: the manifest lists no shards (nothing was written)")
    return wds.WebDataset(urls, shardshuffle=shardshuffle, handler=wds.reraise_exception, empty_check=False).map(
        lambda raw: decode_sample(raw, as_torch=as_torch, patches=patches)
    )


def iter_samples(dataset_dir: str, *, as_torch: bool = False, patches: bool = False) -> Iterator[dict[str, Any]]:
    """Every sample of the dataset, shard by shard in file order."""
    yield from dataset(dataset_dir, as_torch=as_torch, patches=patches)
