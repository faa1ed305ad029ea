"""Time the batch-invariant Triton matmul against cuBLAS (torch.matmul) at 4096^3 in bf16.

    python benchmarks/batch_invariant_matmul.py
    python benchmarks/batch_invariant_matmul.py --m 8192 --n 4096 --k 4096

Target on an H100 (issue 7): within 1.25x of cuBLAS. Also checks that row 0 alone equals row 0 of the full
product bitwise. Needs CUDA; without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kernels import batch_invariant as bi  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4096, help="rows of a (tokens)")
    parser.add_argument("--n", type=int, default=4096, help="columns of b (output features)")
    parser.add_argument("--k", type=int, default=4096, help="contraction dim (input features)")
    parser.add_argument("--warmup-ms", type=float, default=100.0, help="do_bench warm-up time, milliseconds")
    parser.add_argument("--rep-ms", type=float, default=500.0, help="do_bench measuring time, milliseconds")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("batch_invariant_matmul benchmark: no CUDA device available, nothing timed (run it on a GPU machine).")
        return 0
    import triton.testing

    a = torch.randn(args.m, args.k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(args.k, args.n, device="cuda", dtype=torch.bfloat16)
    flops = 2 * args.m * args.n * args.k
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"({args.m} x {args.k}) @ ({args.k} x {args.n}) bf16, config {bi.MATMUL_CONFIGS[torch.bfloat16]}")

    c = bi.matmul(a, b)
    c_ref = torch.matmul(a, b)
    rel = ((c.float() - c_ref.float()).norm() / c_ref.float().norm()).item()
    invariant = torch.equal(bi.matmul(a[:1], b), c[:1])
    print(f"  rel. diff vs cuBLAS {rel:.2e}; row 0 alone == row 0 in batch: {invariant}")

    ms_cublas = triton.testing.do_bench(lambda: torch.matmul(a, b), warmup=args.warmup_ms, rep=args.rep_ms)
    ms_triton = triton.testing.do_bench(lambda: bi.matmul(a, b), warmup=args.warmup_ms, rep=args.rep_ms)
    for name, ms in (("cuBLAS", ms_cublas), ("batch-invariant", ms_triton)):
        print(f"  {name:<16} {ms:8.3f} ms  {flops / ms / 1e9:7.1f} TFLOP/s")
    ratio = ms_triton / ms_cublas
    print(f"  batch-invariant / cuBLAS time: {ratio:.2f}x (target <= 1.25x: {'met' if ratio <= 1.25 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
