"""Triton MoE experts against the PyTorch reference: values, every gradient, batch invariance, determinism.

    python -m pytest -q tests/kernels/test_kernels_moe.py

Small fp32 shapes (T tokens, D=32, F=64, E=4) so the Triton interpreter keeps each test to a few seconds on CPU.
"""

import pytest
import torch

from kernels import moe, reference

D, F, E = 32, 64, 4
ATOL = 1e-4
# The Triton interpreter converts 1-element arrays to loop bounds; numpy >= 1.25 warns on every launch.
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")
# Uneven expert loads and one expert (the last) that never receives a token.
EXPERT_PROBS = (0.6, 0.3, 0.1, 0.0)


def make_moe_inputs(num_tokens: int, top_k: int, device, seed: int = 0, requires_grad: bool = True):
    gen = torch.Generator().manual_seed(seed)
    x_TD = torch.randn(num_tokens, D, generator=gen)
    probs_TE = torch.tensor(EXPERT_PROBS).expand(num_tokens, E)
    topk_idx_TK = torch.multinomial(probs_TE, top_k, replacement=False, generator=gen)
    topk_weight_TK = torch.rand(num_tokens, top_k, generator=gen).softmax(dim=-1)
    w1_EFD = torch.randn(E, F, D, generator=gen) / D**0.5
    w2_EDF = torch.randn(E, D, F, generator=gen) / F**0.5
    w3_EFD = torch.randn(E, F, D, generator=gen) / D**0.5
    tensors = [t.to(device) for t in (x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD)]
    if requires_grad:
        for i in (0, 2, 3, 4, 5):
            tensors[i].requires_grad_(True)
    return tensors


def forward_backward(fn, inputs, seed: int = 1):
    """Returns the output and the gradients of (x, topk_weight, w1, w2, w3) for a fixed upstream gradient."""
    y_TD = fn(*inputs)
    dy_TD = torch.randn(y_TD.shape, generator=torch.Generator().manual_seed(seed)).to(y_TD.device)
    differentiable = [inputs[i] for i in (0, 2, 3, 4, 5)]
    return y_TD.detach(), torch.autograd.grad(y_TD, differentiable, dy_TD)


def assert_within(actual, expected, name):
    assert not torch.isnan(actual).any(), f"{name}: NaN (an output element was never written)"
    err = (actual - expected).abs().max().item()
    assert err <= ATOL, f"{name}: max abs error {err:.3g} > {ATOL}"


GRAD_NAMES = ("d_x", "d_topk_weight", "d_w1", "d_w2", "d_w3")


@pytest.mark.parametrize("num_tokens", [63, 100])
@pytest.mark.parametrize("top_k", [1, 2])
def test_triton_matches_reference(num_tokens, top_k, device):
    inputs = make_moe_inputs(num_tokens, top_k, device)
    counts = torch.bincount(inputs[1].flatten(), minlength=E)
    assert counts[-1] == 0 and len(set(counts.tolist())) == E  # uneven loads, one empty expert
    y_ref, grads_ref = forward_backward(reference.moe_ffn_loop, inputs)
    y, grads = forward_backward(moe.moe_ffn, inputs)
    assert_within(y, y_ref, "y")
    for name, g, g_ref in zip(GRAD_NAMES, grads, grads_ref, strict=True):
        assert_within(g, g_ref, name)
    assert torch.all(grads[3][-1] == 0), "the empty expert's w2 gradient must be written as zeros"


@pytest.mark.parametrize("top_k", [1, 2])
def test_grouped_torch_matches_reference(top_k, device):
    inputs = make_moe_inputs(100, top_k, device)
    y_ref, grads_ref = forward_backward(reference.moe_ffn_loop, inputs)
    y, grads = forward_backward(reference.moe_ffn_grouped, inputs)
    assert_within(y, y_ref, "y")
    for name, g, g_ref in zip(GRAD_NAMES, grads, grads_ref, strict=True):
        assert_within(g, g_ref, name)


