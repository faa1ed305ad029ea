"""Compiled-kernel checks that need a GPU: bf16, larger shapes; skipped without CUDA.

python -m pytest -q -m cuda tests/kernels
"""

import pytest
import torch

from kernels import batch_invariant as bi
from kernels import moe, reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _moe_inputs(T, K, D, F, E, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_TD = torch.randn(T, D, generator=gen)
    # Skewed router: some experts get many tokens, some few.
    logits_TE = torch.randn(T, E, generator=gen) + torch.linspace(2.0, -2.0, E)
    topk_weight_TK, topk_idx_TK = logits_TE.softmax(-1).topk(K, dim=-1)
    w1_EFD = torch.randn(E, F, D, generator=gen) / D**0.5
    w2_EDF = torch.randn(E, D, F, generator=gen) / F**0.5
    w3_EFD = torch.randn(E, F, D, generator=gen) / D**0.5
    out = [x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD]
    return [t.cuda().to(dtype) if t.is_floating_point() else t.cuda() for t in out]


def _fwd_bwd(fn, inputs):
    inputs = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    y = fn(*inputs)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
    grads = torch.autograd.grad(y, [inputs[i] for i in (0, 2, 3, 4, 5)], dy)
    return y.detach(), grads


def _rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("top_k", [1, 2, 8])
def test_moe_bf16_matches_fp32_reference(top_k):
    inputs = _moe_inputs(1000, top_k, 256, 512, 16, torch.bfloat16)
    y, grads = _fwd_bwd(moe.moe_ffn, inputs)
    y_ref, grads_ref = _fwd_bwd(reference.moe_ffn_loop, [t.float() if t.is_floating_point() else t for t in inputs])
    assert _rel_err(y, y_ref) < 2e-2
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert _rel_err(g, g_ref) < 2e-2


def test_moe_bf16_batch_invariant_and_deterministic():
    x_TD, idx_TK, w_TK, w1, w2, w3 = _moe_inputs(4096, 2, 512, 1024, 8, torch.bfloat16)
    y = moe.moe_ffn(x_TD, idx_TK, w_TK, w1, w2, w3)
    assert torch.equal(moe.moe_ffn(x_TD[:1], idx_TK[:1], w_TK[:1], w1, w2, w3), y[:1])
    perm = torch.randperm(4096, device="cuda")
    assert torch.equal(moe.moe_ffn(x_TD[perm], idx_TK[perm], w_TK[perm], w1, w2, w3), y[perm])
    first = _fwd_bwd(moe.moe_ffn, [x_TD, idx_TK, w_TK, w1, w2, w3])
    again = _fwd_bwd(moe.moe_ffn, [x_TD, idx_TK, w_TK, w1, w2, w3])
    assert torch.equal(first[0], again[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], again[1], strict=True))


def test_bf16_matmul_batch_invariant_at_size():
    a = torch.randn(2048, 4096, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(4096, 1024, device="cuda", dtype=torch.bfloat16)
    c = bi.matmul(a, b)
    assert torch.equal(bi.matmul(a[:1], b), c[:1])
    assert torch.equal(bi.matmul(a[:333], b), c[:333])
    assert _rel_err(c, a.float() @ b.float()) < 1e-2


def test_bf16_row_ops_batch_invariant_at_size():
    x = torch.randn(512, 32768, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    h = x[:, :4096].contiguous()
    assert torch.equal(bi.rms_norm(h[:1], w), bi.rms_norm(h, w)[:1])
    assert torch.equal(bi.log_softmax(x[:1]), bi.log_softmax(x)[:1])
    assert _rel_err(bi.log_softmax(x), reference.log_softmax(x.float())) < 1e-2
