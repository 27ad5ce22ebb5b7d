"""Python time of sparkc's cached launcher per launch (runtime/launcher.py), on the CPU.

The launcher's own work on every launch (ordering the arguments, the specialisation key, the
cache lookup) is plain Python, so it can be timed without a GPU: a GEMM-like kernel signature
(6 tensors, 8 ints, 9 constexprs passed by keyword, 2 launch options) with the device and stream
queries stubbed and a stand-in compiled kernel whose `run` does nothing. What a GPU launch adds
(Triton's C launcher, ~18 µs on the lent H200) is not included; `bench/host_launch.py` measures
that. Prints µs per launch and per part; --json PATH writes them. Timings only: no assertions.

Run: python bench/launcher_cpu.py [--calls 20000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import timeit

import torch
import triton
import triton.language as tl
from sparkc.runtime import launcher


@triton.jit
def gemm_like(
    X, W, B, Y, ZS, R, M, N, K, sxm, sxk, swn, swk, srm,
    SAVE: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, USE_TMA: tl.constexpr,
    PERSISTENT: tl.constexpr, TMA_DEVICE: tl.constexpr,
):  # fmt: skip
    pass


class _Compiled:
    function = None
    packed_metadata = None

    def run(self, *args):
        pass


class _Jit:
    """The JIT function's normal path, returning the stand-in compiled kernel."""

    fn = gemm_like.fn
    arg_names = gemm_like.arg_names

    def __getitem__(self, grid):
        return lambda *args, **kwargs: _Compiled()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.cuda.current_device = lambda: 0
    torch._C._cuda_getCurrentRawStream = lambda device: 0
    launcher.fast_launch = lambda: True
    k = launcher.Kernel(_Jit())
    t = torch.zeros(64, 64)
    w = torch.nn.Parameter(torch.zeros(64, 64))
    pos = (t, w, torch.zeros(64), t, t, t, 8192, 1024, 1024, 1024, 1, 1024, 1, 1024)
    kw = {
        "SAVE": True, "DOT_PRECISION": "ieee", "BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64,
        "GROUP_M": 8, "USE_TMA": True, "PERSISTENT": False, "TMA_DEVICE": True, "num_warps": 8,
        "num_stages": 3,
    }  # fmt: skip
    k[(4,)](*pos, **kw)  # the first launch of the key: the normal path, kept
    parts = {
        "launch (k[grid](...))": lambda: k[(4,)](*pos, **kw),
        "arguments in signature order": lambda: k.arguments(pos, kw),
        "specialisation key": lambda: k.key(0, pos, kw, torch.Tensor),
    }
    rows = {}
    for name, fn in parts.items():
        best = min(timeit.repeat(fn, number=args.calls, repeat=5)) / args.calls * 1e6
        rows[name] = best
        print(f"{best:7.2f} us  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