def test_prepare_routes_sorts_stably_and_tiles_each_expert(device):
    topk_idx_TK = torch.tensor([[2, 0], [0, 2], [2, 1], [0, 2], [2, 0]], device=device)
    routes = moe.prepare_routes(topk_idx_TK, num_experts=4, block_m=2)
    assert routes.offsets_E1.tolist() == [0, 4, 5, 10, 10]
    assert routes.counts_E.tolist() == [4, 1, 5, 0]
    # Expert 0's routes in token order, then expert 1, then expert 2; flat route index = t * K + k.
    assert routes.order_R.tolist() == [1, 2, 6, 9, 5, 0, 3, 4, 7, 8]
    assert routes.token_R.tolist() == [0, 1, 3, 4, 2, 0, 1, 2, 3, 4]
    flat = torch.arange(10, device=device)
    assert torch.equal(routes.order_R[routes.rank_TK.flatten()], flat)
    # Blocks of <= 2 rows, never straddling experts; the rest of the upper-bound table is empty.
    used = routes.block_end_B > routes.block_start_B
    spans = list(
        zip(
            routes.block_expert_B[used].tolist(),
            routes.block_start_B[used].tolist(),
            routes.block_end_B[used].tolist(),
            strict=True,
        )
    )
    assert spans == [(0, 0, 2), (0, 2, 4), (1, 4, 5), (2, 5, 7), (2, 7, 9), (2, 9, 10)]
    assert routes.block_expert_B.numel() >= len(spans)


def test_batch_invariant_forward(device, dot_row_invariant):
    """A token's output is bitwise the same alone, in a batch, and wherever the batch puts it."""
    x_TD, idx_TK, weight_TK, w1, w2, w3 = make_moe_inputs(63, 2, device, requires_grad=False)
    y_TD = moe.moe_ffn(x_TD, idx_TK, weight_TK, w1, w2, w3)
    y_first = moe.moe_ffn(x_TD[:1], idx_TK[:1], weight_TK[:1], w1, w2, w3)
    assert torch.equal(y_first, y_TD[:1])
    perm = torch.randperm(63, generator=torch.Generator().manual_seed(3)).to(device)
    y_perm = moe.moe_ffn(x_TD[perm], idx_TK[perm], weight_TK[perm], w1, w2, w3)
    assert torch.equal(y_perm, y_TD[perm])


def test_deterministic_forward_backward(device):
    inputs = make_moe_inputs(100, 2, device)
    runs = [forward_backward(moe.moe_ffn, inputs) for _ in range(3)]
    for y, grads in runs[1:]:
        assert torch.equal(y, runs[0][0])
        for name, g, g0 in zip(GRAD_NAMES, grads, runs[0][1], strict=True):
            assert torch.equal(g, g0), f"{name} differs between runs"


def test_launcher_rejects_bad_inputs(device):
    x_TD, idx_TK, weight_TK, w1, w2, w3 = make_moe_inputs(8, 2, device, requires_grad=False)
    with pytest.raises(ValueError, match="w2_EDF must be"):
        moe.moe_ffn(x_TD, idx_TK, weight_TK, w1, w2.transpose(1, 2), w3)
    with pytest.raises(ValueError, match="topk_weight_TK shape"):
        moe.moe_ffn(x_TD, idx_TK, weight_TK[:, :1], w1, w2, w3)
    with pytest.raises(ValueError, match="dtype"):
        moe.moe_ffn(x_TD.double(), idx_TK, weight_TK, w1, w2, w3)
    with pytest.raises(ValueError, match="x_TD must be"):
        moe.moe_ffn(x_TD[None], idx_TK, weight_TK, w1, w2, w3)
    with pytest.raises(ValueError, match="int32 or int64"):
        moe.prepare_routes(idx_TK.float(), num_experts=E)
