"""SwiGLU MoE experts in Triton: routes sorted by expert, grouped GEMMs that gather token rows inside the kernel.

    TRITON_INTERPRET=1 python -m pytest -q tests/kernels/test_kernels_moe.py    # CPU, interpreter
    python benchmarks/moe_kernels.py                                             # GPU timings

Legend: T tokens, D model dim, E experts, F ffn dim, K top-k slots per token, R = T * K routes (sorted by expert),
B row blocks of the grouped GEMM (each inside one expert). Same maths as `kernels.reference.moe_ffn_loop`:
``y[t] = sum_k weight[t, k] * w2[e] @ (silu(w1[e] @ x[t]) * (w3[e] @ x[t]))`` with ``e = topk_idx[t, k]``.

Forward:
    prepare_routes   stable sort of the T*K routes by expert -> token of each sorted route, per-expert offsets,
                     a table of row blocks (one expert per block). Activations are never copied or padded.
    gate/up GEMM     rows x[token_R] loaded by index in the kernel; w1 and w3 in one pass; SwiGLU in the epilogue.
    down GEMM        a_RF @ w2[e]^T over each expert's contiguous rows.
    combine          y[t] = sum over k = 0..K-1, in that order, of weight[t, k] * o[rank[t, k]] (no scatter_add).
Backward:
    d weight         per route dot(dy[t], o[rank[t, k]]).
    d a, d h1, d h3  transposed grouped GEMM dy[token_R] @ w2[e], scaled by the route weight, SwiGLU backward in the
                     epilogue.
    d w1, d w2, d w3 one program per (expert, tile) loops over that expert's contiguous rows: no atomics.
    d x              transposed grouped GEMMs dh1 @ w1[e] + dh3 @ w3[e], then the fixed-order combine (weights 1).

Every output element is produced by one program with a fixed reduction order that does not depend on which other
tokens are in the batch, so the forward is batch-invariant and forward and backward are deterministic.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import triton
import triton.language as tl

logger = logging.getLogger(__name__)

# Tests set this to True so that every launcher output starts as NaN: a kernel that forgets to write an element
# (e.g. the weight gradient of an expert with no tokens) fails loudly instead of returning stale memory.
FILL_EMPTY_WITH_NAN = False


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


# Not swept: chosen from Triton's H100 matmul tutorial configs; no GPU was available when this was written.
# block_m is also the row-block size of the routing table, so one table serves every grouped GEMM of a call.
GROUPED_CONFIG = GemmConfig(block_m=64, block_n=128, block_k=64, num_warps=4, num_stages=3)
# Weight gradient: block_k is the number of routes reduced per step.
WGRAD_CONFIG = GemmConfig(block_m=64, block_n=128, block_k=64, num_warps=4, num_stages=3)
COMBINE_BLOCK_T = 16
COMBINE_BLOCK_D = 128

_EPILOGUE_PLAIN = 0
_EPILOGUE_SWIGLU_FWD = 1  # two accumulators (w1, w3); store h1, h3 and a = silu(h1) * h3
_EPILOGUE_SWIGLU_BWD = 2  # acc = d a; store d h1 and d h3 given h1, h3
_EPILOGUE_ACCUMULATE = 3  # out += acc


def _empty(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    dtype = dtype or like.dtype
    if FILL_EMPTY_WITH_NAN and dtype.is_floating_point:
        return torch.full(shape, float("nan"), dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


# ---------------------------------------------------------------------------------------------------------------------
# Routing preparation
# ---------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Routes:
    """Routes sorted by expert (stable: within an expert, in token order), and the grouped-GEMM block table.

    Attributes:
        order_R: flat route index t * K + k of each sorted route, int64 (R,).
        token_R: token of each sorted route, int64 (R,).
        rank_TK: sorted position of route (t, k), int64 (T, K), contiguous.
        offsets_E1: expert e owns sorted routes [offsets[e], offsets[e + 1]), int64 (E + 1,).
        block_expert_B, block_start_B, block_end_B: expert and sorted-route range [start, end) of each row block,
            int64 (B,). B is an upper bound; unused blocks have start == end == 0.
        block_m: rows per block.
    """

    order_R: torch.Tensor
    token_R: torch.Tensor
    rank_TK: torch.Tensor
    offsets_E1: torch.Tensor
    block_expert_B: torch.Tensor
    block_start_B: torch.Tensor
    block_end_B: torch.Tensor
    block_m: int

    @property
    def counts_E(self) -> torch.Tensor:
        return self.offsets_E1[1:] - self.offsets_E1[:-1]


def prepare_routes(topk_idx_TK: torch.Tensor, num_experts: int, block_m: int = GROUPED_CONFIG.block_m) -> Routes:
    """Sort the T * K routes by expert and lay out row blocks of `block_m` routes, one expert per block.

    Pure tensor ops on the routes' device, no host synchronisation: the block table has an upper-bound length
    ceil(R / block_m) + E and the kernels skip unused blocks.
    """
    if topk_idx_TK.dim() != 2:
        raise ValueError(f"topk_idx_TK must be (T, K), got shape {tuple(topk_idx_TK.shape)}")
    if topk_idx_TK.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"topk_idx_TK must be int32 or int64, got {topk_idx_TK.dtype}")
    T, K = topk_idx_TK.shape
    device = topk_idx_TK.device
    num_routes = T * K
    expert_R = topk_idx_TK.reshape(-1).to(torch.int64)
    sorted_expert_R, order_R = torch.sort(expert_R, stable=True)
    token_R = torch.div(order_R, K, rounding_mode="floor")
    rank_R = torch.empty_like(order_R)
    rank_R[order_R] = torch.arange(num_routes, device=device)  # inverse of a permutation: no index collisions
    expert_ids_E1 = torch.arange(num_experts + 1, device=device)
    offsets_E1 = torch.searchsorted(sorted_expert_R, expert_ids_E1)

    counts_E = offsets_E1[1:] - offsets_E1[:-1]
    blocks_E = torch.div(counts_E + block_m - 1, block_m, rounding_mode="floor")
    block_end_cum_E = torch.cumsum(blocks_E, dim=0)
    num_blocks = triton.cdiv(num_routes, block_m) + num_experts
    block_ids_B = torch.arange(num_blocks, device=device)
    block_expert_B = torch.searchsorted(block_end_cum_E, block_ids_B, right=True)
    valid_B = block_expert_B < num_experts
    block_expert_B = block_expert_B.clamp(max=num_experts - 1)
    first_block_E = block_end_cum_E - blocks_E
    block_start_B = offsets_E1[block_expert_B] + (block_ids_B - first_block_E[block_expert_B]) * block_m
    block_end_B = torch.minimum(block_start_B + block_m, offsets_E1[block_expert_B + 1])
    zero = torch.zeros((), dtype=torch.int64, device=device)
    return Routes(
        order_R=order_R,
        token_R=token_R,
        rank_TK=rank_R.view(T, K),
        offsets_E1=offsets_E1,
        block_expert_B=block_expert_B,
        block_start_B=torch.where(valid_B, block_start_B, zero),
        block_end_B=torch.where(valid_B, block_end_B, zero),
        block_m=block_m,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------------------


@triton.jit
def _grouped_gemm_kernel(
    a_ptr,
    a_row_ptr,
    b_ptr,
    b2_ptr,
    row_scale_ptr,
    out_ptr,
    out2_ptr,
    out3_ptr,
    aux1_ptr,
    aux2_ptr,
    block_expert_ptr,
    block_start_ptr,
    block_end_ptr,
    N,
    C,
    stride_am,
    stride_ac,
    stride_be,
    stride_bc,
    stride_bn,
    stride_om,
    stride_on,
    GATHER_A: tl.constexpr,
    SCALE_ROWS: tl.constexpr,
    EPILOGUE: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[r, n] = scale[r] * sum_c A[row(r), c] * B[expert(r), c, n] for the rows r of one block (one expert).

    row(r) = a_row[r] when GATHER_A (token rows loaded by index), else r. B is addressed by strides so the same
    kernel runs w[e] and w[e]^T. With EPILOGUE == SWIGLU_FWD a second accumulator uses b2 (w3).
    """
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_b)
    row_start = tl.load(block_start_ptr + pid_b)
    row_end = tl.load(block_end_ptr + pid_b)
    rows = row_start + tl.arange(0, BLOCK_M)
    row_mask = rows < row_end
    if GATHER_A:
        a_rows = tl.load(a_row_ptr + rows, mask=row_mask, other=0)
    else:
        a_rows = rows
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + a_rows[:, None] * stride_am + ks[None, :] * stride_ac
    b_offsets = expert * stride_be + ks[:, None] * stride_bc + cols[None, :] * stride_bn
    b_ptrs = b_ptr + b_offsets
    b2_ptrs = b2_ptr + b_offsets
    # Unused blocks (start == end) skip the reduction entirely.
    c_end = tl.where(row_end > row_start, C, 0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for c0 in range(0, c_end, BLOCK_K):
        c_mask = (c0 + ks) < C
        a = tl.load(a_ptrs, mask=row_mask[:, None] & c_mask[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=c_mask[:, None] & col_mask[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
        if EPILOGUE == 1:
            b2 = tl.load(b2_ptrs, mask=c_mask[:, None] & col_mask[None, :], other=0.0)
            if IEEE:
                acc2 = tl.dot(a, b2, acc2, input_precision="ieee")
            else:
                acc2 = tl.dot(a, b2, acc2)
        a_ptrs += BLOCK_K * stride_ac
        b_ptrs += BLOCK_K * stride_bc
        b2_ptrs += BLOCK_K * stride_bc

    if SCALE_ROWS:
        scale = tl.load(row_scale_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
        acc = acc * scale[:, None]
    out_offsets = rows[:, None] * stride_om + cols[None, :] * stride_on
    out_mask = row_mask[:, None] & col_mask[None, :]
    dtype = out_ptr.dtype.element_ty
    if EPILOGUE == 1:
        h1 = acc.to(dtype)
        h3 = acc2.to(dtype)
        tl.store(out_ptr + out_offsets, h1, mask=out_mask)
        tl.store(out2_ptr + out_offsets, h3, mask=out_mask)
        # SwiGLU from the stored (rounded) values, so the backward sees exactly what the forward used.
        h1f = h1.to(tl.float32)
        act = h1f * tl.sigmoid(h1f) * h3.to(tl.float32)
        tl.store(out3_ptr + out_offsets, act.to(dtype), mask=out_mask)
    elif EPILOGUE == 2:
        h1 = tl.load(aux1_ptr + out_offsets, mask=out_mask, other=0.0).to(tl.float32)
        h3 = tl.load(aux2_ptr + out_offsets, mask=out_mask, other=0.0).to(tl.float32)
        sig = tl.sigmoid(h1)
        d_h3 = acc * h1 * sig
        d_h1 = acc * h3 * sig * (1.0 + h1 * (1.0 - sig))
        tl.store(out_ptr + out_offsets, d_h1.to(dtype), mask=out_mask)
        tl.store(out2_ptr + out_offsets, d_h3.to(dtype), mask=out_mask)
    elif EPILOGUE == 3:
        prev = tl.load(out_ptr + out_offsets, mask=out_mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + out_offsets, (prev + acc).to(dtype), mask=out_mask)
    else:
        tl.store(out_ptr + out_offsets, acc.to(dtype), mask=out_mask)


@triton.jit
def _grouped_wgrad_kernel(
    a_ptr,
    a_row_ptr,
    a_scale_ptr,
    b_ptr,
    b_row_ptr,
    out_ptr,
    offsets_ptr,
    M,
    N,
    stride_ar,
    stride_am,
    stride_br,
    stride_bn,
    stride_oe,
    stride_om,
    stride_on,
    GATHER_A: tl.constexpr,
    SCALE_A: tl.constexpr,
    GATHER_B: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """out[e, m, n] = sum over expert e's sorted routes r, in order, of scale[r] * A[row_a(r), m] * B[row_b(r), n].

    One program owns one (expert, m-tile, n-tile) and loops over the expert's contiguous routes: no atomics, and an
    expert with no routes stores zeros.
    """
    expert = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(2)
    row_start = tl.load(offsets_ptr + expert)
    row_end = tl.load(offsets_ptr + expert + 1)
    ms = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = ms < M
    n_mask = ns < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r0 in range(row_start, row_end, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        r_mask = rows < row_end
        if GATHER_A:
            a_rows = tl.load(a_row_ptr + rows, mask=r_mask, other=0)
        else:
            a_rows = rows
        if GATHER_B:
            b_rows = tl.load(b_row_ptr + rows, mask=r_mask, other=0)
        else:
            b_rows = rows
        a = tl.load(
            a_ptr + a_rows[:, None] * stride_ar + ms[None, :] * stride_am,
            mask=r_mask[:, None] & m_mask[None, :],
            other=0.0,
        )
        if SCALE_A:
            scale = tl.load(a_scale_ptr + rows, mask=r_mask, other=0.0).to(tl.float32)
            a = (a.to(tl.float32) * scale[:, None]).to(b_ptr.dtype.element_ty)
        b = tl.load(
            b_ptr + b_rows[:, None] * stride_br + ns[None, :] * stride_bn,
            mask=r_mask[:, None] & n_mask[None, :],
            other=0.0,
        )
        if IEEE:
            acc = tl.dot(tl.trans(a), b, acc, input_precision="ieee")
        else:
            acc = tl.dot(tl.trans(a), b, acc)
    out_ptrs = out_ptr + expert * stride_oe + ms[:, None] * stride_om + ns[None, :] * stride_on
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def _combine_kernel(
    src_ptr,
    rank_ptr,
    weight_ptr,
    out_ptr,
    T,
    D,
    stride_sr,
    stride_ot,
    K: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """out[t, :] = sum_{k = 0..K-1, in order} weight[t, k] * src[rank[t, k], :] (weight 1 without HAS_WEIGHT)."""
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    ts = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    ds = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    t_mask = ts < T
    mask = t_mask[:, None] & (ds < D)[None, :]
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for k in tl.static_range(K):
        r = tl.load(rank_ptr + ts * K + k, mask=t_mask, other=0)
        v = tl.load(src_ptr + r[:, None] * stride_sr + ds[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            w = tl.load(weight_ptr + ts * K + k, mask=t_mask, other=0.0).to(tl.float32)
            v = v * w[:, None]
        acc += v
    tl.store(out_ptr + ts[:, None].to(tl.int64) * stride_ot + ds[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _combine_weight_grad_kernel(
    dy_ptr,
    src_ptr,
    rank_ptr,
    out_ptr,
    T,
    D,
    stride_dyt,
    stride_sr,
    K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """out[t, k] = sum_d dy[t, d] * src[rank[t, k], d], reduced in fixed d-chunks."""
    pid_t = tl.program_id(0)
    ts = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    t_mask = ts < T
    for k in tl.static_range(K):
        r = tl.load(rank_ptr + ts * K + k, mask=t_mask, other=0)
        acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            mask = t_mask[:, None] & (ds < D)[None, :]
            g = tl.load(dy_ptr + ts[:, None].to(tl.int64) * stride_dyt + ds[None, :], mask=mask, other=0.0)
            v = tl.load(src_ptr + r[:, None] * stride_sr + ds[None, :], mask=mask, other=0.0)
            acc += g.to(tl.float32) * v.to(tl.float32)
        tl.store(out_ptr + ts * K + k, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=t_mask)


# ---------------------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------------------


def _check_runnable(*tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"all MoE tensors must be on one device, got {sorted(str(d) for d in devices)}")
    device = devices.pop()
    if device.type != "cuda" and not triton.knobs.runtime.interpret:
        raise ValueError(
            f"Triton kernels need CUDA tensors, got {device}; set TRITON_INTERPRET=1 before importing triton "
            "to run them on CPU, or use the 'loop' / 'grouped' MoE implementation"
        )


def _grouped_gemm(
    a_MC: torch.Tensor,
    w_ECN: torch.Tensor,
    routes: Routes,
    *,
    num_rows: int,
    gather: bool,
    row_scale_R: torch.Tensor | None = None,
    w2_ECN: torch.Tensor | None = None,
    aux: tuple[torch.Tensor, torch.Tensor] | None = None,
    accumulate_into: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Grouped GEMM over sorted routes; `w_ECN` may be any strided view (e.g. w1_EFD.transpose(1, 2))."""
    cfg = GROUPED_CONFIG
    if routes.block_m != cfg.block_m:
        raise ValueError(f"routes were prepared with block_m={routes.block_m}, the GEMM uses {cfg.block_m}")
    C, N = w_ECN.shape[1], w_ECN.shape[2]
    if a_MC.shape[1] != C:
        raise ValueError(f"grouped GEMM contraction mismatch: A has {a_MC.shape[1]} columns, weights have {C} rows")
    if w2_ECN is not None:
        epilogue = _EPILOGUE_SWIGLU_FWD
        if w2_ECN.stride() != w_ECN.stride() or w2_ECN.shape != w_ECN.shape:
            raise ValueError("w1 and w3 must have the same shape and strides")
        outs = tuple(_empty((num_rows, N), a_MC) for _ in range(3))
    elif aux is not None:
        epilogue = _EPILOGUE_SWIGLU_BWD
        outs = tuple(_empty((num_rows, N), a_MC) for _ in range(2))
    elif accumulate_into is not None:
        epilogue = _EPILOGUE_ACCUMULATE
        outs = (accumulate_into,)
    else:
        epilogue = _EPILOGUE_PLAIN
        outs = (_empty((num_rows, N), a_MC),)
    out = outs[0]
    out2 = outs[1] if len(outs) > 1 else out
    out3 = outs[2] if len(outs) > 2 else out
    aux1, aux2 = aux if aux is not None else (out, out)
    if aux is not None and (aux1.stride() != out.stride() or aux2.stride() != out.stride()):
        raise ValueError("SwiGLU backward inputs h1, h3 must be contiguous (R, F)")
    grid = (routes.block_expert_B.numel(), triton.cdiv(N, cfg.block_n))
    _grouped_gemm_kernel[grid](
        a_MC,
        routes.token_R,
        w_ECN,
        w2_ECN if w2_ECN is not None else w_ECN,
        row_scale_R if row_scale_R is not None else out,
        out,
        out2,
        out3,
        aux1,
        aux2,
        routes.block_expert_B,
        routes.block_start_B,
        routes.block_end_B,
        N,
        C,
        a_MC.stride(0),
        a_MC.stride(1),
        w_ECN.stride(0),
        w_ECN.stride(1),
        w_ECN.stride(2),
        out.stride(0),
        out.stride(1),
        GATHER_A=gather,
        SCALE_ROWS=row_scale_R is not None,
        EPILOGUE=epilogue,
        IEEE=a_MC.dtype == torch.float32,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return outs


def _grouped_wgrad(
    a_XM: torch.Tensor,
    b_YN: torch.Tensor,
    routes: Routes,
    *,
    gather_a: bool,
    gather_b: bool,
    scale_a_R: torch.Tensor | None = None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Per-expert sum over its sorted routes of outer(A row, B row): returns (E, M, N)."""
    cfg = WGRAD_CONFIG
    num_experts = routes.offsets_E1.numel() - 1
    M, N = a_XM.shape[1], b_YN.shape[1]
    out_EMN = _empty((num_experts, M, N), a_XM, dtype=out_dtype)
    grid = (num_experts, triton.cdiv(M, cfg.block_m), triton.cdiv(N, cfg.block_n))
    _grouped_wgrad_kernel[grid](
        a_XM,
        routes.token_R,
        scale_a_R if scale_a_R is not None else a_XM,
        b_YN,
        routes.token_R,
        out_EMN,
        routes.offsets_E1,
        M,
        N,
        a_XM.stride(0),
        a_XM.stride(1),
        b_YN.stride(0),
        b_YN.stride(1),
        out_EMN.stride(0),
        out_EMN.stride(1),
        out_EMN.stride(2),
        GATHER_A=gather_a,
        SCALE_A=scale_a_R is not None,
        GATHER_B=gather_b,
        IEEE=a_XM.dtype == torch.float32,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_R=cfg.block_k,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out_EMN


def _combine(src_RD: torch.Tensor, rank_TK: torch.Tensor, weight_TK: torch.Tensor | None) -> torch.Tensor:
    T, K = rank_TK.shape
    D = src_RD.shape[1]
    if src_RD.stride(1) != 1:
        raise ValueError("combine source must have a contiguous last dim")
    out_TD = _empty((T, D), src_RD)
    grid = (triton.cdiv(T, COMBINE_BLOCK_T), triton.cdiv(D, COMBINE_BLOCK_D))
    _combine_kernel[grid](
        src_RD,
        rank_TK,
        weight_TK if weight_TK is not None else src_RD,
        out_TD,
        T,
        D,
        src_RD.stride(0),
        out_TD.stride(0),
        K=K,
        HAS_WEIGHT=weight_TK is not None,
        BLOCK_T=COMBINE_BLOCK_T,
        BLOCK_D=COMBINE_BLOCK_D,
    )
    return out_TD


def _combine_weight_grad(dy_TD: torch.Tensor, src_RD: torch.Tensor, rank_TK: torch.Tensor, dtype) -> torch.Tensor:
    T, K = rank_TK.shape
    D = src_RD.shape[1]
    out_TK = _empty((T, K), dy_TD, dtype=dtype)
    grid = (triton.cdiv(T, COMBINE_BLOCK_T),)
    _combine_weight_grad_kernel[grid](
        dy_TD,
        src_RD,
        rank_TK,
        out_TK,
        T,
        D,
        dy_TD.stride(0),
        src_RD.stride(0),
        K=K,
        BLOCK_T=COMBINE_BLOCK_T,
        BLOCK_D=COMBINE_BLOCK_D,
    )
    return out_TK


def _check_moe_inputs(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD) -> None:
    if x_TD.dim() != 2:
        raise ValueError(f"x_TD must be (T, D), got shape {tuple(x_TD.shape)}; flatten batch and sequence first")
    T, D = x_TD.shape
    if T == 0:
        raise ValueError("x_TD has no tokens (T == 0)")
    if topk_idx_TK.dim() != 2 or topk_idx_TK.shape[0] != T:
        raise ValueError(f"topk_idx_TK must be (T={T}, K), got shape {tuple(topk_idx_TK.shape)}")
    if topk_weight_TK.shape != topk_idx_TK.shape:
        raise ValueError(
            f"topk_weight_TK shape {tuple(topk_weight_TK.shape)} != topk_idx_TK shape {tuple(topk_idx_TK.shape)}"
        )
    if not topk_weight_TK.dtype.is_floating_point:
        raise ValueError(f"topk_weight_TK must be floating point, got {topk_weight_TK.dtype}")
    if w1_EFD.dim() != 3 or w1_EFD.shape[2] != D:
        raise ValueError(f"w1_EFD must be (E, F, D={D}), got shape {tuple(w1_EFD.shape)}")
    E, F, _ = w1_EFD.shape
    if w3_EFD.shape != w1_EFD.shape:
        raise ValueError(f"w3_EFD must be (E={E}, F={F}, D={D}) like w1, got shape {tuple(w3_EFD.shape)}")
    if w2_EDF.shape != (E, D, F):
        raise ValueError(f"w2_EDF must be (E={E}, D={D}, F={F}), got shape {tuple(w2_EDF.shape)}")
    for name, w in (("w1_EFD", w1_EFD), ("w2_EDF", w2_EDF), ("w3_EFD", w3_EFD)):
        if w.dtype != x_TD.dtype:
            raise ValueError(f"{name} dtype {w.dtype} != x_TD dtype {x_TD.dtype}; cast weights or activations")
    _check_runnable(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD)


class MoEFFN(torch.autograd.Function):
    """Triton SwiGLU MoE experts; see the module docstring for the forward and backward passes."""

    @staticmethod
    def forward(ctx, x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD):
        _check_moe_inputs(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD)
        num_experts = w1_EFD.shape[0]
        routes = prepare_routes(topk_idx_TK, num_experts)
        num_routes = routes.order_R.numel()
        weight_TK = topk_weight_TK.contiguous()
        weight_R = weight_TK.reshape(-1)[routes.order_R]  # route weights in sorted order (gather of R scalars)
        # w1_EFD viewed as (E, C=D, N=F): no copy.
        h1_RF, h3_RF, a_RF = _grouped_gemm(
            x_TD,
            w1_EFD.transpose(1, 2),
            routes,
            num_rows=num_routes,
            gather=True,
            w2_ECN=w3_EFD.transpose(1, 2),
        )
        (o_RD,) = _grouped_gemm(a_RF, w2_EDF.transpose(1, 2), routes, num_rows=num_routes, gather=False)
        y_TD = _combine(o_RD, routes.rank_TK, weight_TK)
        ctx.save_for_backward(
            x_TD,
            w1_EFD,
            w2_EDF,
            w3_EFD,
            weight_R,
            h1_RF,
            h3_RF,
            a_RF,
            o_RD,
            routes.order_R,
            routes.token_R,
            routes.rank_TK,
            routes.offsets_E1,
            routes.block_expert_B,
            routes.block_start_B,
            routes.block_end_B,
        )
        ctx.block_m = routes.block_m
        ctx.weight_dtype = topk_weight_TK.dtype
        return y_TD

    @staticmethod
    def backward(ctx, dy_TD):
        (x_TD, w1_EFD, w2_EDF, w3_EFD, weight_R, h1_RF, h3_RF, a_RF, o_RD, *route_tensors) = ctx.saved_tensors
        routes = Routes(*route_tensors, block_m=ctx.block_m)
        num_routes = routes.order_R.numel()
        dy_TD = dy_TD.contiguous()
        need_x, _, need_weight, need_w1, need_w2, need_w3 = ctx.needs_input_grad
        d_weight_TK = d_x_TD = d_w1 = d_w2 = d_w3 = None

        if need_weight:
            d_weight_TK = _combine_weight_grad(dy_TD, o_RD, routes.rank_TK, ctx.weight_dtype)
        # d a[r] = weight[r] * dy[token[r]] @ w2[e]  (w2_EDF is already (E, C=D, N=F)); SwiGLU backward in epilogue.
        d_h1_RF, d_h3_RF = _grouped_gemm(
            dy_TD, w2_EDF, routes, num_rows=num_routes, gather=True, row_scale_R=weight_R, aux=(h1_RF, h3_RF)
        )
        if need_w2:
            d_w2 = _grouped_wgrad(
                dy_TD, a_RF, routes, gather_a=True, gather_b=False, scale_a_R=weight_R, out_dtype=w2_EDF.dtype
            )
        if need_w1:
            d_w1 = _grouped_wgrad(d_h1_RF, x_TD, routes, gather_a=False, gather_b=True, out_dtype=w1_EFD.dtype)
        if need_w3:
            d_w3 = _grouped_wgrad(d_h3_RF, x_TD, routes, gather_a=False, gather_b=True, out_dtype=w3_EFD.dtype)
        if need_x:
            # w1_EFD is (E, C=F, N=D) as stored.
            (d_x_RD,) = _grouped_gemm(d_h1_RF, w1_EFD, routes, num_rows=num_routes, gather=False)
            _grouped_gemm(d_h3_RF, w3_EFD, routes, num_rows=num_routes, gather=False, accumulate_into=d_x_RD)
            d_x_TD = _combine(d_x_RD, routes.rank_TK, None)
        return d_x_TD, None, d_weight_TK, d_w1, d_w2, d_w3


def moe_ffn(
    x_TD: torch.Tensor,
    topk_idx_TK: torch.Tensor,
    topk_weight_TK: torch.Tensor,
    w1_EFD: torch.Tensor,
    w2_EDF: torch.Tensor,
    w3_EFD: torch.Tensor,
) -> torch.Tensor:
    """Triton SwiGLU MoE experts; same arguments and result as `kernels.reference.moe_ffn_loop`.

    Args:
        x_TD: token activations, (T, D), fp32 / bf16 / fp16.
        topk_idx_TK: expert of each of a token's K routes, (T, K), int32 / int64 in [0, E) (not range-checked:
            checking would need a host synchronisation).
        topk_weight_TK: gate weight of each route, (T, K).
        w1_EFD: gate projection, (E, F, D), same dtype as x.
        w2_EDF: down projection, (E, D, F).
        w3_EFD: up projection, (E, F, D).

    Returns:
        y_TD, (T, D), dtype of x_TD.
    """
    return MoEFFN.apply(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD)
