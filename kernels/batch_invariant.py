"""Batch-invariant matmul, RMSNorm and log-softmax in Triton, and the switch that makes the trainer use them.

    TRITON_INTERPRET=1 python -m pytest -q tests/kernels/test_kernels_batch_invariant.py    # CPU, interpreter
    python benchmarks/batch_invariant_matmul.py                                              # GPU timing vs cuBLAS

A result is batch-invariant when a row's output is bitwise the same whatever other rows share the batch. Library
kernels lose this by choosing tile sizes, split-K or reduction strategies from the batch size. Here every choice
depends only on the reduced dimension (C for matmul, D / V for the row ops), never on the number of rows:
    matmul       one tile configuration, no split-K: each output element is one program's dot products over C in
                 BLOCK_K chunks, in order.
    rms_norm     one row per program, the whole row in one block.
    log_softmax  one row per program, chunks of BLOCK_V in order.
Backward passes use the same kind of kernels (matmul: the same kernel on transposed views; row ops: one row per
program) and are deterministic; RMSNorm's weight gradient sums over rows in PyTorch (deterministic, not a forward
quantity, so batch-invariance does not apply).

Usage in the trainer:

    from kernels import batch_invariant as bi
    with bi.batch_invariant_mode():
        ...  # layers check bi.is_enabled() and call bi.matmul / bi.linear / bi.rms_norm / bi.log_softmax
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

logger = logging.getLogger(__name__)

# Tests set this so every launcher output starts as NaN and unwritten elements fail loudly.
FILL_EMPTY_WITH_NAN = False

_ENABLED = False


def is_enabled() -> bool:
    """True inside `batch_invariant_mode()`: the trainer then routes matmul / norm / log-softmax here."""
    return _ENABLED


@contextlib.contextmanager
def batch_invariant_mode(enabled: bool = True) -> Iterator[None]:
    """Make `is_enabled()` return `enabled` inside the block; the previous value is restored on exit."""
    global _ENABLED
    previous = _ENABLED
    _ENABLED = enabled
    try:
        yield
    finally:
        _ENABLED = previous


@dataclasses.dataclass(frozen=True)
class MatmulConfig:
    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int


# One tile configuration per dtype, never chosen from the shape. Not swept (no GPU when written): taken from Triton's
# matmul tutorial H100 configs. fp32 uses fewer stages so the IEEE fp32 tiles fit in shared memory.
MATMUL_CONFIGS = {
    torch.bfloat16: MatmulConfig(block_m=128, block_n=128, block_k=64, group_m=8, num_warps=8, num_stages=3),
    torch.float16: MatmulConfig(block_m=128, block_n=128, block_k=64, group_m=8, num_warps=8, num_stages=3),
    torch.float32: MatmulConfig(block_m=128, block_n=128, block_k=32, group_m=8, num_warps=8, num_stages=2),
}
MAX_ROW_BLOCK = 65536  # RMSNorm keeps a whole row in one block
LOG_SOFTMAX_BLOCK_V = 4096  # chunk of the vocabulary per step; fixed so the reduction order depends on V only


def _empty(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    dtype = dtype or like.dtype
    if FILL_EMPTY_WITH_NAN and dtype.is_floating_point:
        return torch.full(shape, float("nan"), dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


def _check_runnable(name: str, *tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"{name}: inputs must be on one device, got {sorted(str(d) for d in devices)}")
    device = devices.pop()
    if device.type != "cuda" and not triton.knobs.runtime.interpret:
        raise ValueError(
            f"{name}: Triton kernels need CUDA tensors, got {device}; set TRITON_INTERPRET=1 before importing "
            "triton to run them on CPU"
        )
    for t in tensors:
        if t.dtype not in MATMUL_CONFIGS:
            raise ValueError(f"{name}: dtype {t.dtype} is not supported; use one of {sorted(map(str, MATMUL_CONFIGS))}")


# ---------------------------------------------------------------------------------------------------------------------
# Matmul
# ---------------------------------------------------------------------------------------------------------------------


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    M,
    N,
    C,
    stride_am,
    stride_ac,
    stride_bc,
    stride_bn,
    stride_cm,
    stride_cn,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """c = a @ b; one program per (BLOCK_M, BLOCK_N) tile, full reduction over C in BLOCK_K chunks, in order."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # Grouped tile order for L2 reuse: changes which program computes a tile, never how.
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    rows = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < M
    col_mask = cols < N
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ac
    b_ptrs = b_ptr + ks[:, None] * stride_bc + cols[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_K):
        c_mask = (c0 + ks) < C
        a = tl.load(a_ptrs, mask=row_mask[:, None] & c_mask[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=c_mask[:, None] & col_mask[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ac
        b_ptrs += BLOCK_K * stride_bc
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=row_mask[:, None] & col_mask[None, :])


def _matmul_2d(a_MC: torch.Tensor, b_CN: torch.Tensor) -> torch.Tensor:
    """Launcher: (M, C) @ (C, N) -> (M, N); inputs may be any strided views (transposes are not copied)."""
    if a_MC.dim() != 2 or b_CN.dim() != 2:
        raise ValueError(f"matmul: expected 2-D operands, got {tuple(a_MC.shape)} and {tuple(b_CN.shape)}")
    if a_MC.shape[1] != b_CN.shape[0]:
        raise ValueError(f"matmul: contraction mismatch, a is {tuple(a_MC.shape)} and b is {tuple(b_CN.shape)}")
    if a_MC.dtype != b_CN.dtype:
        raise ValueError(f"matmul: dtype mismatch {a_MC.dtype} vs {b_CN.dtype}; cast one operand")
    _check_runnable("matmul", a_MC, b_CN)
    M, C = a_MC.shape
    N = b_CN.shape[1]
    c_MN = _empty((M, N), a_MC)
    if M == 0 or N == 0:
        return c_MN
    cfg = MATMUL_CONFIGS[a_MC.dtype]
    grid = (triton.cdiv(M, cfg.block_m) * triton.cdiv(N, cfg.block_n),)
    _matmul_kernel[grid](
        a_MC,
        b_CN,
        c_MN,
        M,
        N,
        C,
        a_MC.stride(0),
        a_MC.stride(1),
        b_CN.stride(0),
        b_CN.stride(1),
        c_MN.stride(0),
        c_MN.stride(1),
        IEEE=a_MC.dtype == torch.float32,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return c_MN


class _Matmul(torch.autograd.Function):
    """Forward and both gradients with the same fixed-config kernel: da = dc @ b^T, db = a^T @ dc."""

    @staticmethod
    def forward(ctx, a_MC, b_CN):
        ctx.save_for_backward(a_MC, b_CN)
        return _matmul_2d(a_MC, b_CN)

    @staticmethod
    def backward(ctx, dc_MN):
        a_MC, b_CN = ctx.saved_tensors
        da = _matmul_2d(dc_MN, b_CN.t()) if ctx.needs_input_grad[0] else None
        db = _matmul_2d(a_MC.t(), dc_MN) if ctx.needs_input_grad[1] else None
        return da, db


def matmul(a_MC: torch.Tensor, b_CN: torch.Tensor) -> torch.Tensor:
    """Batch-invariant (..., C) @ (C, N) -> (..., N); leading dims of `a` are flattened into rows."""
    if b_CN.dim() != 2:
        raise ValueError(f"matmul: b must be (C, N), got shape {tuple(b_CN.shape)}")
    if a_MC.dim() < 1:
        raise ValueError("matmul: a must have at least one dim")
    lead = a_MC.shape[:-1]
    out = _Matmul.apply(a_MC.reshape(-1, a_MC.shape[-1]), b_CN)
    return out.reshape(*lead, b_CN.shape[1])


def linear(x_MC: torch.Tensor, weight_NC: torch.Tensor, bias_N: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-invariant drop-in for `torch.nn.functional.linear`: x @ weight^T (+ bias, elementwise)."""
    out = matmul(x_MC, weight_NC.t())
    return out + bias_N if bias_N is not None else out


# ---------------------------------------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------------------------------------


@triton.jit
def _rms_norm_fwd_kernel(x_ptr, w_ptr, y_ptr, rstd_ptr, D, stride_x, stride_y, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / D + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * stride_y + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, D, stride_dy, stride_x, stride_dx, BLOCK_D: tl.constexpr
):
    """dx = rstd * (g - x * rstd^2 * mean(g * x)) with g = dy * w."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    dy = tl.load(dy_ptr + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + row)
    g = dy * w
    dot = tl.sum(g * x, axis=0) / D
    dx = rstd * (g - x * (rstd * rstd * dot))
    tl.store(dx_ptr + row * stride_dx + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _rows(name: str, x: torch.Tensor) -> torch.Tensor:
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"{name}: input needs a non-empty last dim, got shape {tuple(x.shape)}")
    x_2d = x.reshape(-1, x.shape[-1])
    return x_2d if x_2d.stride(-1) == 1 else x_2d.contiguous()


class _RMSNorm(torch.autograd.Function):
    """Forward and input gradient: one row per program. Weight gradient: PyTorch sum over rows (deterministic)."""

    @staticmethod
    def forward(ctx, x_ND, weight_D, eps):
        N, D = x_ND.shape
        block_d = triton.next_power_of_2(D)
        y_ND = _empty((N, D), x_ND)
        rstd_N = _empty((N,), x_ND, dtype=torch.float32)
        if N > 0:
            _rms_norm_fwd_kernel[(N,)](
                x_ND,
                weight_D,
                y_ND,
                rstd_N,
                D,
                x_ND.stride(0),
                y_ND.stride(0),
                eps,
                BLOCK_D=block_d,
                num_warps=_row_warps(block_d),
            )
        ctx.save_for_backward(x_ND, weight_D, rstd_N)
        return y_ND

    @staticmethod
    def backward(ctx, dy_ND):
        x_ND, weight_D, rstd_N = ctx.saved_tensors
        N, D = x_ND.shape
        dy_ND = dy_ND.contiguous()
        dx_ND = dw_D = None
        if ctx.needs_input_grad[0]:
            block_d = triton.next_power_of_2(D)
            dx_ND = _empty((N, D), x_ND)
            if N > 0:
                _rms_norm_bwd_kernel[(N,)](
                    dy_ND,
                    x_ND,
                    weight_D,
                    rstd_N,
                    dx_ND,
                    D,
                    dy_ND.stride(0),
                    x_ND.stride(0),
                    dx_ND.stride(0),
                    BLOCK_D=block_d,
                    num_warps=_row_warps(block_d),
                )
        if ctx.needs_input_grad[1]:
            dw_D = (dy_ND.float() * x_ND.float() * rstd_N[:, None]).sum(dim=0).to(weight_D.dtype)
        return dx_ND, dw_D, None


def _row_warps(block: int) -> int:
    # Depends on the row length only, so it is the same for every batch size.
    return 4 if block <= 2048 else 8 if block <= 8192 else 16


def rms_norm(x_ND: torch.Tensor, weight_D: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Batch-invariant RMSNorm over the last dim (computed in float32): x / sqrt(mean(x^2) + eps) * weight."""
    if weight_D.dim() != 1 or weight_D.shape[0] != x_ND.shape[-1]:
        raise ValueError(f"rms_norm: weight must be ({x_ND.shape[-1]},), got shape {tuple(weight_D.shape)}")
    if x_ND.shape[-1] > MAX_ROW_BLOCK:
        raise ValueError(f"rms_norm: last dim {x_ND.shape[-1]} > {MAX_ROW_BLOCK}, the largest row one block holds")
    _check_runnable("rms_norm", x_ND, weight_D)
    x_2d = _rows("rms_norm", x_ND)
    return _RMSNorm.apply(x_2d, weight_D.contiguous(), float(eps)).reshape(x_ND.shape)


# ---------------------------------------------------------------------------------------------------------------------
# Log-softmax
# ---------------------------------------------------------------------------------------------------------------------

# Finite stand-in for -inf as the running max, so masked lanes never compute (-inf) - (-inf).
_NEG_BIG: tl.constexpr = tl.constexpr(-3.0e38)


@triton.jit
def _log_softmax_fwd_kernel(x_ptr, y_ptr, V, stride_x, stride_y, BLOCK_V: tl.constexpr):
    """Per row: online max / sum-exp over BLOCK_V chunks in order, then y = x - logsumexp(x)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_V)
    m_vec = tl.full((BLOCK_V,), _NEG_BIG, dtype=tl.float32)
    s_vec = tl.zeros((BLOCK_V,), dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        mask = (v0 + cols) < V
        x = tl.load(x_ptr + row * stride_x + v0 + cols, mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m_vec, x)
        s_vec = s_vec * tl.exp(m_vec - m_new) + tl.exp(x - m_new)
        m_vec = m_new
    m = tl.max(m_vec, axis=0)
    lse = m + tl.log(tl.sum(s_vec * tl.exp(m_vec - m), axis=0))
    for v0 in range(0, V, BLOCK_V):
        mask = (v0 + cols) < V
        x = tl.load(x_ptr + row * stride_x + v0 + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + row * stride_y + v0 + cols, (x - lse).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _log_softmax_bwd_kernel(dy_ptr, y_ptr, dx_ptr, V, stride_dy, stride_y, stride_dx, BLOCK_V: tl.constexpr):
    """dx = dy - exp(y) * sum(dy), per row."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_V)
    acc = tl.zeros((BLOCK_V,), dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        mask = (v0 + cols) < V
        acc += tl.load(dy_ptr + row * stride_dy + v0 + cols, mask=mask, other=0.0).to(tl.float32)
    total = tl.sum(acc, axis=0)
    for v0 in range(0, V, BLOCK_V):
        mask = (v0 + cols) < V
        dy = tl.load(dy_ptr + row * stride_dy + v0 + cols, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + row * stride_y + v0 + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + row * stride_dx + v0 + cols, (dy - tl.exp(y) * total).to(dx_ptr.dtype.element_ty), mask=mask)


def _log_softmax_block(V: int) -> int:
    return min(LOG_SOFTMAX_BLOCK_V, triton.next_power_of_2(V))


class _LogSoftmax(torch.autograd.Function):
    """Forward and backward: one row per program, fixed chunk order."""

    @staticmethod
    def forward(ctx, x_NV):
        N, V = x_NV.shape
        block_v = _log_softmax_block(V)
        y_NV = _empty((N, V), x_NV)
        if N > 0:
            _log_softmax_fwd_kernel[(N,)](
                x_NV, y_NV, V, x_NV.stride(0), y_NV.stride(0), BLOCK_V=block_v, num_warps=_row_warps(block_v)
            )
        ctx.save_for_backward(y_NV)
        return y_NV

    @staticmethod
    def backward(ctx, dy_NV):
        (y_NV,) = ctx.saved_tensors
        N, V = y_NV.shape
        dy_NV = dy_NV.contiguous()
        block_v = _log_softmax_block(V)
        dx_NV = _empty((N, V), y_NV)
        if N > 0:
            _log_softmax_bwd_kernel[(N,)](
                dy_NV,
                y_NV,
                dx_NV,
                V,
                dy_NV.stride(0),
                y_NV.stride(0),
                dx_NV.stride(0),
                BLOCK_V=block_v,
                num_warps=_row_warps(block_v),
            )
        return dx_NV


def log_softmax(x_NV: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Batch-invariant log-softmax over the last dim (computed in float32, returned in the input dtype)."""
    if dim not in (-1, x_NV.dim() - 1):
        raise ValueError(f"log_softmax: only the last dim is supported, got dim={dim}; move it last first")
    _check_runnable("log_softmax", x_NV)
    x_2d = _rows("log_softmax", x_NV)
    return _LogSoftmax.apply(x_2d).reshape(x_NV.shape)
