"""Bandwidth benchmark of the `trajectory` op's stencil kernels (SPEC §3.2; issue 19: reach at
least 80% of the measured copy bandwidth, forward and backward) on a GPU.

The op is compiled from a one-op `.spark` program through the normal path (`api.load_source`),
and its generated autograd Function is timed with triton.testing.do_bench medians (L2 flushed):
  - forward: `Fn.forward` (one kernel) — must read x and write y: 2·B·N·D elements;
  - backward: `Fn.backward` on the saved x (one kernel, then a one-program sum of d strength) —
    must read x and dy and write dx: 3·B·N·D elements;
  - forward+backward: the public function through autograd, `y.backward(dy)`: 5·B·N·D elements.
Each row's floor is those bytes (per-row scalars such as the d strength partials are ignored).
Beside it, in the same run, `torch.empty_like(src).copy_(src)` of a `src` half that size (a copy
moving the same bytes) gives the ceiling: the row prints achieved GB/s (floor bytes / median
time), the copy's GB/s, and achieved / copy (target ≥ 80%). `host us` is the host time to issue
one call (`sparkc.runtime.autotune.issue_ms`): a row whose host time exceeds its GPU time measures
the launch path, not the kernel. A first check compares the Triton path with the module's
reference path (float64) on a small input.

Run: python bench/trajectory.py [--dtypes bf16,fp32] [--shapes 4x4096,1x65536] [--d 1024]
     [--window 6] [--out r.json (or --json, as bench/device_run.sh passes)] [--dry-run]
`--dry-run`: the same code on the CPU under the Triton interpreter at a tiny shape (times mean
nothing; a smoke test of the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

from sparkc import api
from sparkc.tools.benchutil import copy_ms, timer

SRC = """
model TrajBench(d = {d}) {{
  input x: float[B, N, d]
  y = trajectory(x, window={window})
  output y
}}
"""

# Elements of B·N·D each mode must move at least (reads + writes).
FLOOR = {"forward": 2, "backward": 3, "forward+backward": 5}


class _Ctx:
    """The autograd context `Fn.forward` fills and `Fn.backward` reads, for direct calls."""

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


def kernels_of(module):
    """(the public function, its autograd Function) of the trajectory fragment."""
    mods = [m for n, m in list(sys.modules.items()) if n.startswith(module.__name__)]
    for m in mods:
        for name in dir(m):
            if name.startswith("traj") and name.endswith("_Fn"):
                return getattr(m, name[: -len("_Fn")]), getattr(m, name)
    raise SystemExit("no trajectory fragment in the generated kernels")


def check(module, d: int, device: str) -> float:
    """Relative error of the Triton path (float32) against the float64 reference at N = 300."""
    torch.manual_seed(0)
    ref = module.Model(impl="reference").double().to(device)
    tri = module.Model(impl="triton").to(device)
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 300 if device == "cuda" else 7, d, dtype=torch.float64, generator=g)
    x = x.to(device)
    with torch.no_grad():
        want, got = ref(x=x).y, tri(x=x.float()).y.double()
    return float((got - want).norm() / want.norm())


def rows_for(fn, fn_cls, x, s, bench, device, label) -> list[dict]:
    from sparkc.runtime.autotune import issue_ms

    g = torch.Generator(device=device).manual_seed(2)
    dy = torch.randn(x.shape, device=device, generator=g).to(x.dtype)
    xg = x.clone().requires_grad_(True)
    sg = s.clone().requires_grad_(True)
    ctx = _Ctx()
    fn_cls.forward(ctx, x, s)  # warm-up: compiles and tunes the forward

    def forward():
        return fn_cls.forward(_Ctx(), x, s)

    def backward():
        return fn_cls.backward(ctx, dy)

    def forward_backward():
        xg.grad = sg.grad = None
        fn(xg, sg).backward(dy)

    b, n, d = x.shape
    out = []
    for mode, call in (
        ("forward", forward),
        ("backward", backward),
        ("forward+backward", forward_backward),
    ):
        call()  # warm-up (the backward's tuning)
        ms = bench(call)
        nbytes = FLOOR[mode] * x.numel() * x.element_size()
        copy = copy_ms(nbytes, device, x.dtype, bench)
        host = issue_ms(call) if device == "cuda" else float("nan")
        out.append(
            {
                "dtype": label,
                "B": b,
                "N": n,
                "D": d,
                "mode": mode,
                "ms": ms,
                "floor_MB": nbytes / 1e6,
                "GBps": nbytes / ms / 1e6,
                "copy_ms": copy,
                "copy_GBps": nbytes / copy / 1e6,
                "pct_of_copy": 100.0 * copy / ms,
                "host_us": host * 1e3,
            }
        )
    # The tuner's choices for this shape (a tile (BR, DC, warps, PER_SM) or a row stream
    # ("stream", SEG, warps, prefetch)): its in-process memo, keyed (kernel, source id, shape
    # class, device, host charge); the shape class holds D, the dtype and the size class.
    from sparkc.runtime import autotune

    for key, choice in autotune._PICKED.items():
        name, _, shape_class = key[0], key[1], key[2]
        if name.startswith("traj") and shape_class[:3] == (d, str(x.dtype), _size_class(b * n)):
            kind = "forward" if name.endswith("_fwd") else "backward"
            for r in out:
                if r["mode"] == kind:
                    r["choice"] = list(choice)
    return out


def _size_class(rows: int) -> int:
    """The trajectory template's size class of B·N rows (next power of two, at most 2²⁰)."""
    from sparkc.runtime.tiles import next_pow2

    return min(next_pow2(rows), 1 << 20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", default="bf16,fp32", help="comma-separated: bf16, fp32")
    ap.add_argument("--shapes", default="4x4096,1x65536", help="BxN,BxN,...")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--out", "--json", dest="out", help="also write the rows as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="CPU, interpreter, tiny shape")
    a = ap.parse_args(argv)
    if a.dry_run:
        device, a.dtypes, a.shapes, a.d = "cpu", "fp32", "1x9", 16
    elif not torch.cuda.is_available():
        print("no CUDA device: use --dry-run for the CPU smoke run", file=sys.stderr)
        return 2
    else:
        device = "cuda"
    bench = timer(device, warmup=5, rep=50)
    module = api.load_source(SRC.format(d=a.d, window=a.window), "traj_bench.spark")
    err = check(module, a.d, device)
    fn, fn_cls = kernels_of(module)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    print(f"device: {name}; torch {torch.__version__}; window {a.window}; D {a.d}")
    print(f"check: Triton path (float32) vs float64 reference, relative error {err:.2e}")
    rows = []
    for label in a.dtypes.split(","):
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[label]
        s = torch.tensor(0.2, device=device, dtype=dtype)
        for shape in a.shapes.split(","):
            b, n = (int(v) for v in shape.split("x"))
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(b, n, a.d, device=device, generator=g).to(dtype)
            rows += rows_for(fn, fn_cls, x, s, bench, device, label)
            del x
            if device == "cuda":
                torch.cuda.empty_cache()
    head = f"{'dtype':6}{'B':>3}{'N':>7}  {'mode':18}{'ms':>9}{'floor MB':>10}{'GB/s':>8}"
    print(head + f"{'copy GB/s':>11}{'% copy':>8}{'host us':>9}  tuned choice")
    for r in rows:
        print(
            f"{r['dtype']:6}{r['B']:>3}{r['N']:>7}  {r['mode']:18}{r['ms']:9.4f}"
            f"{r['floor_MB']:10.1f}{r['GBps']:8.0f}{r['copy_GBps']:11.0f}"
            f"{r['pct_of_copy']:7.1f}%{r['host_us']:9.1f}  {r.get('choice', '-')}"
        )
    if a.out:
        meta = {"device": name, "torch": torch.__version__, "window": a.window, "D": a.d}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "check_rel_err": err, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
