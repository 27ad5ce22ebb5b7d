"""Memory-bandwidth benchmark of the generated pointwise and row-norm kernels (GPU only).

Measures, at >= 64 MB per tensor, the achieved bandwidth of
  - a 3-op pointwise chain  y = silu(a + b) * c   (sparkc pointwise template, one kernel),
  - RMSNorm with a fused residual add  s = x + r; y = rmsnorm(s)  (sparkc rownorm template),
  - the same with a plain RMSNorm and LayerNorm,
against torch eager and torch.compile, and a measured device-to-device copy as the roofline
(GB/s counts the bytes each op must read and write once). Prints a table; `--json PATH` also
writes the rows. Never asserts timings.

    python bench/bench_pointwise.py [--mb 64] [--dtype bfloat16] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import torch

from sparkc.tools.benchutil import median_ms


def build_module():
    from sparkc.runtime import launch
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    launch.configure_triton_cache()
    text = render("prelude.py.jinja", version="bench", source_name="bench_pointwise")
    text += render(
        "primitives_pointwise.py.jinja",
        name="chain",
        inputs=["a", "b", "c"],
        body=["t0 = a + b", "t1 = t0 * tl.sigmoid(t0)", "t2 = t1 * c"],
        outputs=[("y", "t2")],
    )
    for name, kind, residual in [
        ("rms_res", "rms", True),
        ("rms", "rms", False),
        ("ln", "layer", False),
    ]:
        text += "\n\n" + render(
            "primitives_rownorm.py.jinja", name=name, kind=kind, residual=residual
        )
    return load_source("bench_pointwise", text)


ROUNDS = 3


bench_ms = functools.partial(median_ms, warmup=25, rep=100)


def chain_eager(a, b, c):
    return torch.nn.functional.silu(a + b) * c


def rms_res_eager(x, r, w, eps):
    s = x + r
    sf = s.float()
    y = sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + eps) * w.float()
    return y.to(x.dtype), s


def rms_eager(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)


def ln_eager(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="size of each activation tensor (MB)")
    parser.add_argument("--dim", type=int, default=4096, help="row width of the norms")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also time each norm at every (rows per program, warps) tuning candidate, and show "
        "which one the tuner picked",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_pointwise needs a CUDA GPU", file=sys.stderr)
        return 2

    dtype = getattr(torch, args.dtype)
    esize = torch.empty((), dtype=dtype).element_size()
    numel = args.mb * (1 << 20) // esize
    D = args.dim
    rows = numel // D
    numel = rows * D
    nbytes = numel * esize
    mod = build_module()
    dev = "cuda"
    torch.manual_seed(0)
    a, b, c = (torch.randn(rows, D, device=dev, dtype=dtype) for _ in range(3))
    w = torch.randn(D, device=dev, dtype=dtype)
    bias = torch.randn(D, device=dev, dtype=dtype)
    eps = 1e-6

    src = torch.empty(numel, device=dev, dtype=dtype)
    dst = torch.empty_like(src)
    copy_ms = bench_ms(lambda: dst.copy_(src))
    copy_gbs = 2 * nbytes / copy_ms / 1e6

    # (workload, bytes moved, {impl: fn})
    workloads = [
        (
            "silu(a+b)*c",
            4 * nbytes,
            {
                "sparkc": lambda: mod.chain(a, b, c),
                "eager": lambda: chain_eager(a, b, c),
            },
            chain_eager,
            (a, b, c),
        ),
        (
            "rmsnorm(x+r) -> y,s",
            4 * nbytes,
            {
                "sparkc": lambda: mod.rms_res(a, b, w, eps),
                "eager": lambda: rms_res_eager(a, b, w, eps),
            },
            rms_res_eager,
            (a, b, w, eps),
        ),
        (
            "rmsnorm(x)",
            2 * nbytes,
            {"sparkc": lambda: mod.rms(a, w, eps), "eager": lambda: rms_eager(a, w, eps)},
            rms_eager,
            (a, w, eps),
        ),
        (
            "layernorm(x)",
            2 * nbytes,
            {"sparkc": lambda: mod.ln(a, w, bias, eps), "eager": lambda: ln_eager(a, w, bias, eps)},
            ln_eager,
            (a, w, bias, eps),
        ),
    ]
    # Every (workload, impl) is timed in ROUNDS interleaved rounds and its fastest median is
    # reported with the slowest beside it: on the lent H200 one median of the same kernel swung
    # up to 2x between consecutive measurements (docs/performance.md, 2026-12-02).
    cases = []
    for label, moved, impls, eager_fn, eager_args in workloads:
        if not args.no_compile:
            compiled = torch.compile(eager_fn)
            impls = {**impls, "torch.compile": lambda f=compiled, x=eager_args: f(*x)}
        cases += [(label, moved, impl, fn) for impl, fn in impls.items()]
    times: dict[tuple[str, str], list[float]] = {}
    with torch.no_grad():
        for _ in range(ROUNDS):
            for label, _moved, impl, fn in cases:
                times.setdefault((label, impl), []).append(bench_ms(fn))
    results = []
    for label, moved, impl, _fn in cases:
        ms = min(times[label, impl])
        gbs = moved / ms / 1e6
        results.append(
            {
                "workload": label,
                "impl": impl,
                "ms": ms,
                "slowest_round_ms": max(times[label, impl]),
                "GB/s": gbs,
                "of_copy": gbs / copy_gbs,
            }
        )

    sweep = []
    if args.sweep:
        calls = {
            "rms_res": (lambda: mod.rms_res(a, b, w, eps), 4 * nbytes),
            "rms": (lambda: mod.rms(a, w, eps), 2 * nbytes),
            "ln": (lambda: mod.ln(a, w, bias, eps), 2 * nbytes),
        }
        with torch.no_grad():
            for name, (call, moved) in calls.items():
                tuned = getattr(mod, f"{name}_fwd_config")
                picked = []

                def spy(*a_, tuned=tuned, picked=picked):
                    picked.append(tuple(tuned(*a_)))
                    return picked[-1]

                setattr(mod, f"{name}_fwd_config", spy)
                call()
                for rows_per in (1, 2, 4):
                    for warps in (4, 8, 16):
                        cfg = (rows_per, warps)
                        setattr(mod, f"{name}_fwd_config", lambda *a_, cfg=cfg: cfg)
                        ms = bench_ms(call)
                        sweep.append(
                            {
                                "norm": name,
                                "rows_per_program": rows_per,
                                "warps": warps,
                                "ms": ms,
                                "of_copy": moved / ms / 1e6 / copy_gbs,
                                "tuner_pick": cfg == picked[0],
                            }
                        )
                setattr(mod, f"{name}_fwd_config", tuned)

    print(f"device: {torch.cuda.get_device_name()}  dtype: {args.dtype}  rows x D: {rows} x {D}")
    print(f"tensor: {nbytes / 2**20:.0f} MiB   device-to-device copy: {copy_gbs:.0f} GB/s\n")
    print(f"{'workload':<22}{'impl':<15}{'ms':>9}{'slowest':>9}{'GB/s':>9}{'% copy':>9}")
    for r in results:
        print(
            f"{r['workload']:<22}{r['impl']:<15}{r['ms']:>9.3f}{r['slowest_round_ms']:>9.3f}"
            f"{r['GB/s']:>9.0f}{100 * r['of_copy']:>8.0f}%"
        )
    if sweep:
        print(f"\n{'norm':<10}{'rows/prog':>10}{'warps':>7}{'ms':>9}{'% copy':>8}  tuner")
        for r in sweep:
            print(
                f"{r['norm']:<10}{r['rows_per_program']:>10}{r['warps']:>7}{r['ms']:>9.4f}"
                f"{100 * r['of_copy']:>7.0f}%  {'<- picked' if r['tuner_pick'] else ''}"
            )
    if args.json:
        meta = {
            "device": torch.cuda.get_device_name(),
            "dtype": args.dtype,
            "rows": rows,
            "dim": D,
            "tensor_bytes": nbytes,
            "copy_GB/s": copy_gbs,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "sweep": sweep}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
