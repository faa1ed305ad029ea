"""MoE: the loop and grouped paths agree (outputs and every gradient); one expert with top-1 is a dense FFN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.moe import MOE_IMPLS, MoE, get_impl, moe_grouped, moe_loop


def _inputs(T: int, D: int, E: int, F_: int, K: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=g, requires_grad=True)
    logits = torch.randn(T, E, generator=g)
    w, idx = logits.softmax(-1).topk(K, dim=-1)
    w = w.clone().requires_grad_(True)
    w1 = (torch.randn(E, F_, D, generator=g) * D**-0.5).requires_grad_(True)
    w2 = (torch.randn(E, D, F_, generator=g) * F_**-0.5).requires_grad_(True)
    w3 = (torch.randn(E, F_, D, generator=g) * D**-0.5).requires_grad_(True)
    return x, idx, w, w1, w2, w3


@pytest.mark.parametrize(("T", "D", "E", "F_", "K"), [(63, 32, 4, 48, 2), (100, 16, 8, 24, 3), (7, 8, 16, 8, 1)])
def test_loop_and_grouped_agree_fp32(T, D, E, F_, K):
    results = []
    for fn in (moe_loop, moe_grouped):
        x, idx, w, w1, w2, w3 = _inputs(T, D, E, F_, K)
        y = fn(x, idx, w, w1, w2, w3)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
        y.backward(dy)
        results.append([y.detach(), x.grad, w.grad, w1.grad, w2.grad, w3.grad])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_empty_experts_and_no_tokens():
    x, idx, w, w1, w2, w3 = _inputs(5, 8, 6, 8, 1)
    idx = torch.zeros_like(idx)  # every token on expert 0; experts 1..5 get nothing
    torch.testing.assert_close(moe_loop(x, idx, w, w1, w2, w3), moe_grouped(x, idx, w, w1, w2, w3), rtol=0, atol=1e-6)
    for fn in (moe_loop, moe_grouped):
        assert fn(x[:0], idx[:0], w[:0], w1, w2, w3).shape == (0, 8)


@pytest.mark.parametrize("impl", ["loop", "grouped"])
def test_one_expert_top1_is_dense_ffn_exactly(impl):
    torch.manual_seed(0)
    moe = MoE(dim=16, ffn_dim=40, experts=1, top_k=1, impl=impl)
    x = torch.randn(37, 16)
    y, stats = moe(x)
    w1, w2, w3 = moe.w1_EFD[0], moe.w2_EDF[0], moe.w3_EFD[0]
    dense = F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    assert torch.equal(y, dense)
    assert float(stats["aux"].detach()) == 1.0 and float(stats["entropy"]) == 0.0


def test_router_losses_and_stats():
    torch.manual_seed(0)
    moe = MoE(dim=8, ffn_dim=8, experts=4, top_k=2)
    y, stats = moe(torch.randn(50, 8))
    assert y.shape == (50, 8)
    assert stats["load_E"].shape == (4,) and abs(float(stats["load_E"].sum()) - 1.0) < 1e-6
    assert float(stats["aux"].detach()) >= 0.99  # E * sum f P is 1 at perfect balance, larger otherwise (approximately)
    assert float(stats["z"].detach()) > 0
    (stats["aux"] + stats["z"]).backward()
    assert moe.router.weight.grad is not None and moe.router.weight.dtype == torch.float32


def test_registry_and_bad_name():
    assert {"loop", "grouped"} <= set(MOE_IMPLS)
    with pytest.raises(ValueError, match="unknown moe impl"):
        get_impl("nope")
    with pytest.raises(ValueError, match="top_k"):
        MoE(dim=8, ffn_dim=8, experts=2, top_k=3)


def test_triton_entry_takes_the_same_arguments():
    """`kernels.moe.moe_ffn` plugs in as `--moe-impl triton` (it runs on CUDA; its numerics are tested in kernels/)."""
    import inspect

    if "triton" not in MOE_IMPLS:
        pytest.skip("kernels.moe does not import here")
    names = list(inspect.signature(MOE_IMPLS["triton"]).parameters)
    assert names == list(inspect.signature(moe_grouped).parameters)
