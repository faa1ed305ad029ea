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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import webdataset as wds

from schemas import storage
from schemas.frames import decode_frames, patchify
from schemas.sample import decode_window_members, perspective_members
from schemas.shard import require_format, wds_zstd  # noqa: F401 - wds_zstd: documented here
from schemas.tables import read_manifest, read_shard_list
from schemas.units import SAMPLES_PER_MICROTURN, microturn_start_s

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


JOINED_ARRAYS = ("input.dmel.npy", "output.dmel.npy", "others.dmel.npy", "activity.npy", "labels.npy", "floor.npy")
"""Per-micro-turn members that `join_windows` concatenates (those a sample has)."""
JOINED_AUDIO = ("input.flac", "output.flac", "others.flac")
"""16 kHz audio members (datasets written with --keep_audio) that `join_windows` concatenates."""


def join_windows(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One conversation seen from one perspective, from its windows (decoded samples, in any order): a dict shaped
    like a decoded sample that spans every real micro-turn of the conversation, K = ceil(conversation_samples /
    3200) of them, padding dropped.

    - JOINED_ARRAYS the windows have: concatenated, first axis K;
    - JOINED_AUDIO the windows have: concatenated, K * 3200 samples at 16 kHz (the conversation's own length is
      ``meta.json``'s conversation_samples; past it, zeros);
    - ``frames`` / ``frame_mask`` when the windows have video: K frames;
    - ``mask.npy``: K ones;
    - ``words.json``: every window's words, in window order, with ``microturn`` counted from the conversation's
      first micro-turn and ``start_s`` / ``end_s`` in seconds from the conversation's start;
    - ``events.json``: likewise (``microturn``, ``time_s``), in window order;
    - ``meta.json``: the first window's (its window fields describe that window only).

    Targets are left out: a target that touches several windows is in each, clipped to it.
    """
    if not samples:
        raise ValueError("join_windows needs at least one window")
    samples = sorted(samples, key=lambda s: s["meta.json"]["window"])
    parts: dict[str, list[np.ndarray]] = {}
    words: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for s in samples:
        meta = s["meta.json"]
        n, first = meta["num_microturns"], meta["start_microturn"]
        t0 = microturn_start_s(first)
        for member in JOINED_ARRAYS + ("frames",):
            if member in s:
                parts.setdefault(member, []).append(np.asarray(s[member])[:n])
        if "frames" in s:
            parts.setdefault("frame_mask", []).append(np.asarray(s["frame_mask"], bool)[:n])
        for member in JOINED_AUDIO:
            if member in s:
                parts.setdefault(member, []).append(np.asarray(s[member], np.float32)[: n * SAMPLES_PER_MICROTURN])
        for raw in s.get("words.json", []):
            w: dict[str, Any] = dict(raw)
            w["microturn"] = int(w["microturn"]) + first
            w["start_s"] = float(w["start_s"]) + t0
            w["end_s"] = float(w.get("end_s", w["start_s"])) + t0
            words.append(w)
        for e in s.get("events.json") or []:
            events.append({**e, "microturn": int(e["microturn"]) + first, "time_s": e["time_s"] + t0})
    joined: dict[str, Any] = {member: np.concatenate(arrays) for member, arrays in parts.items()}
    joined["mask.npy"] = np.ones(sum(s["meta.json"]["num_microturns"] for s in samples), np.uint8)
    joined["words.json"] = words
    joined["events.json"] = events
    joined["meta.json"] = samples[0]["meta.json"]
    return joined
