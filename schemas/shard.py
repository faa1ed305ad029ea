"""Shard layout: sample keys, member codecs, shard naming (DESIGN.md §5).

    python -c "from schemas.shard import shard_for; print(shard_for('demo-0001', 8))"

The members of a sample and their encoding are the record in schemas/sample.py (`MicroTurnSample.to_members` /
`from_members`), which uses the codecs here: .npy without pickle, canonical JSON, 16-bit FLAC. The tar itself is
written by webdataset's TarWriter (pipeline/write.py) with fixed member headers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT_VERSION = 2
"""2: shards sized by --shard_size_mb (a bucket that overflows is split: shard-NNNNN_SS.tar), index per shard."""
SHARD_PATTERN = "shard-{index:05d}.tar"
SPLIT_PATTERN = "shard-{index:05d}_{split:02d}.tar"
FIXED_MTIME = 0
"""Member header mtime, so shards are byte-reproducible. An int: tarfile writes a float mtime as an extra PAX header
(~1 KiB) before every member."""


def sample_key(conversation_key: str, perspective: str, window: int) -> str:
    """`{conversation}_{perspective}_{window:05d}`; both ids must already be key-safe (no dots)."""
    if "." in conversation_key or "." in perspective:
        raise ValueError(f"key parts may not contain dots: {conversation_key!r}, {perspective!r}")
    return f"{conversation_key}_{perspective}_{window:05d}"


def shard_for(conversation_id: str, num_shards: int) -> int:
    """The shard index of a conversation: a stable hash of its id (not of arrival order)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    digest = hashlib.sha256(conversation_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def shard_name(index: int, split: int = 0) -> str:
    """`shard-NNNNN.tar` for bucket `index`; a bucket split into several shards (pipeline/write.py plan_shards)
    names its further ones `shard-NNNNN_SS.tar` (split SS >= 1), which sort right after it."""
    if split == 0:
        return SHARD_PATTERN.format(index=index)
    return SPLIT_PATTERN.format(index=index, split=split)


def encode_array(array: np.ndarray) -> bytes:
    """.npy bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    """An .npy member's array; ValueError when its header is malformed or claims more bytes than the member has
    (a huge shape must not allocate memory before failing)."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    except Exception as e:  # noqa: BLE001 - any malformed header
        raise ValueError(f"not an .npy array: {e}") from None
    need = math.prod(shape) * dtype.itemsize
    if need > len(data) - f.tell():
        raise ValueError(f".npy header claims shape {shape} ({need} bytes) but the member has {len(data)} bytes")
    f.seek(0)
    return np.load(f, allow_pickle=False)


def encode_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, so equal objects give equal bytes; never NaN or Infinity (not
    standard JSON: a ValueError)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def decode_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


def encode_flac(pcm: np.ndarray, sample_rate_hz: int) -> bytes:
    """16-bit FLAC bytes of mono float PCM in [-1, 1]."""
    import soundfile as sf  # imported here: most readers never need it

    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate_hz, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


MAX_FLAC_SAMPLES = 16_000 * 1200
"""Most samples a FLAC member may decode to (20 minutes at 16 kHz, 77 MB as float32; a window is 30 s by default):
a member is decoded block by block and refused past this, whatever its header claims (a crafted header or stream
must not make a reader allocate gigabytes)."""


def decode_flac(data: bytes, *, max_samples: int = MAX_FLAC_SAMPLES) -> np.ndarray:
    """FLAC bytes -> float32 PCM (n,) in [-1, 1].

    Raises:
        ValueError: the member decodes to more than `max_samples` samples (or is not FLAC).
    """
    import soundfile as sf

    blocks, total = [], 0
    with sf.SoundFile(io.BytesIO(data)) as f:
        while block := len(chunk := f.read(65_536, dtype="float32")):
            total += block
            if total > max_samples:
                raise ValueError(f"FLAC member decodes to more than {max_samples} samples (its header says {f.frames})")
            blocks.append(chunk)
    pcm = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return pcm


def record_fields(cls: type, obj: Mapping[str, Any], where: str, **decoded: Any) -> dict[str, Any]:
    """The constructor arguments of the dataclass `cls` from a JSON object (a sample member's record); `decoded`
    replaces nested values. `where` names the member in the message.

    Raises:
        ValueError: `obj` is not an object, or its keys are not exactly the fields of `cls`.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    missing, unknown = [n for n in names if n not in obj], sorted(set(obj) - set(names))
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    return {n: decoded[n] if n in decoded else obj[n] for n in names}
