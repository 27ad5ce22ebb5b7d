"""Where the host time of a generated module's call goes (for host-bound rows of `sparkc bench`).

Consumes: a `.spark` file or `--op NAME` (as `sparkc bench`), a shape, a dtype. Produces:
- the host floor of one launch on this machine: an empty Triton kernel with 16 pointer/int
  arguments, `torch.empty`, and an empty `torch.autograd.Function.apply`, in µs per call;
- for the forward and forward+backward of the module's Triton path, the wall time per call with
  the GPU kept ahead of the host (no synchronisation inside the loop) and a cProfile of the
  Python functions by their own time (`tottime`), top `--top`.
Needs a CUDA GPU. Timings are printed, never asserted.

Run: python bench/host_overhead.py --op spd_router --shape B=8,N=2048,D=1024 [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

from sparkc import api
from sparkc.tools.bench import make_inputs, op_program, parse_shape


@triton.jit
def _empty_kernel(a0, a1, a2, a3, a4, a5, a6, a7, i0, i1, i2, i3, i4, i5, i6, i7, B: tl.constexpr):
    pass


class _Nothing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g


def per_call_us(fn, n: int = 2000) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def floors() -> dict[str, float]:
    ts = [torch.empty(1024, device="cuda") for _ in range(8)]
    ints = list(range(1000, 1008))
    x = torch.empty(16, device="cuda", requires_grad=True)
    return {
        "empty triton kernel, 16 args": per_call_us(lambda: _empty_kernel[(1,)](*ts, *ints, B=64)),
        "torch.empty [1024]": per_call_us(lambda: torch.empty(1024, device="cuda")),
        "autograd.Function.apply": per_call_us(lambda: _Nothing.apply(x)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--op")
    ap.add_argument("--shape", default="B=8,N=2048,D=1024")
    ap.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    ap.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args(argv)
    shape = parse_shape(args.shape)
    if args.op:
        source, name = op_program(args.op, {}, shape["D"]), f"bench_{args.op}.spark"
    else:
        source, name = Path(args.file).read_text(), Path(args.file).name
    overrides = {k: int(v) for k, _, v in (d.partition("=") for d in args.defines)}
    module = api.load_source(source, name, **overrides)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    print(f"host floors on this machine ({torch.cuda.get_device_name()}):")
    for what, us in floors().items():
        print(f"  {us:8.1f} us  {what}")
    torch.manual_seed(0)
    net = module.Model(impl="triton").cuda().to(dtype)
    inputs = make_inputs(module, shape, "cuda", dtype, torch.Generator().manual_seed(0))

    def fwd():
        with torch.no_grad():
            return net(**inputs)

    def fwd_bwd():
        out = net(**inputs)
        loss = out["loss"] if out.get("loss") is not None else None
        if loss is None:
            loss = sum(v.float().sum() for v in out.values() if v.is_floating_point())
        loss.backward()

    for mode, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        fn()
        fn()
        us = per_call_us(fn, args.calls)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        torch.cuda.synchronize()
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(args.top)
        body = text.getvalue()
        start = body.find("   ncalls")
        print(
            f"\n== {mode}: {us / 1e3:.3f} ms per call (host-paced wall), cProfile of {args.calls}"
        )
        print(body[start:] if start >= 0 else body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
