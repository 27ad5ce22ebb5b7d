"""Where the time of a GEMM + epilogue forward+backward goes, per kernel (torch.profiler), next
to the eager reference: for the rows of bench_matmul.py whose fwd+bwd trails eager.

Run on the GPU machine: python bench/profile_matmul.py [--epilogue bias+gelu] [--size 2048]
[--steps 20]. Prints each variant's CUDA time per kernel and the host (CPU) time per step;
with --no-extern, torch's GEMM is not offered to the tuner (Triton kernels only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_matmul as bm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epilogue", default="bias+gelu", choices=sorted(bm.EPILOGUES))
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--M", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-extern", action="store_true")
    args = ap.parse_args()
    if args.no_extern:
        os.environ["SPARKC_EXTERN_GEMM"] = "0"
    epilogue, dual = bm.EPILOGUES[args.epilogue]
    ours = bm.build("prof_" + args.epilogue.replace("+", "_"), epilogue, dual)
    ref = bm.eager(args.epilogue)
    xs = bm.inputs(args.epilogue, args.M, args.size, args.size, torch.bfloat16)
    for label, fn in (("sparkc", ours), ("eager", ref)):
        step = bm.fwd_bwd(fn, xs)
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        host = (time.perf_counter() - t0) / args.steps * 1e3
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / args.steps * 1e3
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        ) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        print(
            f"== {label} {args.epilogue} K=N={args.size} M={args.M}: host {host:.3f} ms "
            f"per step (issue), wall {wall:.3f} ms per step"
        )
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
