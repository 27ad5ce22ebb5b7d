"""Probe: would the verifier's decode step gain from its projections inside the scan kernel?

The verifier's single-token step (runtime/decode_stack.py) runs the stack update as one kernel
with one program per sequence (the memory lives in that program's registers); its projections
(`ctrl1` d→d/2, `ctrl2` d/2→3, `enc` d→d/2, `head1` (d+d/2)→d/4, `head2` d/4→1: ~1.44 M weights,
2.9 MB in bf16 at d = 1024) run before it as torch GEMVs. Folded into the scan, every program
would stream all of those weights itself: one SM per sequence. This times exactly that access
pattern against what runs now, on one weight matrix holding the same number of weights:

  torch 5 GEMVs   the five projections as `F.linear` calls of their real shapes (today's step)
  torch 1 GEMV    one `F.linear` over all the weights at once (the best torch can do)
  fused B×1       B programs, each computing W·x_b over all of W (the fused scan's pattern)
  split 1×P       B = 1 only: P programs sharing W's rows (what a split fused step would need,
                  plus a cross-program reduction that this probe leaves out)

and prints GB/s of weight bytes for each. If `fused B×1` at B = 1 takes longer than `torch 5
GEMVs` plus the launches it would save (~3–5 µs each when replayed from a CUDA graph), the fused
form is slower and the bound written in docs/decoding.md holds. Consumes a CUDA device
(`--dry-run`: the interpreter at a tiny size, numbers mean nothing, checks the kernel against
torch). Prints a table; `--json FILE` writes the rows.

    python3 -P bench/probe_one_sm_stream.py [--d 1024] [--batch 1 64] [--json f]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit
def _gemv(w_ptr, x_ptr, y_ptr, M, K, PROGS, BM: tl.constexpr, BK: tl.constexpr):
    """y[b, m] = Σ_k w[m, k] x[b, k]; program (b, p) takes row blocks p, p + PROGS, …"""
    b = tl.program_id(0)
    p = tl.program_id(1)
    for m0 in range(p * BM, M, PROGS * BM):
        rows = m0 + tl.arange(0, BM)
        acc = tl.zeros([BM], dtype=tl.float32)
        for k0 in range(0, K, BK):
            cols = k0 + tl.arange(0, BK)
            w = tl.load(
                w_ptr + rows[:, None] * K + cols[None, :],
                mask=(rows[:, None] < M) & (cols[None, :] < K),
                other=0.0,
            )
            x = tl.load(x_ptr + b * K + cols, mask=cols < K, other=0.0)
            acc += tl.sum(w.to(tl.float32) * x.to(tl.float32)[None, :], axis=1)
        tl.store(y_ptr + b * M + rows, acc, mask=rows < M)


def gemv(w: torch.Tensor, x: torch.Tensor, progs: int, bm: int = 16, bk: int = 256) -> torch.Tensor:
    y = torch.empty(x.shape[0], w.shape[0], device=x.device, dtype=torch.float32)
    _gemv[(x.shape[0], progs)](w, x, y, w.shape[0], w.shape[1], progs, BM=bm, BK=bk)
    return y


def layers(d: int) -> list[tuple[int, int]]:
    """(out, in) of the verifier's five projections at width d (elem = d/2)."""
    e = d // 2
    return [(d // 2, d), (3, d // 2), (e, d), (d // 4, d + e), (1, d // 4)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--json")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    dry = args.dry_run
    dev = "cpu" if dry else "cuda"
    dt = torch.float32 if dry else torch.bfloat16
    d = 64 if dry else args.d
    shapes = layers(d)
    weights = sum(o * i for o, i in shapes)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ws = [(torch.randn(o, i, generator=gen) / i**0.5).to(dev, dt) for o, i in shapes]
    # One matrix with the same number of weights, d columns.
    w_all = (torch.randn(-(-weights // d), d, generator=gen) / d**0.5).to(dev, dt)
    nbytes = w_all.numel() * w_all.element_size()
    if dry:
        x = torch.randn(3, d, generator=gen).to(dev, dt)
        for progs in (1, 2):
            got = gemv(w_all, x, progs, bm=8, bk=32)
            want = x.float() @ w_all.float().T
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        print(f"dry run: the probe kernel matches torch ({w_all.shape[0]}×{d}); no timings")
        return 0
    from triton.testing import do_bench

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"# {torch.cuda.get_device_name()}: {weights:,} weights ({nbytes / 1e6:.2f} MB)")
    rows = []

    def row(name: str, batch: int, fn) -> None:
        fn()
        ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
        rows.append({"row": name, "batch": batch, "us": ms * 1e3, "GBps": nbytes / ms / 1e6})
        print(f"{name:<24} B={batch:<3} {ms * 1e3:8.2f} µs  {nbytes / ms / 1e6:8.1f} GB/s")

    for batch in args.batch:
        xs = [torch.randn(batch, i, device=dev, dtype=dt) for _, i in shapes]
        x = torch.randn(batch, d, device=dev, dtype=dt)
        row("torch 5 GEMVs", batch, lambda xs=xs: [F.linear(a, w) for a, w in zip(xs, ws)])
        row("torch 1 GEMV", batch, lambda x=x: F.linear(x, w_all))
        for bm in (8, 32):
            row(f"fused B×1 (BM={bm})", batch, lambda bm=bm, x=x: gemv(w_all, x, 1, bm=bm))
        if batch == 1:
            for progs in (2, 8, 32, sms):
                row(f"split 1×{progs}", batch, lambda p=progs, x=x: gemv(w_all, x, p))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "d": d, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
