"""Probe: lora_linear's main GEMM kernel (`<name>_lr_kernel`) alone, forward against dx.

Why: on the H100 (2026-12-07, tenth session) the kernel took 0.079 ms in the forward (no grad)
but ~0.17 ms in its backward launch (dx = dy W + (dy Bm_b) A_b), even with Wᵀ copied to rows so
that the operands had the forward's layout, shape and tile (that copy was then removed again). This times the kernel in isolation,
one change per row, so the slow ingredient shows as the first row that jumps:

  fwd            x, W, L = A, RM = Bm, no T store       (the forward under no_grad)
  fwd+T          the same, storing T = x Aᵀ (float32)    (the forward when gradients are needed)
  dx-layout      dy, Wᵀ copied to rows, L = Bmᵀ, RM = Aᵀ (strided views), storing U
  dx-contig-lr   as dx-layout with Bmᵀ and Aᵀ copied to contiguous tensors
  dx-strided-w   as dx-layout with the strided view Wᵀ (what the generated backward launched
                 until 2026-12-07)
  dx-generated   the strided view Wᵀ with Bmᵀ and Aᵀ contiguous (what it launches since)
Each row is tuned on its own (the launch's tuning tag is the row's name).

Each row is timed with the tile the tuner memo picks for that call and with every shared GEMM
candidate (the best shown), medians of `triton.testing.do_bench`. Consumes: a CUDA device (or
`--dry-run`: the interpreter at tiny sizes, no timing claim). Produces a table and `--json`.

    python3 -P bench/probe_lora_lr.py [--batch 4 --seq 4096 --d 1024 --out 1024 --rank 4] [--json f]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

from sparkc import api

PROGRAM = """
model LoraProbe(d = {d}, m = 8) {{
  input x: float[B, N, d]
  input meta: float[B, m]
  y = lora_linear(x, meta, out={out}, rank={rank}, gen_dim=16)
  output y
}}
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--out", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    if a.dry_run:
        a.batch, a.seq, a.d, a.out, a.rank = 2, 5, 16, 16, 2
    device = "cpu" if a.dry_run else "cuda"
    dtype = torch.float32 if a.dry_run else torch.bfloat16
    module = api.load_source(PROGRAM.format(d=a.d, out=a.out, rank=a.rank), "lora_probe.spark")
    kernels = importlib.import_module(module.__name__ + ".kernels")
    names = [n for n in dir(kernels) if n.endswith("_lowrank")]
    assert len(names) == 1, names
    lowrank = getattr(kernels, names[0])
    prefix = names[0].removesuffix("_lowrank")
    launch = kernels._launch
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=g)

    B, N, K, O, R = a.batch, a.seq, a.d, a.out, a.rank
    x, dy = rnd(B, N, K), rnd(B, N, O)
    w, bias, am, bm = rnd(O, K), rnd(O), rnd(B, R, K), rnd(B, O, R)
    y = torch.empty(B * N, O, device=device, dtype=dtype)
    dx = torch.empty(B * N, K, device=device, dtype=dtype)
    t = torch.empty(B * N, R, device=device, dtype=torch.float32)
    wt = w.t().contiguous()
    bmt, amt = bm.transpose(1, 2), am.transpose(1, 2)
    rows = {
        "fwd": lambda: lowrank(x, w, bias, am, bm, y, None, "fwd"),
        "fwd+T": lambda: lowrank(x, w, bias, am, bm, y, t, "fwd+T"),
        "dx-layout": lambda: lowrank(dy, wt, None, bmt, amt, dx, t, "dx-layout"),
        "dx-contig-lr": lambda: lowrank(
            dy, wt, None, bmt.contiguous(), amt.contiguous(), dx, t, "dx-contig-lr"
        ),
        "dx-strided-w": lambda: lowrank(dy, w.t(), None, bmt, amt, dx, t, "dx-strided-w"),
        # what the generated backward launches since 2026-12-07 (eleventh session)
        "dx-generated": lambda: lowrank(
            dy, w.t(), None, bmt.contiguous(), amt.contiguous(), dx, t, "dx-generated"
        ),
    }
    # Check the dx rows compute dy W + (dy Bm_b) A_b before timing anything.
    rows["dx-layout"]()
    ref = dy.float().reshape(B * N, O) @ w.float()
    low = torch.einsum("bno,bor,brk->bnk", dy.float(), bm.float(), am.float()).reshape(B * N, K)
    err = float((dx.float() - ref - low).abs().max() / (ref + low).abs().max())
    print(f"dx check: max relative error {err:.2e}")
    assert err < (1e-4 if dtype == torch.float32 else 3e-2), err
    results = []
    if a.dry_run:
        for name, fn in rows.items():
            fn()
        print("dry run: every row launched under the interpreter")
        return 0
    from triton.testing import do_bench

    kernel = getattr(kernels, f"{prefix}_lr_kernel")
    flops = 2.0 * B * N * K * O
    print(
        f"{'row':14s} {'memo tile':>26s} {'ms':>8s} {'best tile':>26s} {'ms':>8s} {'TFLOP/s':>8s}"
    )
    for name, fn in rows.items():
        fn()  # compile, tune, memo
        memo_ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
        best = (float("inf"), None)
        for cand in launch.GEMM_CANDIDATES:
            cfg = dict(zip(launch.GEMM_KEYS, launch.fit_gemm(cand, x.element_size())))
            saved = launch.tuned_gemm
            launch.tuned_gemm = lambda *args, cfg=cfg, **kw: cfg
            try:
                fn()
                ms = do_bench(fn, warmup=10, rep=100, return_mode="median")
            except Exception as e:  # noqa: BLE001 - a tile that does not fit is skipped
                print(f"  {name} {cand}: {type(e).__name__}")
                continue
            finally:
                launch.tuned_gemm = saved
            best = min(best, (ms, cand), key=lambda p: p[0])
        memo = launch.tuned_gemm(
            kernel, getattr(kernels, f"{prefix}_config"), B * N, O, K, x, None, tag=name
        )
        tile = tuple(memo[k] for k in launch.GEMM_KEYS)
        print(
            f"{name:14s} {tile!s:>26s} {memo_ms:8.4f} {best[1]!s:>26s} {best[0]:8.4f}"
            f" {flops / best[0] / 1e9:8.1f}"
        )
        results.append({"row": name, "memo_ms": memo_ms, "best_ms": best[0], "best": best[1]})
    if a.json:
        Path(a.json).write_text(
            json.dumps({"device": torch.cuda.get_device_name(), "rows": results})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
