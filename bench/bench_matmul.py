"""Benchmark of the GEMM + fused-epilogue template (codegen_templates/primitives_matmul.py.jinja) on a GPU.

For each epilogue sparkc uses and each size (M = 8192 rows, K = N in 1024..4096, bfloat16) it
times, with triton.testing.do_bench medians:
  - sparkc: the fused kernel (forward) and forward + backward;
  - torch matmul: F.linear without the epilogue (the floor the fused epilogue competes with);
  - torch eager: F.linear followed by the epilogue as separate torch ops (forward, fwd + bwd);
  - torch.compile of the eager function (forward), unless --no-compile.
Prints a table and, with --json PATH, writes the rows. Timings only: no assertions.

The kernels are compared by GPU time, so the tuner picks by GPU time too (`SPARKC_TUNE_HOST=0`,
the setting for CUDA-graph replays); `--charge-host` keeps the default model, which also charges
each candidate its host time (what a host-bound training step wants; docs/performance.md has
both tables from 2026-12-02).

Run: python bench/bench_matmul.py [--sizes 1024,2048,4096] [--json out.json] [--no-compile]
     [--charge-host]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render
from sparkc.tools.benchutil import median_ms

EPILOGUES = {
    "bias+gelu": (["bias", "act:gelu"], False),
    "bias+relu": (["bias", "act:relu"], False),
    "swiglu": ([], True),
    "bias+add": (["bias", "add:res"], False),
    "mul": (["mul:gate"], False),
}


def build(name: str, epilogue: list[str], dual: bool):
    prelude = render("prelude.py.jinja", version="bench", source_name="bench_matmul")
    text = (
        prelude
        + "\n\n"
        + render("primitives_matmul.py.jinja", name=name, epilogue=epilogue, dual=dual)
    )
    return getattr(load_source(name, text), name)


def eager(kind: str):
    table = {
        "bias+gelu": lambda x, w, b: F.gelu(F.linear(x, w, b)),
        "bias+relu": lambda x, w, b: F.relu(F.linear(x, w, b)),
        "swiglu": lambda x, wg, wu: F.silu(F.linear(x, wg)) * F.linear(x, wu),
        "bias+add": lambda x, w, b, r: F.linear(x, w, b) + r,
        "mul": lambda x, w, g: F.linear(x, w) * g,
    }
    return table[kind]


def inputs(kind: str, M: int, K: int, N: int, dtype: torch.dtype):
    x = torch.randn(M, K, device="cuda", dtype=dtype)
    w = torch.randn(N, K, device="cuda", dtype=dtype) / math.sqrt(K)
    args = {
        "bias+gelu": [x, w, torch.randn(N, device="cuda", dtype=dtype)],
        "bias+relu": [x, w, torch.randn(N, device="cuda", dtype=dtype)],
        "swiglu": [x, w, torch.randn(N, K, device="cuda", dtype=dtype) / math.sqrt(K)],
        "bias+add": [
            x,
            w,
            torch.randn(N, device="cuda", dtype=dtype),
            torch.randn(M, N, device="cuda", dtype=dtype),
        ],
        "mul": [x, w, torch.randn(M, N, device="cuda", dtype=dtype)],
    }[kind]
    return args


def plain_matmuls(args, dual: bool):
    if dual:
        return F.linear(args[0], args[1]), F.linear(args[0], args[2])
    return F.linear(args[0], args[1])


def chosen_config(fn, N: int, K: int) -> dict | None:
    """The tile configuration the tuner chose for the forward kernel of generated GEMM `fn` at
    this N and K (USE_TMA: the tensor-descriptor main loop, PERSISTENT: in a persistent grid;
    EXTERN: torch's GEMM), or None before any choice."""
    from sparkc.runtime import gemm

    kernel = fn.__globals__[fn.__name__ + "_fwd_kernel"]
    for key, cfg in gemm._GEMM_CHOICE.items():
        if key[0] == id(kernel) and key[2] == N and key[3] == K:
            return dict(cfg)
    return None


bench = functools.partial(median_ms, warmup=25, rep=100)


def fwd_bwd(fn, args):
    leaves = [a.detach().requires_grad_(True) for a in args]
    dy = None

    def step():
        nonlocal dy
        y = fn(*leaves)
        if dy is None:
            dy = torch.randn_like(y)
        y.backward(dy)
        for t in leaves:
            t.grad = None

    step()
    return step


def run(sizes: list[int], M: int, dtype: torch.dtype, use_compile: bool) -> list[dict]:
    rows = []
    for kind, (epilogue, dual) in EPILOGUES.items():
        ours = build("bench_" + kind.replace("+", "_"), epilogue, dual)
        ref = eager(kind)
        compiled = torch.compile(ref) if use_compile else None
        for n in sizes:
            K = N = n
            args = inputs(kind, M, K, N, dtype)
            flops = 2.0 * M * N * K * (2 if dual else 1)
            row = {"epilogue": kind, "M": M, "K": K, "N": N, "dtype": str(dtype)}
            row["sparkc_fwd_ms"] = bench(functools.partial(ours, *args))
            row["torch_matmul_ms"] = bench(functools.partial(plain_matmuls, args, dual))
            row["eager_fwd_ms"] = bench(functools.partial(ref, *args))
            row["compile_fwd_ms"] = bench(functools.partial(compiled, *args)) if compiled else None
            row["sparkc_fwd_bwd_ms"] = bench(fwd_bwd(ours, args))
            row["eager_fwd_bwd_ms"] = bench(fwd_bwd(ref, args))
            row["sparkc_fwd_tflops"] = flops / row["sparkc_fwd_ms"] * 1e-9
            row["torch_matmul_tflops"] = flops / row["torch_matmul_ms"] * 1e-9
            row["sparkc_fwd_config"] = chosen_config(ours, N, K)
            out = ours(*args).float()
            row["max_rel_err_vs_eager"] = ((out - ref(*args).float()).norm() / out.norm()).item()
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


COLUMNS = [
    ("epilogue", "{:>10}"),
    ("K=N", "{:>5}"),
    ("sparkc", "{:>8.3f}"),
    ("matmul", "{:>8.3f}"),
    ("eager", "{:>8.3f}"),
    ("compile", "{:>8}"),
    ("sp f+b", "{:>8.3f}"),
    ("eg f+b", "{:>8.3f}"),
    ("TF/s", "{:>6.0f}"),
    ("mm TF/s", "{:>7.0f}"),
    ("tiles", "{:>27}"),
]


def describe(cfg: dict | None) -> str:
    if not cfg:
        return "-"
    if cfg.get("EXTERN"):
        return "torch.mm"
    tiles = f"{cfg['BLOCK_M']}x{cfg['BLOCK_N']}x{cfg['BLOCK_K']} w{cfg['num_warps']} s{cfg['num_stages']}"
    return (
        tiles + (" tma" if cfg.get("USE_TMA") else "") + (" pers" if cfg.get("PERSISTENT") else "")
    )


def format_row(r: dict) -> str:
    comp = "-" if r["compile_fwd_ms"] is None else f"{r['compile_fwd_ms']:.3f}"
    vals = [
        r["epilogue"],
        r["K"],
        r["sparkc_fwd_ms"],
        r["torch_matmul_ms"],
        r["eager_fwd_ms"],
        comp,
        r["sparkc_fwd_bwd_ms"],
        r["eager_fwd_bwd_ms"],
        r["sparkc_fwd_tflops"],
        r["torch_matmul_tflops"],
        describe(r.get("sparkc_fwd_config")),
    ]
    return " ".join(fmt.format(v) for (_, fmt), v in zip(COLUMNS, vals))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1024,2048,4096", help="comma-separated K = N values")
    p.add_argument("--M", type=int, default=8192)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    p.add_argument(
        "--charge-host", action="store_true", help="tune by GPU plus host time (the default model)"
    )
    a = p.parse_args(argv)
    os.environ["SPARKC_TUNE_HOST"] = "1" if a.charge_host else "0"
    if not torch.cuda.is_available():
        print("bench_matmul needs a CUDA GPU", file=sys.stderr)
        return 2
    tuning = "GPU + host time" if a.charge_host else "GPU time"
    print(
        f"device: {torch.cuda.get_device_name()}  M={a.M} dtype={a.dtype}  (times in ms, median; "
        f"tiles tuned by {tuning})"
    )
    print(" ".join(fmt.replace(".3f", "").replace(".0f", "").format(h) for h, fmt in COLUMNS))
    rows = run([int(s) for s in a.sizes.split(",")], a.M, getattr(torch, a.dtype), not a.no_compile)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"device": torch.cuda.get_device_name(), "tuned_by": tuning, "rows": rows},
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
