"""Mixture-of-experts feed-forward: fp32 router, dropless top-k, SwiGLU experts behind a switch of implementations.

    python -m pytest -q tests/trainer/test_moe.py

Legend: T tokens, D model dim, E experts, F ffn dim, K top-k slots per token, R = T * K routes.
Every implementation in MOE_IMPLS takes ``(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD) -> y_TD``
(torchtitan's w1, w2, w3 order, the same as `kernels.reference` and `kernels.moe`) and computes
``y[t] = sum_k weight[t, k] * w2[e] @ (silu(w1[e] @ x[t]) * (w3[e] @ x[t]))`` with ``e = topk_idx[t, k]``.

- `loop`: one masked pass per expert, results added with index_add.
- `grouped`: routes sorted by expert (stable), one matmul per contiguous expert slice, then a fixed-order combine
  over the K slots (no scatter_add), so the result does not depend on atomics.
- `triton`: `kernels.moe.moe_ffn` (CUDA), registered when that module imports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kernels.reference import moe_ffn_grouped, moe_ffn_loop

logger = logging.getLogger(__name__)

MoEFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


moe_loop = moe_ffn_loop
"""Per-expert masked loop (kernels/reference.py)."""
moe_grouped = moe_ffn_grouped
"""Sort routes by expert, per-expert matmuls on contiguous slices, fixed-order combine over K (kernels/reference.py)."""

MOE_IMPLS: dict[str, MoEFn] = {"loop": moe_loop, "grouped": moe_grouped}
"""Name -> implementation; `--moe-impl` picks one."""

try:  # the Triton kernels (kernels/moe.py); absent or broken -> the PyTorch paths only
    from kernels.moe import moe_ffn as _triton_moe_ffn

    MOE_IMPLS["triton"] = _triton_moe_ffn
except ImportError as err:  # e.g. no triton on this platform
    logger.debug("kernels.moe not available (%s): --moe-impl triton disabled", err)


def get_impl(name: str) -> MoEFn:
    if name not in MOE_IMPLS:
        raise ValueError(f"unknown moe impl {name!r}; available here: {sorted(MOE_IMPLS)}")
    return MOE_IMPLS[name]


class MoE(nn.Module):
    """Router (fp32) + top-k + SwiGLU experts. Only the tokens given are routed (callers drop padding first).

    forward(x_TD) -> (y_TD, stats) where stats holds the scalar tensors `aux` (load balance: E * sum_e f_e P_e,
    1.0 when balanced), `z` (mean logsumexp(logits)^2), and detached `load_E` (fraction of routes per expert)
    and `entropy` (mean router entropy per token, nats).
    """

    def __init__(self, dim: int, ffn_dim: int, experts: int, top_k: int, impl: str = "grouped") -> None:
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in 1..experts={experts}, got {top_k}")
        self.top_k, self.experts = top_k, experts
        self.impl = impl
        get_impl(impl)
        self.router = nn.Linear(dim, experts, bias=False, dtype=torch.float32)
        scale_in, scale_out = dim**-0.5, ffn_dim**-0.5
        self.w1_EFD = nn.Parameter(torch.randn(experts, ffn_dim, dim) * scale_in)
        self.w3_EFD = nn.Parameter(torch.randn(experts, ffn_dim, dim) * scale_in)
        self.w2_EDF = nn.Parameter(torch.randn(experts, dim, ffn_dim) * scale_out)

    def route(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        with torch.autocast(device_type=x_TD.device.type, enabled=False):
            logits_TE = F.linear(x_TD.float(), self.router.weight.float())
            probs_TE = logits_TE.softmax(-1)
            weight_TK, idx_TK = probs_TE.topk(self.top_k, dim=-1)
            if self.top_k > 1:
                weight_TK = weight_TK / weight_TK.sum(-1, keepdim=True)
            T = max(x_TD.shape[0], 1)
            load_E = torch.bincount(idx_TK.reshape(-1), minlength=self.experts).float() / (T * self.top_k)
            aux = self.experts * (load_E * probs_TE.mean(0)).sum() if x_TD.shape[0] else logits_TE.sum()
            z = logits_TE.logsumexp(-1).square().mean() if x_TD.shape[0] else logits_TE.sum()
            entropy = -(probs_TE * probs_TE.clamp_min(1e-20).log()).sum(-1).mean() if x_TD.shape[0] else z.detach()
        return idx_TK, weight_TK, {"aux": aux, "z": z, "load_E": load_E.detach(), "entropy": entropy.detach()}

    def forward(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx_TK, weight_TK, stats = self.route(x_TD)
        device = x_TD.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x_TD.dtype
        with torch.autocast(device_type=device, enabled=False):  # one explicit dtype for every implementation
            y_TD = get_impl(self.impl)(
                x_TD.to(dtype),
                idx_TK,
                weight_TK.to(dtype),
                self.w1_EFD.to(dtype),
                self.w2_EDF.to(dtype),
                self.w3_EFD.to(dtype),
            )
        return y_TD.to(x_TD.dtype), stats
