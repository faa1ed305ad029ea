"""Naive PyTorch references for every kernel in `kernels/`; tests and benchmarks compare against these.

    python -m pytest -q tests/kernels

Shape suffixes (torchtitan style): T tokens, D model dim, E experts, F ffn dim, K top-k slots per token,
R = T * K routes, M / N / C matmul rows / columns / contraction, V vocabulary (last dim of log-softmax).

The MoE expert FFN is SwiGLU: for a token x routed to expert e with gate weight g,
``g * w2[e] @ (silu(w1[e] @ x) * (w3[e] @ x))``, summed over the token's K routes. Routing (softmax, top-k) is done
by the caller; every MoE implementation here takes the same arguments:
``moe_ffn(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD) -> y_TD`` (torchtitan's w1, w2, w3 order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def moe_ffn_loop(
    x_TD: torch.Tensor,
    topk_idx_TK: torch.Tensor,
    topk_weight_TK: torch.Tensor,
    w1_EFD: torch.Tensor,
    w2_EDF: torch.Tensor,
    w3_EFD: torch.Tensor,
) -> torch.Tensor:
    """SwiGLU MoE experts, one Python iteration per expert (the reference and the `loop` implementation).

    Args:
        x_TD: token activations, (T, D).
        topk_idx_TK: expert index of each of a token's K routes, (T, K), integers in [0, E).
        topk_weight_TK: gate weight of each route, (T, K).
        w1_EFD: gate projection, (E, F, D).
        w2_EDF: down projection, (E, D, F).
        w3_EFD: up projection, (E, F, D).

    Returns:
        y_TD: sum over routes of gate weight times expert output, (T, D).
    """
    num_experts = w1_EFD.shape[0]
    y_TD = torch.zeros_like(x_TD)
    for e in range(num_experts):
        token_idx, slot_idx = torch.nonzero(topk_idx_TK == e, as_tuple=True)
        if token_idx.numel() == 0:
            continue
        x_ND = x_TD[token_idx]
        h_NF = F.silu(x_ND @ w1_EFD[e].t()) * (x_ND @ w3_EFD[e].t())
        out_ND = (h_NF @ w2_EDF[e].t()) * topk_weight_TK[token_idx, slot_idx, None].to(x_TD.dtype)
        y_TD = y_TD.index_add(0, token_idx, out_ND)
    return y_TD


def moe_ffn_grouped(
    x_TD: torch.Tensor,
    topk_idx_TK: torch.Tensor,
    topk_weight_TK: torch.Tensor,
    w1_EFD: torch.Tensor,
    w2_EDF: torch.Tensor,
    w3_EFD: torch.Tensor,
) -> torch.Tensor:
    """SwiGLU MoE experts in pure PyTorch: routes sorted by expert, one matmul per contiguous expert slice.

    Same arguments and result as `moe_ffn_loop`. The combine sums each token's K routes in slot order
    (no scatter_add), so the result is deterministic; it is not batch-invariant (torch matmuls pick kernels
    by shape), use `kernels.moe.moe_ffn` for that.
    """
    T, K = topk_idx_TK.shape
    num_experts = w1_EFD.shape[0]
    expert_R = topk_idx_TK.reshape(-1)
    _, order_R = torch.sort(expert_R, stable=True)
    counts = torch.bincount(expert_R, minlength=num_experts).tolist()  # host sync: slice bounds
    token_R = order_R // K
    out_parts = []
    start = 0
    for e, count in enumerate(counts):
        x_ND = x_TD[token_R[start : start + count]]
        h_NF = F.silu(x_ND @ w1_EFD[e].t()) * (x_ND @ w3_EFD[e].t())
        out_parts.append(h_NF @ w2_EDF[e].t())
        start += count
    out_sorted_RD = torch.cat(out_parts) if out_parts else x_TD.new_zeros(0, x_TD.shape[1])
    rank_R = torch.empty_like(order_R)
    rank_R[order_R] = torch.arange(order_R.numel(), device=order_R.device)
    out_TKD = out_sorted_RD[rank_R].view(T, K, x_TD.shape[1])
    weight_TK = topk_weight_TK.to(x_TD.dtype)
    y_TD = weight_TK[:, 0, None] * out_TKD[:, 0]
    for k in range(1, K):
        y_TD = y_TD + weight_TK[:, k, None] * out_TKD[:, k]
    return y_TD


# The reference the tests compare against.
moe_ffn = moe_ffn_loop


def matmul(a_MC: torch.Tensor, b_CN: torch.Tensor) -> torch.Tensor:
    """Reference matmul: (..., C) @ (C, N) -> (..., N)."""
    return a_MC @ b_CN


def rms_norm(x_ND: torch.Tensor, weight_D: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Reference RMSNorm over the last dim, computed in float32: x / sqrt(mean(x^2) + eps) * weight."""
    x32 = x_ND.float()
    rstd_N1 = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x32 * rstd_N1 * weight_D.float()).to(x_ND.dtype)


def log_softmax(x_NV: torch.Tensor) -> torch.Tensor:
    """Reference log-softmax over the last dim, computed in float32 (float64 input: in float64)."""
    wide = x_NV if x_NV.dtype == torch.float64 else x_NV.float()
    return torch.log_softmax(wide, dim=-1).to(x_NV.dtype)
