"""sparkc's own host time per call of a generated module, on the CPU, with every kernel launch
replaced by a no-op (no GPU needed).

The Triton path runs under the interpreter (`TRITON_INTERPRET=1`) with
`InterpretedFunction.__getitem__` stubbed, so what is timed is the generated Python around the
launches: argument checks, allocations, tuning lookups, autograd.Function calls. Triton's own
launch path is not included (`bench/host_overhead.py` measures that on a GPU). Prints the
no-grad forward's microseconds per call and launches per call, then a cProfile by own time.
Timings are printed, never asserted.

Run: python bench/host_time_cpu.py --op spd_router [--shape B=2,N=16,D=64] [--calls 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

os.environ["TRITON_INTERPRET"] = "1"

import torch
from triton.runtime.interpreter import InterpretedFunction

from sparkc import api
from sparkc.bench import make_inputs, op_program, parse_shape

LAUNCHES = [0]


def _no_launch(self, grid):
    def run(*args, **kwargs):
        LAUNCHES[0] += 1

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="spd_router")
    ap.add_argument("--shape", default="B=2,N=16,D=64")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    shape = parse_shape(args.shape)
    InterpretedFunction.__getitem__ = _no_launch
    module = api.load_source(op_program(args.op, {}, shape["D"]), f"bench_{args.op}.spark")
    net = module.Model(impl="triton")
    gen = torch.Generator().manual_seed(0)
    inputs = make_inputs(module, shape, torch.device("cpu"), torch.float32, gen)
    with torch.no_grad():
        net(**inputs)  # first call: imports, tile choices
        LAUNCHES[0] = 0
        t0 = time.perf_counter()
        for _ in range(args.calls):
            net(**inputs)
        us = (time.perf_counter() - t0) / args.calls * 1e6
        print(
            f"{args.op} {args.shape}: {us:.0f} us of host time per no-grad forward, "
            f"{LAUNCHES[0] / args.calls:.0f} launches per call (kernels stubbed)"
        )
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(50):
            net(**inputs)
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
