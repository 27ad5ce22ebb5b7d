"""Benchmark of the opcode tape machine (SPEC §5.1 `opcode_tape`) on its kernels vs eager.

For each batch size (256 and 4096 tapes by default) of random tapes of T=64 instructions over
D=256 (bfloat16 by default; opcodes biased towards pushes, budget 64 so whole tapes run, capacity
32), it times with triton.testing.do_bench medians, forward and forward+backward (the backward
with random cotangents on `top` and `checks`, gradients to `args` and `branch`):
  - sparkc: a generated one-op module's Triton path (its input check of the opcodes included:
    one host synchronisation per call);
  - kernels: the kernel fragment alone (codegen_templates/procedural_opcode_tape.py.jinja);
  - eager: the reference rule (runtime/reference/procedural.py, a Python loop over positions),
    what the Triton path ran before the kernels;
  - graph (GPU runs): sparkc's calls replayed from a CUDA graph, the kernels without any host
    time (the opcode check, which synchronises, is skipped inside a capture).
Targets from issue 20 (printed, not asserted): sparkc ≤ 0.1 ms forward and ≤ 0.2 ms
forward+backward at 256 × 64 × 256, ≥ 100× eager, 4096 tapes within 4× of 256 tapes' time.

Run (GPU): python bench/procedural_tape.py [--dtype bf16|fp32] [--tapes 256,4096] [--out r.json]
Dry run (CPU, Triton interpreter, tiny shapes, one timing each: checks the plumbing only):
     python bench/procedural_tape.py --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sparkc.tools.benchutil import graph_replay, timer

SRC = """
model TapeBench(d = {d}) {{
  input ops: i32[B, T]
  input args: float[B, T, d]
  input has_arg: bool[B, T]
  top, depth, status, steps, checks, trace = opcode_tape(ops, args, has_arg, budget={budget},
                                                         capacity={capacity})
  output top
  output depth
  output status
  output steps
  output checks
  output trace
}}
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--tapes", default="256,4096", help="comma-separated batch sizes")
    ap.add_argument("--length", type=int, default=64, help="instructions per tape (T)")
    ap.add_argument("--dim", type=int, default=256, help="argument width (D)")
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--capacity", type=int, default=32)
    ap.add_argument("--out", "--json", dest="out", help="write the rows as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="CPU interpreter, tiny shapes")
    return ap.parse_args(argv)


def random_tapes(b: int, t_len: int, g):
    import torch

    # PLAN RETR ASSUME EXEC LEMMA CHECK BRANCH MERGE CITE, end: pushes weigh most.
    weights = torch.tensor([2, 2, 1, 1.5, 1, 1.5, 1, 0.5, 0.5, 0.02])
    draws = torch.multinomial(weights, b * t_len, replacement=True, generator=g)
    ops = torch.where(draws == 9, -1, draws).reshape(b, t_len).to(torch.int32)
    has = torch.rand(b, t_len, generator=g) < 0.8
    return ops, has


def rows_for(b: int, args_ns, dev: str, dtype, bench) -> list[dict]:
    import torch
    from sparkc.runtime.loader import load_source
    from sparkc.runtime.reference import REFERENCE, RefContext

    from sparkc import api
    from sparkc.codegen.render import render

    t_len, d = args_ns.length, args_ns.dim
    budget, capacity = args_ns.budget, args_ns.capacity
    g = torch.Generator().manual_seed(b)
    ops, has = random_tapes(b, t_len, g)
    ops, has = ops.to(dev), has.to(dev)
    args = torch.randn(b, t_len, d, generator=g).to(dev, dtype).requires_grad_(True)
    gt = torch.randn(b, d, generator=g).to(dev, dtype)
    gc = torch.randn(b, t_len, d, generator=g).to(dev, dtype)

    mod = api.load_source(SRC.format(d=d, budget=budget, capacity=capacity), "tape_bench.spark")
    net = mod.Model(impl="triton").to(dev, dtype)
    branch = net.get_parameter("top.branch")
    prelude = render("prelude.py.jinja", version="bench", source_name="procedural_tape")
    frag = load_source(
        "tape_b", prelude + "\n\n" + render("procedural_opcode_tape.py.jinja", name="tape_b")
    )
    ref = REFERENCE["opcode_tape"]
    hp = {"budget": budget, "capacity": capacity}

    def sparkc_out():
        out = net(ops=ops, args=args, has_arg=has)
        return out["top"], out["checks"]

    def kernels_out():
        out = frag.tape_b(ops, args, has, branch, budget, capacity)
        return out[0], out[4]

    def eager_out():
        out = ref({"ops": ops, "args": args, "has_arg": has}, {"branch": branch}, hp, RefContext())
        return out[0], out[4]

    with torch.no_grad():  # also compiles the kernels before any timing
        status = frag.tape_b(ops, args, has, branch, budget, capacity)[2]
    statuses = torch.bincount(status.long().cpu(), minlength=4).tolist()
    rows = []
    impls = [("sparkc", sparkc_out), ("kernels", kernels_out), ("eager", eager_out)]
    if dev == "cuda":
        impls.append(("graph", sparkc_out))
    for name, fn in impls:

        def fwd(fn=fn):
            with torch.no_grad():
                fn()

        def fwd_bwd(fn=fn):
            top, checks = fn()
            torch.autograd.backward([top, checks], [gt, gc])

        if name == "graph":  # recorded once: no host work (the opcode check is skipped inside
            fwd, fwd_bwd = graph_replay(fwd), graph_replay(fwd_bwd)  # a capture) per call
        rows.append(
            {
                "impl": name,
                "tapes": b,
                "T": t_len,
                "D": d,
                "dtype": str(dtype).replace("torch.", ""),
                "fwd_ms": bench(fwd),
                "fwd_bwd_ms": bench(fwd_bwd),
                "statuses": statuses,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    if ns.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
        ns.length, ns.dim = min(ns.length, 9), min(ns.dim, 16)
        ns.tapes = ",".join(str(2 + 2 * k) for k, _ in enumerate(ns.tapes.split(",")))
    import torch

    dev = "cpu" if ns.dry_run else "cuda"
    dtype = torch.float32 if (ns.dtype == "fp32" or ns.dry_run) else torch.bfloat16
    bench = timer("cpu" if ns.dry_run else "cuda", warmup=5, rep=50)
    rows: list[dict] = []
    for b in (int(t) for t in ns.tapes.split(",")):
        rows += rows_for(b, ns, dev, dtype, bench)
    device = "cpu (interpreter, dry run)" if ns.dry_run else torch.cuda.get_device_name()
    print(
        f"opcode_tape on {device}: T={ns.length} D={ns.dim} budget={ns.budget} "
        f"capacity={ns.capacity} {rows[0]['dtype']}"
    )
    print(
        f"{'impl':8} {'tapes':>6} {'fwd ms':>9} {'fwd+bwd ms':>11} {'× eager fwd':>12} "
        f"{'× eager f+b':>12}  statuses ok/under/budget/cap"
    )
    eager = {(r["tapes"]): r for r in rows if r["impl"] == "eager"}
    for r in rows:
        e = eager[r["tapes"]]
        r["speedup_fwd"] = e["fwd_ms"] / r["fwd_ms"]
        r["speedup_fwd_bwd"] = e["fwd_bwd_ms"] / r["fwd_bwd_ms"]
        print(
            f"{r['impl']:8} {r['tapes']:>6} {r['fwd_ms']:>9.4f} {r['fwd_bwd_ms']:>11.4f} "
            f"{r['speedup_fwd']:>12.1f} {r['speedup_fwd_bwd']:>12.1f}  {r['statuses']}"
        )
    sp = {r["tapes"]: r for r in rows if r["impl"] == "sparkc"}
    sizes = sorted(sp)
    if sizes:
        s0 = sp[sizes[0]]
        print(
            f"targets at {sizes[0]} tapes: fwd {s0['fwd_ms']:.4f} ms (≤ 0.1), fwd+bwd "
            f"{s0['fwd_bwd_ms']:.4f} ms (≤ 0.2), × eager {s0['speedup_fwd']:.0f} / "
            f"{s0['speedup_fwd_bwd']:.0f} (≥ 100)"
        )
        for b in sizes[1:]:
            print(
                f"{b} tapes / {sizes[0]} tapes: fwd {sp[b]['fwd_ms'] / s0['fwd_ms']:.2f}×, "
                f"fwd+bwd {sp[b]['fwd_bwd_ms'] / s0['fwd_bwd_ms']:.2f}× (≤ 4)"
            )
    if ns.out:
        with open(ns.out, "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
