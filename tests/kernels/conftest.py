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
def device() -> torch.device:
    """CUDA (compiled kernels) when there is one, else CPU (interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _nan_filled_outputs(monkeypatch):
    """Every launcher output starts as NaN, so an element a kernel forgets to write fails the comparison."""
    monkeypatch.setattr(moe, "FILL_EMPTY_WITH_NAN", True)
    monkeypatch.setattr(batch_invariant, "FILL_EMPTY_WITH_NAN", True)
