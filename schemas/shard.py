"""Shard layout: sample keys, member codecs, shard naming (DESIGN.md §5).

    python -c "from schemas.shard import shard_for; print(shard_for('demo-0001', 8))"

The members of a sample and their encoding are the record in schemas/sample.py (`WindowSample.to_members` /
`from_members`), which uses the codecs here: .npy without pickle, canonical JSON, 16-bit FLAC; array and JSON
members compressed one by one with zstd (`.zst`, `compress` / `decompress`), dMel codes packed two per byte after a
per-frame delta (`pack_codes` / `unpack_codes`). The tar itself stays plain (the index's offsets seek) and is
written by webdataset's TarWriter (pipeline/write.py) with fixed member headers.

Why zstd level 5 on delta-packed, channel-major codes. A sweep on the AMI fixture's headset speech (150-micro-turn
windows; MB per stream-hour, CPU stream-hours per second to encode): as stored in v2 (uint8 .npy) 23.0; gzip -6
3.98 (0.7/s), packed 3.73 (1.1/s), delta+packed 3.64 (1.0/s; decodes at ~20/s), delta+packed gzip -3 3.96 (3.7/s);
zstd -6 4.08 (3.1/s); delta+packed zstd -3 3.76 (18/s; decodes at ~65/s), -6 3.71 (5.5/s), -9 3.59 (2.6/s), -15
3.05 (0.4/s). Then on the 1-hour AMI-track dataset (two streams, MB per conversation-hour, CPU s to encode it):
packed zstd -3 8.07, delta+packed -3 7.70, -5 7.35, channel-major delta+packed -3 7.22, -5 6.81 (0.33 s), -7 6.86
(0.49 s); packing frames instead of channels, or a delta across channels, does worse. The job turns that hour into
shards in ~8 s of CPU: gzip -6 (2 s) would slow it by ~25 %, zstd -5 costs ~4 %.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT_VERSION = 3
"""3: a sample is a window with every speaker's streams stored once (the perspective is chosen when it is read),
members compressed with zstd, dMel codes delta-packed; key `{conversation}_{window:05d}`.
2: one sample per window and perspective, plain members; shards sized by --shard_size_mb."""
SHARD_PATTERN = "shard-{index:05d}.tar"
SPLIT_PATTERN = "shard-{index:05d}_{split:02d}.tar"
FIXED_MTIME = 0
"""Member header mtime, so shards are byte-reproducible. An int: tarfile writes a float mtime as an extra PAX header
(~1 KiB) before every member."""


def sample_key(conversation_key: str, window: int) -> str:
    """`{conversation}_{window:05d}`; the id must already be key-safe (no dots)."""
    if "." in conversation_key:
        raise ValueError(f"key parts may not contain dots: {conversation_key!r}")
    return f"{conversation_key}_{window:05d}"


class FormatVersionError(ValueError):
    """A dataset or sample written in another format version; the message says to re-run the job."""


def require_format(manifest: Mapping[str, Any], where: str) -> None:
    """Refuse a dataset whose manifest says another format version (a manifest without one, e.g. a hand-made test
    dataset, passes).

    Raises:
        FormatVersionError: with a one-line message saying to re-run the job.
    """
    version = manifest.get("format_version")
    message = None if version is None else version_problem(version, where)
    if message:
        raise FormatVersionError(message)


def version_problem(version: object, where: str) -> str | None:
    """A one-line message when `version` is not FORMAT_VERSION (None when it is)."""
    if version == FORMAT_VERSION:
        return None
    return (
        f"{where} is in shard format version {version}, this code reads version {FORMAT_VERSION}: re-run "
        "`microturn run` on its inputs to write it in the current format"
    )


ZSTD_LEVEL = 5
"""zstd level of compressed members; chosen by measurement (module docstring, benchmarks/storage.py)."""
COMPRESSED_SUFFIX = ".zst"
"""Suffix of a compressed member: `{key}.{name}.zst`, e.g. `conv_00000.dmel.npy.zst`."""


_ZSTD = threading.local()  # one (de)compressor per thread: making one costs about as much as a member


def compress(data: bytes) -> bytes:
    """zstd frame of `data` at ZSTD_LEVEL, with the content size and no checksum: the same bytes on every run."""
    c = getattr(_ZSTD, "c", None)
    if c is None:
        import zstandard

        c = _ZSTD.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    return c.compress(data)


def decompress(data: bytes) -> bytes:
    import zstandard

    d = getattr(_ZSTD, "d", None)
    if d is None:
        d = _ZSTD.d = zstandard.ZstdDecompressor()
    try:
        return d.decompress(data)
    except zstandard.ZstdError as e:
        raise ValueError(f"not a zstd frame: {e}") from None


def wds_zstd(key: str, data: bytes) -> Any:
    """A webdataset pre-handler for `.zst` members (as its own gzfilter does for `.gz`), for readers that use plain
    webdataset: ``wds.WebDataset(urls).decode(wds_zstd, 'rgb')`` (README)."""
    import webdataset as wds

    if not key.endswith(COMPRESSED_SUFFIX):
        return None
    return wds.autodecode.Continue(key[: -len(COMPRESSED_SUFFIX)], decompress(data))


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """4-bit codes (..., T, C) uint8 (C even) -> (..., C/2, T) uint8: each frame minus the frame before (mod 16;
    the first frame as it is), two codes per byte (even channel in the high nibble), channel-pair major (each
    pair's T frames contiguous). `unpack_codes` inverts it."""
    x = np.asarray(codes, dtype=np.uint8)
    d = x.copy()
    d[..., 1:, :] -= x[..., :-1, :]
    d &= 15
    return np.ascontiguousarray(np.swapaxes((d[..., 0::2] << 4) | d[..., 1::2], -1, -2))


_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)


