"""Benchmark of the procedural linear blocks' kernels (lora_linear, demopack_linear) on a GPU.

Each block is compiled from a one-op `.spark` program and timed side by side in one run
(triton.testing.do_bench medians), forward (no grad) and forward+backward (`y.backward(g)` with
a fixed upstream gradient, every parameter and x requiring grad):
  - lora_linear (B=4, N=4096, D=1024, out 1024, rank 4, meta 64, gen_dim 64): sparkc's Triton
    path vs the base linear alone (`F.linear(x, W, b)`, torch/cuBLAS) and vs the module's eager
    reference path; target sparkc / base ≤ 1.15 forward and forward+backward;
  - demopack_linear (same x, out 4096, 256 codewords, 4 per row): sparkc vs the dense
    `F.linear` of the same shape (a [4096, 1024] weight) and vs eager; target dense / sparkc
    ≥ 2 forward and forward+backward.
On a GPU, `sparkc graph` and `base F.linear graph` / `dense F.linear graph` rows time the same
calls replayed from a CUDA graph (no per-call host time: separates a host-bound row from a
kernel gap). The forward FLOPs of each line are printed beside the times (docs/kernels/procedural.md derives
them). Prints a table; `--out PATH` also writes the rows as JSON. `--dry-run` runs the same code
on the CPU under the Triton interpreter at tiny shapes (no timing claims; a smoke test of the
script).

Run: python bench/procedural_linear.py [--dtype bf16|fp32] [--out results.json] [--dry-run]
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

from sparkc import api
from sparkc.tools.benchutil import graph_replay, timer

LORA = """
model LoraBench(d = {d}, m = {meta}) {{
  input x: float[B, N, d]
  input meta: float[B, m]
  y = lora_linear(x, meta, out={out}, rank={rank}, gen_dim={gen})
  output y
}}
"""
DEMOPACK = """
model DemopackBench(d = {d}) {{
  input x: float[B, N, d]
  y = demopack_linear(x, out={out}, codewords={cw}, per_row={per_row}, seed=0)
  output y
}}
"""


def run_pair(label, impls, inputs, grads_of, gy, bench, flops, graphs=False) -> list[dict]:
    """Rows of every (impl, mode): impls maps a name to a callable of the inputs -> y. With
    `graphs` (on a GPU), sparkc's and the comparison's calls again, replayed from a CUDA graph
    (`<impl> graph`): the same kernels without the per-call host time, which separates a
    host-bound row from a kernel gap (the gradients accumulate across replays, as they do
    across the per-call rows' calls)."""
    rows = []
    todo = list(impls.items())
    if graphs:
        todo += [(f"{k} graph", f) for k, f in impls.items() if k != "eager"]
    for impl, fn in todo:

        def fwd(fn=fn):
            with torch.no_grad():
                return fn(**inputs)

        def fwd_bwd(fn=fn):
            fn(**grads_of).backward(gy)

        for mode, call in (("forward", fwd), ("forward+backward", fwd_bwd)):
            call()  # warm-up: compiles and tunes
            if impl.endswith(" graph"):
                call = graph_replay(call)
            ms = bench(call)
            rows.append(
                {
                    "block": label,
                    "impl": impl,
                    "mode": mode,
                    "ms": ms,
                    "fwd_gflop": flops.get(impl.removesuffix(" graph"), float("nan")) / 1e9,
                }
            )
    return rows


def lora_rows(a, device, dtype, bench) -> list[dict]:
    b, n, d, out, rank, meta, gen = a.batch, a.seq, a.d, a.lora_out, a.rank, a.meta, a.gen_dim
    m = api.load_source(
        LORA.format(d=d, meta=meta, out=out, rank=rank, gen=gen), "lora_bench.spark"
    )
    torch.manual_seed(0)
    tri = m.Model(impl="triton").to(device, dtype)
    with torch.no_grad():  # a non-zero delta (gen_b starts at zero)
        for p in (tri.get_parameter("y.gen_b.weight"), tri.get_parameter("y.gen_b.bias")):
            p.normal_(0, 0.02)
    ref = m.Model(impl="reference").to(device, dtype)
    ref.load_state_dict(tri.state_dict())
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(b, n, d, device=device, dtype=dtype, generator=g)
    mt = torch.randn(b, meta, device=device, dtype=dtype, generator=g)
    xg, mg = x.clone().requires_grad_(True), mt.clone().requires_grad_(True)
    w = tri.get_parameter("y.base.weight").detach().clone().requires_grad_(True)
    bias = tri.get_parameter("y.base.bias").detach().clone().requires_grad_(True)
    gy = torch.randn(b, n, out, device=device, dtype=dtype, generator=g)
    impls = {
        "sparkc": lambda x, meta: tri(x=x, meta=meta).y,
        "base F.linear": lambda x, meta: F.linear(x, w, bias),
        "eager": lambda x, meta: ref(x=x, meta=meta).y,
    }
    rows_m = b * n
    base = 2.0 * rows_m * d * out
    lowrank = 2.0 * rows_m * rank * (d + out)
    hyper = 2.0 * b * (meta * gen + gen * gen + gen * rank * (d + out))
    flops = {
        "sparkc": base + lowrank + hyper,
        "base F.linear": base,
        "eager": base + lowrank + hyper,
    }
    label = f"lora_linear out {out} rank {rank} meta {meta}"
    inputs, grads_of = {"x": x, "meta": mt}, {"x": xg, "meta": mg}
    return run_pair(label, impls, inputs, grads_of, gy, bench, flops, graphs=device == "cuda")


def demopack_rows(a, device, dtype, bench) -> list[dict]:
    b, n, d, out, cw, per_row = a.batch, a.seq, a.d, a.dp_out, a.codewords, a.per_row
    m = api.load_source(
        DEMOPACK.format(d=d, out=out, cw=cw, per_row=per_row), "demopack_bench.spark"
    )
    torch.manual_seed(0)
    tri = m.Model(impl="triton").to(device, dtype)
    ref = m.Model(impl="reference").to(device, dtype)
    ref.load_state_dict(tri.state_dict())
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(b, n, d, device=device, dtype=dtype, generator=g)
    xg = x.clone().requires_grad_(True)
    w = (0.02 * torch.randn(out, d, device=device, dtype=dtype, generator=g)).requires_grad_(True)
    bias = torch.zeros(out, device=device, dtype=dtype, requires_grad=True)
    gy = torch.randn(b, n, out, device=device, dtype=dtype, generator=g)
    impls = {
        "sparkc": lambda x: tri(x=x).y,
        "dense F.linear": lambda x: F.linear(x, w, bias),
        "eager": lambda x: ref(x=x).y,
    }
    rows_m = b * n
    dense = 2.0 * rows_m * d * out
    lookup = 2.0 * rows_m * cw * d + rows_m * out * per_row
    flops = {"sparkc": lookup, "dense F.linear": dense, "eager": lookup}
    label = f"demopack_linear out {out} codewords {cw} per_row {per_row}"
    return run_pair(label, impls, {"x": x}, {"x": xg}, gy, bench, flops, graphs=device == "cuda")


def ratios(rows) -> list[str]:
    t = {(r["block"].split()[0], r["impl"], r["mode"]): r["ms"] for r in rows}
    lines = []
    for mode in ("forward", "forward+backward"):
        s, base = t[("lora_linear", "sparkc", mode)], t[("lora_linear", "base F.linear", mode)]
        lines.append(f"lora_linear {mode}: sparkc / base linear = {s / base:.3f} (target <= 1.15)")
    for mode in ("forward", "forward+backward"):
        s = t[("demopack_linear", "sparkc", mode)]
        dense = t[("demopack_linear", "dense F.linear", mode)]
        lines.append(f"demopack_linear {mode}: dense / sparkc = {dense / s:.3f} (target >= 2)")
    for mode in ("forward", "forward+backward"):  # both replayed from CUDA graphs (GPU runs)
        pairs = (
            ("lora_linear", "base F.linear", "sparkc / base linear"),
            ("demopack_linear", "dense F.linear", "dense / sparkc"),
        )
        for block, other, what in pairs:
            s, o = t.get((block, "sparkc graph", mode)), t.get((block, f"{other} graph", mode))
            if s and o:
                value = s / o if block == "lora_linear" else o / s
                lines.append(f"{block} {mode}, both graphed: {what} = {value:.3f}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--lora-out", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--meta", type=int, default=64)
    ap.add_argument("--gen-dim", type=int, default=64)
    ap.add_argument("--dp-out", type=int, default=4096)
    ap.add_argument("--codewords", type=int, default=256)
    ap.add_argument("--per-row", type=int, default=4)
    ap.add_argument("--out", "--json", dest="out", help="also write the rows as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="CPU, interpreter, tiny shapes")
    a = ap.parse_args(argv)
    if a.dry_run:
        device, dtype = "cpu", torch.float32
        a.batch, a.seq, a.d, a.lora_out, a.meta, a.gen_dim = 2, 5, 24, 20, 6, 8
        a.dp_out, a.codewords = 40, 16
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: use --dry-run for the CPU smoke run", file=sys.stderr)
            return 2
        device, dtype = "cuda", {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    bench = timer(device, warmup=5, rep=50)
    rows = lora_rows(a, device, dtype, bench) + demopack_rows(a, device, dtype, bench)
    print(
        f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu (dry run)'}; "
        f"dtype {dtype}; torch {torch.__version__}"
    )
    print(f"{'block':44} {'impl':16} {'mode':18} {'ms':>9} {'fwd GFLOP':>10}")
    for r in rows:
        print(
            f"{r['block']:44} {r['impl']:16} {r['mode']:18} {r['ms']:9.4f} {r['fwd_gflop']:10.4g}"
        )
    summary = ratios(rows)
    print("\n".join(summary))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(
                {"dtype": str(dtype), "device": device, "rows": rows, "ratios": summary},
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
