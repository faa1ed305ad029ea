"""Time the SwiGLU MoE expert layer, forward + backward, in bf16: Triton grouped GEMM vs per-expert loop vs torch.

    python benchmarks/moe_kernels.py                 # both issue shapes
    python benchmarks/moe_kernels.py --shape 1       # only (E, K, D, F, T) = (64, 8, 2048, 768, 32768)

Implementations, all with the signature of `kernels.reference.moe_ffn_loop`:
    triton       kernels.moe.moe_ffn (routes sorted, token rows gathered inside the grouped GEMM)
    loop         kernels.reference.moe_ffn_loop (one torch matmul chain per expert, index_add combine)
    grouped      kernels.reference.moe_ffn_grouped (sorted routes, per-expert torch matmuls on contiguous slices)
    grouped_mm   torch._grouped_mm on gathered rows, where this torch build and GPU support it (bf16, sm90+)
Targets on an H100 (issue 7): triton >= 3x loop at 64 experts, triton >= 0.9x grouped_mm.
Needs CUDA; without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kernels import moe, reference  # noqa: E402

# (experts E, top-k K, model dim D, ffn dim F, tokens T), from issue 7.
SHAPES = [(8, 2, 1024, 4096, 16384), (64, 8, 2048, 768, 32768)]


def moe_ffn_grouped_mm(x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD):
    """torch._grouped_mm baseline: gather token rows into expert order, three grouped GEMMs, index_add combine."""
    T, K = topk_idx_TK.shape
    num_experts = w1_EFD.shape[0]
    expert_R = topk_idx_TK.reshape(-1)
    _, order_R = torch.sort(expert_R, stable=True)
    offs_E = torch.cumsum(torch.bincount(expert_R, minlength=num_experts), dim=0).to(torch.int32)
    token_R = order_R // K
    x_RD = x_TD[token_R]
    h1_RF = torch._grouped_mm(x_RD, w1_EFD.transpose(-2, -1), offs=offs_E)
    h3_RF = torch._grouped_mm(x_RD, w3_EFD.transpose(-2, -1), offs=offs_E)
    o_RD = torch._grouped_mm(F.silu(h1_RF) * h3_RF, w2_EDF.transpose(-2, -1), offs=offs_E)
    o_RD = o_RD * topk_weight_TK.reshape(-1)[order_R, None].to(o_RD.dtype)
    return torch.zeros_like(x_TD).index_add(0, token_R, o_RD)


IMPLS = {
    "triton": moe.moe_ffn,
    "loop": reference.moe_ffn_loop,
    "grouped": reference.moe_ffn_grouped,
    "grouped_mm": moe_ffn_grouped_mm,
}


def make_inputs(E, K, D, F_, T, dtype=torch.bfloat16, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x_TD = torch.randn(T, D, device="cuda", dtype=dtype, generator=gen)
    router_logits_TE = torch.randn(T, E, device="cuda", generator=gen)
    topk_weight_TK, topk_idx_TK = router_logits_TE.softmax(dim=-1).topk(K, dim=-1)
    w1_EFD = torch.randn(E, F_, D, device="cuda", dtype=dtype, generator=gen) / D**0.5
    w2_EDF = torch.randn(E, D, F_, device="cuda", dtype=dtype, generator=gen) / F_**0.5
    w3_EFD = torch.randn(E, F_, D, device="cuda", dtype=dtype, generator=gen) / D**0.5
    params = [t.requires_grad_(True) for t in (x_TD, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD)]
    return (x_TD, topk_idx_TK, topk_weight_TK, w1_EFD, w2_EDF, w3_EFD), params


def bench_shape(shape, impls, warmup_ms, rep_ms):
    import triton.testing

    E, K, D, F_, T = shape
    inputs, params = make_inputs(*shape)
    dy_TD = torch.randn(T, D, device="cuda", dtype=torch.bfloat16)
    flops = 3 * (2 * T * K * D * F_ * 3)  # 3 GEMMs forward; backward ~2x forward
    print(f"\n(E, K, D, F, T) = {shape}   bf16, forward + backward, {flops / 1e12:.2f} TFLOP per call")

    y_ref = None
    times = {}
    for name in impls:
        fn = IMPLS[name]

        def step(fn=fn):
            y_TD = fn(*inputs)
            torch.autograd.grad(y_TD, params, dy_TD)

        try:
            with torch.no_grad():
                y = IMPLS[name](*inputs)
            step()
        except (RuntimeError, NotImplementedError) as err:  # e.g. _grouped_mm missing on this GPU / build
            print(f"  {name:<11} unavailable: {str(err).splitlines()[0]}")
            continue
        if y_ref is None:
            y_ref = y.float()
        rel = ((y.float() - y_ref).norm() / y_ref.norm()).item()
        ms = triton.testing.do_bench(step, warmup=warmup_ms, rep=rep_ms)
        times[name] = ms
        print(f"  {name:<11} {ms:9.3f} ms  {flops / ms / 1e9:7.1f} TFLOP/s   rel. diff vs {impls[0]}: {rel:.2e}")
        torch.cuda.empty_cache()
    if "triton" in times:
        for other in ("loop", "grouped", "grouped_mm"):
            if other in times:
                print(f"  triton speed-up vs {other}: {times[other] / times['triton']:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, choices=range(len(SHAPES)), help="index into SHAPES (default: all)")
    parser.add_argument("--impls", default="triton,loop,grouped,grouped_mm", help="comma-separated, see docstring")
    parser.add_argument("--warmup-ms", type=float, default=100.0, help="do_bench warm-up time, milliseconds")
    parser.add_argument("--rep-ms", type=float, default=500.0, help="do_bench measuring time, milliseconds")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("moe_kernels benchmark: no CUDA device available, nothing timed (run it on a GPU machine).")
        return 0
    impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    unknown = [name for name in impls if name not in IMPLS]
    if unknown:
        parser.error(f"unknown --impls {unknown}; choose from {sorted(IMPLS)}")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    shapes = SHAPES if args.shape is None else [SHAPES[args.shape]]
    for shape in shapes:
        bench_shape(shape, impls, args.warmup_ms, args.rep_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
