"""The loader's decoders of schemas/shard.py against their plain versions: delta-packed codes, .npy members."""

from __future__ import annotations

import io

import numpy as np
import pytest

from schemas.shard import decode_array, pack_codes, unpack_codes


@pytest.mark.parametrize(
    "shape", [(2, 2400, 80), (3, 2, 32, 16), (17, 6), (1, 16, 8), (0, 16, 80), (2, 0, 80), (48, 80), (5, 160, 80)]
)
def test_unpack_codes_inverts_pack_codes(shape) -> None:
    """The 64-bit-lane running sum (T a multiple of 16, C of 8) and the plain one (other shapes) both invert."""
    codes = np.random.default_rng(len(shape)).integers(0, 16, size=shape).astype(np.uint8)
    got = unpack_codes(pack_codes(codes))
    assert got.dtype == np.uint8 and got.shape == codes.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, codes)
    d = np.zeros_like(codes)  # the cumsum the lanes replace, mod 16
    if codes.size:
        d[..., 1:, :] = (codes[..., 1:, :] - codes[..., :-1, :]) & 15
        d[..., 0, :] = codes[..., 0, :]
        np.testing.assert_array_equal(np.cumsum(d, axis=-2, dtype=np.int64) % 16, codes)


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=array.dtype.hasobject)
    return buf.getvalue()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10, dtype=np.int16),
        np.float32([[1.5, 2], [3, 4]]),
        np.asfortranarray(np.arange(15.0).reshape(3, 5)),
        np.zeros((0, 4), np.uint8),
        np.array(3.5),
        np.array(["ab", "c"]),
        np.arange(24, dtype=">i4").reshape(2, 3, 4),
    ],
)
@pytest.mark.parametrize("version", [None, (2, 0)])
def test_decode_array_equals_np_load(array, version) -> None:
    data = _npy(array, version)
    got, want = decode_array(data), np.load(io.BytesIO(data), allow_pickle=False)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.writeable
    assert got.flags.f_contiguous == want.flags.f_contiguous
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an .npy array"),
        (b"junk" * 20, "not an .npy array"),
        (_npy(np.arange(100))[:-8], "header claims"),
        (_npy(np.array([object()], dtype=object)), "object arrays"),
    ],
)
def test_decode_array_refuses_bad_members(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        decode_array(data)