def unpack_codes(packed: np.ndarray) -> np.ndarray:
    """Inverse of `pack_codes`: (..., C/2, T) uint8 -> (..., T, C) uint8 codes 0..15.

    The running sum over frames is the decoder's cost. When T is a multiple of 16 and C of 8 (dMel: T = W * 16,
    C = 80) it runs on 8 codes at once: in 64-bit lanes of 8 one-byte codes, a sum of 16 frames (<= 240) never
    carries out of its byte, so each 16-frame block is summed lane-wise, cut to 4 bits, and the blocks' running
    offsets are added after (2.3x faster than a uint8 cumsum; the same result, tested)."""
    p = np.asarray(packed, dtype=np.uint8)
    lead, half, t = p.shape[:-2], p.shape[-2], p.shape[-1]
    d = np.empty((*lead, t, half, 2), dtype=np.uint8)  # (..., T, C/2, 2) = (..., T, C), frame-major
    pt = np.swapaxes(p, -1, -2)
    np.right_shift(pt, 4, out=d[..., 0])
    np.bitwise_and(pt, 15, out=d[..., 1])
    c = 2 * half
    if t % 16 or c % 8:
        np.cumsum(d.reshape(*lead, t, c), axis=-2, dtype=np.uint8, out=d.reshape(*lead, t, c))
    else:
        blocks = d.reshape(*lead, t // 16, 16, c)
        lanes = blocks.view(np.uint64)  # (..., T/16, 16, C/8)
        np.add.accumulate(lanes, axis=-2, out=lanes)
        lanes &= _NIBBLES
        offset = np.add.accumulate(blocks[..., -1, :], axis=-2, dtype=np.uint8)  # mod 256, so mod 16 too
        blocks[..., 1:, :, :] += offset[..., :-1, None, :]
    d &= 15
    return d.reshape(*lead, t, c)


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
    """An .npy member's array (a writable copy, as np.load gives); ValueError when its header is malformed, holds
    objects (never unpickled), or claims more bytes than the member has (a huge shape must not allocate memory
    before failing). Headers are parsed by numpy once per distinct header (members of a dataset share a few)."""
    start = 10 if data[6:7] == b"\x01" else 12
    size = int.from_bytes(data[8:start], "little") if len(data) >= start else 0
    try:
        shape, fortran_order, dtype = _npy_header(bytes(data[: start + size]))
    except Exception as e:  # noqa: BLE001 - any malformed header
        raise ValueError(f"not an .npy array: {e}") from None
    if dtype.hasobject:
        raise ValueError("not an .npy array of numbers: object arrays are never loaded (allow_pickle=False)")
    count = math.prod(shape)
    need = count * dtype.itemsize
    if need > len(data) - start - size:
        raise ValueError(f".npy header claims shape {shape} ({need} bytes) but the member has {len(data)} bytes")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=start + size).copy()
    return flat.reshape(shape[::-1]).transpose() if fortran_order else flat.reshape(shape)


@functools.lru_cache(maxsize=512)
def _npy_header(head: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an .npy header (magic, version, length, dict), by numpy's own reader."""
    f = io.BytesIO(head)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(f)
    if f.tell() != len(head):
        raise ValueError("the header is not where its length says")
    return tuple(int(n) for n in shape), bool(fortran_order), dtype


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
