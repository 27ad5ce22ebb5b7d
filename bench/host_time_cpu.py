"""sparkc's own host time per call of a generated module, on the CPU, with every kernel launch
replaced by a no-op (no GPU needed).

The Triton path runs under the interpreter (`TRITON_INTERPRET=1`) with
`InterpretedFunction.__getitem__` stubbed, so what is timed is the generated Python around the
launches: argument checks, allocations, tuning lookups, autograd.Function calls. Triton's own
launch path is not included (`bench/host_overhead.py` measures that on a GPU). Prints the
no-grad forward's microseconds per call and launches per call, then a cProfile by own time.
Timings are printed, never asserted.

Run: python bench/host_time_cpu.py --op spd_router [--shape B=2,N=16,D=64] [--calls 1000] [--hp K=V]
     python bench/host_time_cpu.py --file examples/tiny_gpt.spark --shape B=2,N=16 --mode fwd+bwd
(`--mode fwd+bwd`: forward, backward of the loss, gradients cleared; fewer calls by default.)
Also prints the ATen operators one call dispatches besides the Triton launches (views and
allocations apart): on a GPU each is a launch or host step of its own.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import time

os.environ["TRITON_INTERPRET"] = "1"

import torch
from triton.runtime.interpreter import InterpretedFunction

from sparkc import api
from sparkc.tools.bench import make_inputs, op_program, parse_shape

LAUNCHES = [0]


def _no_launch(self, grid):
    def run(*args, **kwargs):
        LAUNCHES[0] += 1

    return run


# ATen operators that only make a view or read metadata (no device work), and allocations.
VIEWS = frozenset(
    [
        "view",
        "_unsafe_view",
        "t",
        "transpose",
        "permute",
        "expand",
        "as_strided",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "detach",
        "alias",
        "split",
        "unbind",
        "chunk",
        "narrow",
        "diagonal",
        "_reshape_alias",
        "lift_fresh",
        "sym_size",
        "sym_stride",
        "sym_numel",
        "sym_storage_offset",
    ]
)
ALLOCS = frozenset(["empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"])


def count_aten(fn) -> collections.Counter:
    """The ATen operators one call of `fn` dispatches (autograd's CPU backward included: it
    runs on the calling thread), by name. On a GPU each non-view operator is a kernel launch or
    a host-side step of its own, tens of µs of host time on the lent machine."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with Count() as mode:
        fn()
    return mode.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="spd_router")
    ap.add_argument("--file", help="a .spark file (its model, default hyperparameters)")
    ap.add_argument("--shape", default="B=2,N=16,D=64")
    ap.add_argument("--mode", choices=("fwd", "fwd+bwd"), default="fwd")
    ap.add_argument("--calls", type=int)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--hp", action="append", default=[], help="NAME=VALUE of --op (repeatable)")
    args = ap.parse_args()
    hyper = {}
    for item in args.hp:
        name, _, value = item.partition("=")
        hyper[name] = int(value) if value.lstrip("-").isdigit() else value
    calls = args.calls or (1000 if args.mode == "fwd" else 200)
    shape = parse_shape(args.shape)
    InterpretedFunction.__getitem__ = _no_launch
    if args.file:
        module, label = api.load(args.file), os.path.basename(args.file)
    else:
        module = api.load_source(op_program(args.op, hyper, shape["D"]), f"bench_{args.op}.spark")
        label = args.op
    net = module.Model(impl="triton")
    gen = torch.Generator().manual_seed(0)
    inputs = make_inputs(module, shape, torch.device("cpu"), torch.float32, gen)

    def call():
        if args.mode == "fwd":
            with torch.no_grad():
                net(**inputs)
            return
        out = net(**inputs)
        loss = (
            out["loss"]
            if out.get("loss") is not None
            else sum(
                v.sum() for v in out.values() if isinstance(v, torch.Tensor) and v.requires_grad
            )
        )
        loss.backward()
        net.zero_grad(set_to_none=True)

    call()  # first call: imports, tile choices
    LAUNCHES[0] = 0
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    us = (time.perf_counter() - t0) / calls * 1e6
    what = "no-grad forward" if args.mode == "fwd" else "forward + backward"
    print(
        f"{label} {args.shape}: {us:.0f} us of host time per {what}, "
        f"{LAUNCHES[0] / calls:.0f} launches per call (kernels stubbed)"
    )
    ops = count_aten(call)
    compute = {k: n for k, n in ops.items() if k not in VIEWS and k not in ALLOCS}
    print(
        f"ATen per call: {sum(compute.values())} ops that run device work, "
        f"{sum(ops[k] for k in ALLOCS)} allocations, {sum(ops[k] for k in VIEWS)} views "
        f"(besides the {LAUNCHES[0] / calls:.0f} Triton launches): "
        + ", ".join(f"{k} {n}" for k, n in sorted(compute.items(), key=lambda kv: -kv[1]))
    )
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(50):
        call()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
