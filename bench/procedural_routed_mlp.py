"""Benchmark of routed_mlp (SPEC §5.2) on a GPU: sparkc's kernels against the alternatives.

Each shape is timed forward and forward+backward (triton.testing.do_bench medians, a fixed
upstream gradient), side by side in one run:
  - sparkc:           the generated module's Triton path (gate GEMM + the routed kernels of
                      codegen_templates/procedural_routed_mlp.py.jinja);
  - dense MLP:        F.linear → gelu → F.linear with the same hidden size (what a user writes);
  - grouped_mm+perm:  torch._grouped_mm for fc1 and fc2 with the eager routing, sort and
                      gather/scatter around it (skipped, with the reason, where unavailable:
                      it needs bfloat16 and a CUDA build that has it);
  - eager:            the same module's reference path (dense per group, masked);
  - sparkc graph, dense MLP graph: the first two replayed from a CUDA graph (GPU runs only): the
                      same kernels without the per-call host time (a row that cannot be
                      recorded, e.g. one that synchronises, is reported as skipped).
Shapes (learned routing, gelu): B=4, N=4096, D=1024, hidden 4096, 8 groups, 2 active; and
16,384 tokens, D=2048, hidden 8192 (8 groups of 1024), 2 active. Targets (printed as ratios,
no assertion): dense / sparkc ≥ 2.5 and grouped_mm+perm / sparkc > 1, forward and
forward+backward; the last ratio row of each mode is sparkc graph against dense MLP graph.

Run: python bench/procedural_routed_mlp.py [--dtype bf16|fp32] [--out results.json]
     python bench/procedural_routed_mlp.py --dry-run   (CPU: tiny shapes, the Triton
     interpreter, one timed call each; checks the script, not the speed)
Needs no network: the program is compiled locally by sparkc.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sparkc.tools import benchutil

PROGRAM = """
model RoutedBench(d = {d}) {{
  input x: float[B, N, d]
  y = routed_mlp(x, hidden={hidden}, groups={groups}, active={active}, route=learned, act=gelu)
  output y
}}
"""

# (label, B, N, D, hidden, groups, active)
GPU_SHAPES = [
    ("B4 N4096 D1024 h4096", 4, 4096, 1024, 4096, 8, 2),
    ("16384 tok D2048 h8192", 1, 16384, 2048, 8192, 8, 2),
]
DRY_SHAPES = [("dry-run", 1, 24, 32, 64, 4, 2)]


def timer(dry: bool):
    """Milliseconds of one call of fn after an untimed warm-up call (it compiles kernels)."""
    measure = benchutil.timer("cpu" if dry else "cuda", warmup=5, rep=50)

    def ms(fn) -> float:
        fn()
        return measure(fn)

    return ms


def grouped_mm_impl(p, groups, active):
    """fc1/fc2 with torch._grouped_mm; routing, sort, gather and scatter-add in eager torch."""
    import torch
    import torch.nn.functional as F

    w1, b1, w2, b2, gw, gb = p
    hidden, d = w1.shape
    hg = hidden // groups
    b1g = b1.view(groups, hg)

    def run(x):
        x2 = x.reshape(-1, d)
        logits = F.linear(x2, gw, gb).float()
        w = torch.softmax(logits, -1)
        top = torch.topk(logits, active, dim=-1).indices  # [T, A]
        wsel = w.gather(-1, top).to(x.dtype)
        flat = top.reshape(-1)
        order = torch.argsort(flat, stable=True)
        tok = order // active
        counts = torch.zeros(groups, dtype=torch.int32, device=x.device)
        counts.index_add_(0, flat.int(), torch.ones_like(flat, dtype=torch.int32))
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        xs = x2[tok]
        b1rows = b1g[flat[order]]
        h = F.gelu(
            torch._grouped_mm(xs, w1.view(groups, hg, d).transpose(1, 2), offs=offs) + b1rows
        )
        o = torch._grouped_mm(h, w2.view(d, groups, hg).permute(1, 2, 0), offs=offs)
        o = o * wsel.reshape(-1)[order][:, None]
        y = torch.zeros_like(x2).index_add_(0, tok, o) + b2
        return y.view(x.shape)

    return run


def rows_for(shape, dtype_name: str, dry: bool, ms) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from sparkc import api

    label, b, n, d, hidden, groups, active = shape
    dev = "cpu" if dry else "cuda"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    module = api.load_source(
        PROGRAM.format(d=d, hidden=hidden, groups=groups, active=active), "routed_bench.spark"
    )
    torch.manual_seed(0)
    tri = module.Model(impl="triton").to(dev, dtype)
    ref = module.Model(impl="reference").to(dev, dtype)
    ref.load_state_dict(tri.state_dict())
    sd = tri.state_dict()
    names = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "gate.weight", "gate.bias")
    p = [sd[f"y.{k}"].detach().clone().requires_grad_(True) for k in names]
    x = torch.randn(b, n, d, device=dev, dtype=dtype)
    xg = x.clone().requires_grad_(True)
    dy = torch.randn_like(x)

    def dense(xx):
        return F.linear(F.gelu(F.linear(xx, p[0], p[1])), p[2], p[3])

    impls = [
        ("sparkc", lambda xx: tri(x=xx).y),
        ("dense MLP", dense),
        ("grouped_mm+perm", grouped_mm_impl(p, groups, active)),
        ("eager", lambda xx: ref(x=xx).y),
    ]
    with torch.no_grad():
        y_mine = impls[0][1](x).float()
    rows = time_impls(label, dtype_name, impls, x, xg, dy, y_mine, ms)
    if dry:
        return rows, None
    # The same calls replayed from a CUDA graph (no per-call host time), timed by the caller
    # after every shape's other rows: a capture that fails can leave torch's CUDA random
    # generator unusable in this process (2026-12-07, H100: "Offset increment outside graph
    # capture" at the next shape's torch.randn), and these rows draw no random numbers.
    graphed = [(f"{k} graph", f) for k, f in impls[:2]]
    return rows, lambda: time_impls(label, dtype_name, graphed, x, xg, dy, y_mine, ms)


def time_impls(label, dtype_name, impls, x, xg, dy, y_mine, ms) -> list[dict]:
    """Rows (forward, forward+backward) of each (name, fn) of impls, printed as they are timed."""
    import torch

    rows = []
    for impl, fn in impls:
        agree = None
        if not impl.startswith("dense MLP"):  # the routed ones compute the same function
            try:
                with torch.no_grad():
                    agree = float((fn(x).float() - y_mine).abs().max())
            except Exception:  # noqa: BLE001 - reported by the timing below
                agree = None
        for mode in ("forward", "forward+backward"):
            row = {"shape": label, "impl": impl, "mode": mode, "dtype": dtype_name}
            row["max_abs_diff_vs_sparkc"] = agree
            if mode == "forward":

                def call(fn=fn):
                    with torch.no_grad():
                        return fn(x)
            else:

                def call(fn=fn):
                    fn(xg).backward(dy)

            try:
                if impl.endswith(" graph"):
                    call()  # compiles and tunes before the capture's own warm-up
                    call = benchutil.graph_replay(call)
                row["ms"] = ms(call)
            except Exception as e:  # noqa: BLE001 - an unavailable baseline is reported, not fatal
                row["ms"] = None
                row["skipped"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            rows.append(row)
            print_row(row, flush=True)
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for mode in ("forward", "forward+backward"):
            t = {r["impl"]: r["ms"] for r in rows if r["shape"] == shape and r["mode"] == mode}
            pairs = [("sparkc", "dense MLP", 2.5), ("sparkc", "grouped_mm+perm", 1.0)]
            pairs += [("sparkc", "eager", None), ("sparkc graph", "dense MLP graph", 2.5)]
            for me, impl, target in pairs:
                mine, other = t.get(me), t.get(impl)
                if me not in t:
                    continue
                speedup = other / mine if mine and other else None
                out.append(
                    {
                        "shape": shape,
                        "mode": mode,
                        "versus": impl,
                        "speedup": speedup,
                        "target": target,
                        "met": None if speedup is None or target is None else speedup >= target,
                    }
                )
    return out


def print_row(r: dict, flush: bool = False) -> None:
    ms = f"{r['ms']:.3f}" if r["ms"] is not None else "n/a"
    extra = f"  ({r['skipped']})" if "skipped" in r else ""
    print(f"{r['shape']:24} {r['impl']:18} {r['mode']:18} {ms:>10}{extra}", flush=flush)


def print_table(rows, summary) -> None:
    print(f"{'shape':24} {'impl':18} {'mode':18} {'ms':>10}")
    for r in rows:
        print_row(r)
    print()
    print(f"{'shape':24} {'mode':18} {'sparkc speed-up vs':20} {'x':>7} {'target':>7}")
    for s in summary:
        x = f"{s['speedup']:.2f}" if s["speedup"] is not None else "n/a"
        tgt = f">={s['target']}" if s["target"] else "-"
        print(f"{s['shape']:24} {s['mode']:18} {s['versus']:20} {x:>7} {tgt:>7}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--out", "--json", dest="out", help="write the rows and ratios as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, interpreter")
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
        dtype = "fp32"
    else:
        dtype = args.dtype
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("needs a CUDA device (or --dry-run)", file=sys.stderr)
        return 2
    ms = timer(args.dry_run)
    rows, later = [], []
    for shape in DRY_SHAPES if args.dry_run else GPU_SHAPES:
        shape_rows, graph_rows = rows_for(shape, dtype, args.dry_run, ms)
        rows += shape_rows
        later += [graph_rows] if graph_rows else []
    for graph_rows in later:
        rows += graph_rows()
    summary = ratios(rows)
    print_table(rows, summary)
    if args.out:
        meta = {"torch": torch.__version__, "dry_run": args.dry_run}
        if torch.cuda.is_available() and not args.dry_run:
            meta["device"] = torch.cuda.get_device_name()
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows, "ratios": summary}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
