"""Video frames in a sample: one JPEG per micro-turn, and 40x40 patches for the model (DESIGN.md §3).

    python -c "import numpy as np; from schemas.frames import patchify; print(patchify(np.zeros((240, 320, 3))).shape)"

Members: ``frames.mjpeg`` (the window's JPEGs back to back) and ``frames.index.npy`` (int64 (W, 2): byte offset and
length of micro-turn k's JPEG; length 0 = no frame: before the video starts, after it ends, or window padding).
"""

from __future__ import annotations

import io

import numpy as np

PATCH = 40
"""Patch side in pixels; frame sizes are multiples of it."""


def encode_frames(jpegs: list[bytes | None]) -> tuple[bytes, np.ndarray]:
    """Pack per-micro-turn JPEGs (None = no frame) into (mjpeg bytes, (W, 2) int64 offsets/lengths)."""
    index = np.zeros((len(jpegs), 2), dtype=np.int64)
    out = io.BytesIO()
    for k, jpeg in enumerate(jpegs):
        if jpeg:
            index[k] = (out.tell(), len(jpeg))
            out.write(jpeg)
    return out.getvalue(), index


def decode_frames(mjpeg: bytes, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 (W, H, W_px, 3), mask uint8 (W,)); masked micro-turns are black."""
    from PIL import Image

    frames: list[np.ndarray | None] = []
    shape = None
    for offset, length in index:
        if length == 0:
            frames.append(None)
            continue
        img = np.asarray(Image.open(io.BytesIO(mjpeg[offset : offset + length])).convert("RGB"))
        shape = img.shape
        frames.append(img)
    if shape is None:
        raise ValueError("no frame in this sample: the size is unknown (check frames.index.npy before decoding)")
    black = np.zeros(shape, dtype=np.uint8)
    mask = np.array([f is not None for f in frames], dtype=np.uint8)
    return np.stack([black if f is None else f for f in frames]), mask


def patchify(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H/40, W/40, 40, 40, 3): row-major 40x40 patches.

    Raises:
        ValueError: when H or W is not a multiple of 40.
    """
    h, w, c = frame.shape[-3:]
    if h % PATCH or w % PATCH:
        raise ValueError(f"frame size {w}x{h} is not a multiple of {PATCH} in both directions")
    lead = frame.shape[:-3]
    x = frame.reshape(*lead, h // PATCH, PATCH, w // PATCH, PATCH, c)
    return np.moveaxis(x, -4, -3)
