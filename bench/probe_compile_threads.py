"""Does Triton's compiler overlap across threads? (the premise of `SPARKC_COMPILE_WORKERS`,
docs/architecture.md "Compiling tuning candidates in parallel"). No GPU needed.

Compiles eight tile configurations of a small bf16 GEMM kernel for sm_90 (`triton.compile` with a
`GPUTarget`, a fresh Triton cache each run) serially and in a thread pool, and prints the wall
time of each. Threads help only where the compiler releases the GIL (its MLIR passes, ptxas).
On the 2-core development machine (2026-12-06): serial 5.5-5.7 s, two threads 3.2-3.3 s.

Run: python bench/probe_compile_threads.py [--threads 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ.pop("TRITON_INTERPRET", None)
    from concurrent.futures import ThreadPoolExecutor

    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    @triton.jit
    def mm(A, B, C, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rn = tl.program_id(1) * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        acc = tl.zeros((BM, BN), tl.float32)
        for k in range(0, K, BK):
            a = tl.load(A + rm[:, None] * K + (k + rk)[None, :])
            b = tl.load(B + (k + rk)[:, None] * N + rn[None, :])
            acc += tl.dot(a, b)
        tl.store(C + rm[:, None] * N + rn[None, :], acc.to(tl.bfloat16))

    sig = {"A": "*bf16", "B": "*bf16", "C": "*bf16", "M": "i32", "N": "i32", "K": "i32"}
    sig |= {"BM": "constexpr", "BN": "constexpr", "BK": "constexpr"}
    configs = [(bm, bn, bk) for bm in (64, 128) for bn in (64, 128) for bk in (32, 64)]

    def one(cfg) -> None:
        src = triton.compiler.ASTSource(
            fn=mm, signature=sig, constexprs={(6,): cfg[0], (7,): cfg[1], (8,): cfg[2]}
        )
        triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})

    for _ in range(args.rounds):
        for mode in ("serial", "threads"):
            os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()  # compile afresh
            t0 = time.perf_counter()
            if mode == "serial":
                for cfg in configs:
                    one(cfg)
            else:
                with ThreadPoolExecutor(args.threads) as pool:
                    list(pool.map(one, configs))
            label = mode if mode == "serial" else f"{args.threads} threads"
            print(f"{label:10s} {len(configs)} kernels: {time.perf_counter() - t0:.2f} s wall")


if __name__ == "__main__":
    main()
