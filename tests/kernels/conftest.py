"""Shared fixtures for the kernel tests; without CUDA the Triton kernels run in the interpreter on CPU tensors.

python -m pytest -q tests/kernels
"""

import os

import torch

# Must happen before any `kernels` module is imported: triton.jit picks interpreter or compiler at decoration time.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from kernels import batch_invariant, moe  # noqa: E402


@pytest.fixture
def dot_row_invariant(device) -> None:
    """Skips a bitwise batch-invariance test where it cannot hold in the interpreter: the Triton interpreter runs
    `tl.dot` as numpy's matmul, and numpy's float32 matmul on some CPUs (OpenBLAS's kernel on AMD EPYC) rounds a row
    by its position in the tile (probed at the float32 tile shape, 128 x 32 @ 32 x 128). On CUDA it never skips."""
    import numpy as np

    if device.type != "cpu":
        return
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((128, 32), dtype=np.float32), rng.standard_normal((32, 128), dtype=np.float32)
    perm = rng.permutation(128)
    if not np.array_equal(a[perm] @ b, (a @ b)[perm]):
        pytest.skip(
            "numpy's BLAS on this CPU rounds a matmul row by its position in the tile, and the interpreter's "
            "tl.dot is numpy's matmul: bitwise batch invariance is checked on CUDA and on CPUs where it holds"
        )


@pytest.fixture
def device() -> torch.device:
    """CUDA (compiled kernels) when there is one, else CPU (interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _nan_filled_outputs(monkeypatch):
    """Every launcher output starts as NaN, so an element a kernel forgets to write fails the comparison."""
    monkeypatch.setattr(moe, "FILL_EMPTY_WITH_NAN", True)
    monkeypatch.setattr(batch_invariant, "FILL_EMPTY_WITH_NAN", True)
