"""Benchmark of the SPaR-K block kernels (fk_attention, verifier_stack) on a GPU.

Each block is compiled from a one-op `.spark` program (B=8, N=2048, D=1024, H=16 by default;
hops 4, stack 32) and timed with triton.testing.do_bench medians, forward and forward+backward,
with the peak memory of one call:
  - sparkc: the generated module's Triton path (projection GEMMs + the block's kernels);
  - eager: the same module's reference path (fk_attention materialises A [B,H,N,N]; the
    verifier stack is a Python loop of one step per token);
  - torch.compile: fk_attention's reference path compiled whole; for the verifier stack the scan
    alone (given push/pop/encodings) is timed as an eager per-step loop and with its step body
    compiled (compiling the whole loop would unroll N steps), unless --no-compile.
Targets from the issue are printed as ratios (timings only, no assertions):
  - fk_attention per hop: fk core forward (q, k, v → R) / hops vs one causal flash-attention forward
    (codegen_templates/attention.py.jinja) on the same q, k, v — target ≤ 1.2;
  - verifier_stack: eager time / sparkc time — target ≥ 20.

Run: python bench/bench_spark_k.py [--dtype bf16|fp32] [--batch 8] [--seq 2048] [--json out.json]
     [--no-compile]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys

import torch
from sparkc.runtime.loader import load_source
from sparkc.runtime.reference.spark_k import _bump

from sparkc import api
from sparkc.codegen.render import render
from sparkc.tools.benchutil import median_ms, peak_mb

FK = """
model FkBench(d = {d}) {{
  input x: float[B, N, d]
  y = fk_attention(x, heads={heads}, hops={hops}, beta=0.5)
  output y
}}
"""

SPD = """
model SpdBench(d = {d}) {{
  input x: float[B, N, d]
  r = spd_router(x)
  y = r.y
  output y
}}
"""

STACK = """
model StackBench(d = {d}) {{
  input h: float[B, N, d]
  r, s, p, l = verifier_stack(h, stack={stack})
  output r
  output s
  output p
}}
"""


bench = functools.partial(median_ms, warmup=3, rep=20)


def fragment(template: str, name: str, **ctx):
    prelude = render("prelude.py.jinja", version="bench", source_name="bench_spark_k")
    return getattr(load_source(name, prelude + "\n\n" + render(template, name=name, **ctx)), name)


def objective(out) -> torch.Tensor:
    # Every float output, auxiliary losses (spd_router's separation loss, the stack penalty)
    # included, so their backward kernels run too.
    return sum(v.float().sum() for v in out.values() if v.is_floating_point())


def model_rows(block: str, module, x: torch.Tensor, compile_fn, do_compile: bool) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    tri = module.Model(impl="triton").cuda().to(x.dtype)
    ref = module.Model(impl="reference").cuda().to(x.dtype)
    ref.load_state_dict(tri.state_dict())
    name = module.INPUTS[0].name
    xg = x.clone().requires_grad_(True)
    impls = [("sparkc", tri), ("eager", ref)]
    if do_compile:
        impls.append(("torch.compile", compile_fn(ref)))
    for impl, net in impls:

        def fwd(net=net):
            with torch.no_grad():
                return net(**{name: x})

        def fwd_bwd(net=net):
            objective(net(**{name: xg})).backward()

        for mode, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
            fn()  # warm-up: compiles kernels, tunes tiles, builds torch.compile graphs
            rows.append(
                {
                    "block": block,
                    "impl": impl,
                    "mode": mode,
                    "ms": bench(fn),
                    "peak_mb": peak_mb(fn),
                }
            )
    return rows


def _stack_step(mem, ptr, push_t, pop_t, e_t, slots, size: int):
    wp = push_t[:, None] * _bump(ptr, slots)
    mem = mem * (1 - wp)[..., None] + wp[..., None] * e_t[:, None, :]
    ptr = torch.clamp(ptr + push_t - pop_t, 0, size - 1)
    read = torch.einsum("bs,bse->be", _bump(ptr - 1, slots), mem)
    return mem, ptr, read


def stack_loop_rows(b, n, d, stack, dtype, do_compile) -> list[dict]:
    """The scan alone (given push/pop/encodings), eager per-step loop vs its compiled step."""
    if not do_compile:
        return []
    g = torch.Generator(device="cuda").manual_seed(0)
    elem = d // 2
    pi = torch.softmax(torch.randn(b, n, 3, device="cuda", generator=g), -1)
    e = torch.randn(b, n, elem, device="cuda", generator=g)
    slots = torch.arange(stack, device="cuda", dtype=torch.float32)
    step = torch.compile(_stack_step, dynamic=False)
    rows = []
    for impl, fn_step in (("eager step loop", _stack_step), ("torch.compile step loop", step)):

        def run(fn_step=fn_step):
            mem = e.new_zeros(b, stack, elem)
            ptr = e.new_zeros(b)
            reads = []
            with torch.no_grad():
                for t in range(n):
                    mem, ptr, r = fn_step(mem, ptr, pi[:, t, 0], pi[:, t, 1], e[:, t], slots, stack)
                    reads.append(r)
            return torch.stack(reads, 1)

        run()
        rows.append(
            {
                "block": "verifier_stack scan",
                "impl": impl,
                "mode": "forward",
                "ms": bench(run),
                "peak_mb": peak_mb(run),
            }
        )
    return rows


def per_hop_rows(b, n, d, heads, hops, dtype) -> tuple[list[dict], float]:
    hd = d // heads
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(b, n, heads, hd, device="cuda", dtype=dtype, generator=g) for _ in range(3)
    )
    fk = fragment("spark_k_fk_attention.py.jinja", "bench_fk", causal=True)
    attn = fragment(
        "attention.py.jinja",
        "bench_attn",
        causal=True,
        group=1,
        rope=False,
        rope_base=10000.0,
        basis=None,
    )
    with torch.no_grad():
        fk(q, k, v, hops, 0.5)
        attn(q, k, v)
        t_fk = bench(lambda: fk(q, k, v, hops, 0.5))
        t_attn = bench(lambda: attn(q, k, v))
        t_sdpa = bench(
            lambda: torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
        )
    rows = [
        {
            "block": "fk_attention core",
            "impl": "sparkc",
            "mode": f"forward ({hops} hops)",
            "ms": t_fk,
            "peak_mb": float("nan"),
        },
        {
            "block": "causal attention",
            "impl": "sparkc",
            "mode": "forward",
            "ms": t_attn,
            "peak_mb": float("nan"),
        },
        {
            "block": "causal attention",
            "impl": "torch sdpa",
            "mode": "forward",
            "ms": t_sdpa,
            "peak_mb": float("nan"),
        },
    ]
    return rows, (t_fk / hops) / t_attn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--hops", type=int, default=4)
    ap.add_argument("--stack", type=int, default=32)
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--blocks", default="fk,spd,stack", help="which of fk, spd, stack to run")
    args = ap.parse_args(argv)
    blocks = set(args.blocks.split(","))
    if not torch.cuda.is_available():
        print("bench_spark_k: needs a CUDA GPU", file=sys.stderr)
        return 1
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    b, n, d = args.batch, args.seq, args.dim
    x = torch.randn(b, n, d, device="cuda", dtype=dtype)
    rows: list[dict] = []
    hop_ratio = float("nan")
    stack_speedup: dict[str, float] = {}
    if "fk" in blocks:
        fk_src = FK.format(d=d, heads=args.heads, hops=args.hops)
        fk_mod = api.load_source(fk_src, "fk_bench.spark")
        rows += model_rows("fk_attention", fk_mod, x, torch.compile, not args.no_compile)
        hop_rows, hop_ratio = per_hop_rows(b, n, d, args.heads, args.hops, dtype)
        rows += hop_rows
    if "spd" in blocks:
        spd_mod = api.load_source(SPD.format(d=d), "spd_bench.spark")
        rows += model_rows("spd_router", spd_mod, x, torch.compile, not args.no_compile)
    if "stack" in blocks:
        st_mod = api.load_source(STACK.format(d=d, stack=args.stack), "stack_bench.spark")
        rows += model_rows("verifier_stack", st_mod, x, lambda m: m, False)
        rows += stack_loop_rows(b, n, d, args.stack, dtype, not args.no_compile)
        ms = {(r["block"], r["impl"], r["mode"]): r["ms"] for r in rows}
        stack_speedup = {
            mode: ms[("verifier_stack", "eager", mode)] / ms[("verifier_stack", "sparkc", mode)]
            for mode in ("forward", "forward+backward")
        }
    print(
        f"SPaR-K blocks: B={b} N={n} D={d} H={args.heads} hops={args.hops} "
        f"stack={args.stack} {args.dtype} on {torch.cuda.get_device_name()}"
    )
    print(f"{'block':<22}{'impl':<26}{'mode':<20}{'ms':>10}{'peak MiB':>11}")
    for r in rows:
        peak = "" if math.isnan(r["peak_mb"]) else f"{r['peak_mb']:.0f}"
        print(f"{r['block']:<22}{r['impl']:<26}{r['mode']:<20}{r['ms']:>10.3f}{peak:>11}")
    if "fk" in blocks:
        print(f"fk_attention per-hop / causal attention forward: {hop_ratio:.2f} (target <= 1.2)")
    for mode, s in stack_speedup.items():
        print(
            f"verifier_stack {mode}: sparkc is {s:.1f}x faster than the eager loop (target >= 20)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "config": vars(args),
                    "device": torch.cuda.get_device_name(),
                    "rows": rows,
                    "fk_per_hop_ratio": hop_ratio,
                    "stack_speedup": stack_speedup,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
