"""schemas/frames.py: per-micro-turn JPEGs packed into one member with an index, and 40x40 patches.

.venv/bin/python -m pytest -q tests/schemas/test_frames.py
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from schemas.frames import PATCH, decode_frames, encode_frames, patchify


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (80, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_frames_pack_back_to_back_and_decode_with_a_mask() -> None:
    red, blue = jpeg((255, 0, 0)), jpeg((0, 0, 255))
    mjpeg, index = encode_frames([None, red, blue, None])
    assert mjpeg == red + blue
    assert index.dtype == np.int64
    np.testing.assert_array_equal(index, [[0, 0], [0, len(red)], [len(red), len(blue)], [0, 0]])
    frames, mask = decode_frames(mjpeg, index)
    assert frames.shape == (4, 40, 80, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(mask, [0, 1, 1, 0])
    assert not frames[0].any() and not frames[3].any()  # no frame: black
    np.testing.assert_allclose(frames[1].reshape(-1, 3).mean(0), [255, 0, 0], atol=3)  # JPEG is lossy
    np.testing.assert_allclose(frames[2].reshape(-1, 3).mean(0), [0, 0, 255], atol=3)


def test_a_sample_without_frames_cannot_be_decoded() -> None:
    mjpeg, index = encode_frames([None, None])
    assert mjpeg == b"" and not index.any()
    with pytest.raises(ValueError, match="no frame in this sample"):
        decode_frames(mjpeg, index)


def test_patchify_cuts_row_major_40x40_patches() -> None:
    frame = np.arange(80 * 120 * 3, dtype=np.int64).reshape(80, 120, 3)
    p = patchify(frame)
    assert PATCH == 40 and p.shape == (2, 3, 40, 40, 3)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(p[i, j], frame[40 * i : 40 * (i + 1), 40 * j : 40 * (j + 1)])
    stacked = patchify(np.stack([frame, frame + 1]))  # leading dims are kept
    assert stacked.shape == (2, 2, 3, 40, 40, 3)
    np.testing.assert_array_equal(stacked[1, 1, 2], frame[40:80, 80:120] + 1)


@pytest.mark.parametrize("shape", [(50, 40, 3), (40, 100, 3)])
def test_patchify_names_a_size_that_is_not_a_multiple_of_40(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=f"frame size {shape[1]}x{shape[0]} is not a multiple of 40"):
        patchify(np.zeros(shape, np.uint8))
