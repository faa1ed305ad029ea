"""Batch-invariant matmul, RMSNorm and log-softmax against their PyTorch references.

    python -m pytest -q tests/kernels/test_kernels_batch_invariant.py

Checks values and every gradient (1e-4 from the float64 reference: the float32 one is itself up to 1e-4 off in
log-softmax's gradient, a sum over 5,000 columns, on some CPUs), bitwise batch invariance (a row alone == the same
row in a batch, and permuting rows permutes outputs; matmul's where the interpreter allows it, conftest.py
dot_row_invariant), determinism over three forward+backward passes, and the mode switch.
"""

import pytest
import torch

from kernels import batch_invariant as bi
from kernels import reference

ATOL = 1e-4
# The Triton interpreter converts 1-element arrays to loop bounds; numpy >= 1.25 warns on every launch.
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")


def _randn(*shape, seed, device, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(device).requires_grad_(True)


def make_case(op: str, rows: int, device):
    """Returns (kernel fn, reference fn, inputs); the first input is the batched one."""
    if op == "matmul":
        return (
            bi.matmul,
            reference.matmul,
            [_randn(rows, 40, seed=0, device=device, scale=40**-0.5), _randn(40, 33, seed=1, device=device)],
        )
    if op == "rms_norm":
        return (
            bi.rms_norm,
            reference.rms_norm,
            [_randn(rows, 48, seed=0, device=device), _randn(48, seed=1, device=device)],
        )
    if op == "log_softmax":
        # 5000 > LOG_SOFTMAX_BLOCK_V: the chunk loop runs twice, the second chunk partly masked.
        return bi.log_softmax, reference.log_softmax, [_randn(rows, 5000, seed=0, device=device, scale=3.0)]
    raise AssertionError(op)


OPS = ["matmul", "rms_norm", "log_softmax"]


def forward_backward(fn, inputs, seed=2):
    y = fn(*inputs)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(device=y.device, dtype=y.dtype)
    return y.detach(), torch.autograd.grad(y, inputs, dy)


def assert_within(actual, expected, name):
    assert not torch.isnan(actual).any(), f"{name}: NaN (an output element was never written)"
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= ATOL, f"{name}: max abs error {err:.3g} > {ATOL}"


@pytest.mark.parametrize("rows", [63, 100])
@pytest.mark.parametrize("op", OPS)
def test_matches_reference(op, rows, device):
    fn, ref_fn, inputs = make_case(op, rows, device)
    exact = [x.detach().double().requires_grad_(True) for x in inputs]  # the same values, summed without fp32 loss
    y_ref, grads_ref = forward_backward(ref_fn, exact)
    y, grads = forward_backward(fn, inputs)
    assert_within(y, y_ref, f"{op} y")
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref, strict=True)):
        assert_within(g, g_ref, f"{op} grad {i}")


def test_matmul_leading_dims_and_linear(device):
    x = _randn(2, 50, 40, seed=0, device=device, scale=40**-0.5)
    w_NC = _randn(24, 40, seed=1, device=device)
    y_ref, grads_ref = forward_backward(torch.nn.functional.linear, [x, w_NC])
    y, grads = forward_backward(bi.linear, [x, w_NC])
    assert y.shape == (2, 50, 24)
    assert_within(y, y_ref, "linear y")
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref, strict=True)):
        assert_within(g, g_ref, f"linear grad {i}")


@pytest.mark.parametrize("op", OPS)
def test_batch_invariant(op, device, request):
    if op == "matmul":
        request.getfixturevalue("dot_row_invariant")  # skips where the interpreter's tl.dot cannot be invariant
    fn, _, inputs = make_case(op, 100, device)
    with torch.no_grad():
        x, rest = inputs[0], inputs[1:]
        y = fn(x, *rest)
        assert torch.equal(fn(x[:1], *rest), y[:1]), f"{op}: row 0 alone differs from row 0 in the batch"
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(3)).to(device)
        assert torch.equal(fn(x[perm], *rest), y[perm]), f"{op}: permuting the batch changed values"


@pytest.mark.parametrize("op", OPS)
def test_deterministic(op, device):
    fn, _, inputs = make_case(op, 63, device)
    runs = [forward_backward(fn, inputs) for _ in range(3)]
    for y, grads in runs[1:]:
        assert torch.equal(y, runs[0][0])
        for g, g0 in zip(grads, runs[0][1], strict=True):
            assert torch.equal(g, g0)


def test_mode_switch_nests_and_restores():
    assert not bi.is_enabled()
    with bi.batch_invariant_mode():
        assert bi.is_enabled()
        with bi.batch_invariant_mode(enabled=False):
            assert not bi.is_enabled()
        assert bi.is_enabled()
    assert not bi.is_enabled()
    with pytest.raises(RuntimeError), bi.batch_invariant_mode():
        raise RuntimeError("boom")
    assert not bi.is_enabled()


def test_launchers_reject_bad_inputs(device):
    a = torch.randn(4, 8, device=device)
    with pytest.raises(ValueError, match="contraction mismatch"):
        bi.matmul(a, torch.randn(7, 3, device=device))
    with pytest.raises(ValueError, match="dtype mismatch"):
        bi.matmul(a, torch.randn(8, 3, device=device, dtype=torch.float64))
    with pytest.raises(ValueError, match="weight must be"):
        bi.rms_norm(a, torch.randn(5, device=device))
    with pytest.raises(ValueError, match="only the last dim"):
        bi.log_softmax(a, dim=0)
