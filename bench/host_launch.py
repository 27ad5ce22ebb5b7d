"""Host time of one generated GEMM call per main-loop choice (pointer loop, tensor-descriptor
loop, persistent descriptor grid, torch's GEMM), next to the host floors of this machine.

A small problem (M = 256, K = N = 1024, bf16: a few µs of GPU work) so the host is the bound;
each configuration is forced (the tuner is bypassed) and timed as µs per call to issue 200
calls (host) and per call until the GPU finishes (wall), forward without grad and
forward + backward, best of `--rounds` rounds that interleave the choices (single passes swung
by ±40 µs on the lent machine, 2026-12-02). Each choice runs through Triton's launch and through
sparkc's cached launcher (`SPARKC_FAST_LAUNCH=1`, runtime/launcher.py; `--launch` picks).
Timings are printed (and written as JSON with --json), never asserted.

Run on the GPU machine: python bench/host_launch.py [--M 256] [--size 1024] [--rounds 3]
[--launch both|triton|fast] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_matmul as bm
from sparkc.runtime import launch

# choice -> (forward configuration flags, descriptors built in the kernel)
CHOICES = {
    "pointer": ({"USE_TMA": False, "PERSISTENT": False}, True),
    "tma host-desc": ({"USE_TMA": True, "PERSISTENT": False}, False),
    "tma kernel-desc": ({"USE_TMA": True, "PERSISTENT": False}, True),
    "tma+pers host-desc": ({"USE_TMA": True, "PERSISTENT": True}, False),
    "tma+pers kernel-desc": ({"USE_TMA": True, "PERSISTENT": True}, True),
    "extern": (launch.EXTERN_CFG, True),
}


def per_call_us(fn, n: int = 200) -> tuple[float, float]:
    """(host µs per call to issue `n` calls, wall µs per call until the GPU is done)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t0) / n * 1e6


def force(choice: str):
    """tuned_gemm replaced by one answering `choice` for forward kernels (the tile of the
    template's heuristic) and the heuristic for the backward GEMMs; returns the real one."""
    real = launch.tuned_gemm

    def forced(kernel, heuristic, M, N, K, like, run, dual=False, tma=False, extern=None, **kw):
        cfg = heuristic(M, N, K, like.dtype, like, dual=dual)
        if getattr(kernel, "fn", kernel).__name__.endswith("_fwd_kernel"):
            if choice == "extern":
                return launch.EXTERN_CFG if extern is not None else cfg
            return {**cfg, **CHOICES[choice][0]} if tma or choice == "pointer" else cfg
        return cfg

    os.environ["SPARKC_TMA_DEVICE"] = "1" if CHOICES[choice][1] else "0"
    launch.tuned_gemm = forced
    return real


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--M", type=int, default=256)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--launch", choices=("both", "triton", "fast"), default="both")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    launches = ("triton", "fast") if args.launch == "both" else (args.launch,)
    M, K = args.M, args.size
    rows = []
    ts = [torch.empty(1024, device="cuda") for _ in range(3)]
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(K, K, device="cuda", dtype=torch.bfloat16)
    floors = {
        "torch.empty [1024]": per_call_us(lambda: torch.empty(1024, device="cuda")),
        "torch.add (one ATen launch)": per_call_us(lambda: torch.add(ts[0], ts[1], out=ts[2])),
        "torch.mm [M,K]x[K,N]": per_call_us(lambda: torch.mm(a, b)),
        "tensor descriptor (host object)": per_call_us(lambda: launch.tma_descriptor(a, [128, 64])),
    }
    print(f"host floors ({torch.cuda.get_device_name()}), µs per call: host issue / wall")
    for what, (host, wall) in floors.items():
        print(f"  {host:8.1f} {wall:8.1f}  {what}")
        rows.append({"what": what, "host_us": host, "wall_us": wall})
    print(
        f"\nGEMM M={M} K=N={K} bf16, µs per call: host issue / wall "
        f"(best of {args.rounds} interleaved rounds)"
    )
    for kind in ("none", "bias+gelu"):
        epilogue, dual = bm.EPILOGUES[kind] if kind != "none" else ([], False)
        fn = bm.build("host_" + kind.replace("+", "_"), epilogue, dual)
        if kind == "none":
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            xs = [x, torch.randn(K, K, device="cuda", dtype=torch.bfloat16) / K**0.5]
        else:
            xs = bm.inputs(kind, M, K, K, torch.bfloat16)
        leaves = [t.detach().requires_grad_() for t in xs]
        choices = [(c, how) for c in CHOICES if c != "extern" or kind == "none" for how in launches]
        best: dict[tuple[str, str], list[tuple[float, float]]] = {}
        # Rounds interleave the choices, so a slow spell of the host spreads over all of them.
        for _ in range(args.rounds):
            for choice, how in choices:
                real = force(choice)
                os.environ["SPARKC_FAST_LAUNCH"] = "1" if how == "fast" else "0"
                try:
                    with torch.no_grad():
                        fwd = per_call_us(lambda fn=fn, xs=xs: fn(*xs))

                    def step(fn=fn, leaves=leaves):
                        fn(*leaves).sum().backward()

                    fb = per_call_us(step, 100)
                finally:
                    launch.tuned_gemm = real
                    os.environ.pop("SPARKC_FAST_LAUNCH", None)
                old = best.get((choice, how))
                best[choice, how] = (
                    [fwd, fb] if old is None else [min(old[0], fwd), min(old[1], fb)]
                )
        for choice, how in choices:
            fwd, fb = best[choice, how]
            print(
                f"  {kind:>9} {choice:>20} {how:>6}: fwd {fwd[0]:7.1f} / {fwd[1]:7.1f}   "
                f"fwd+bwd {fb[0]:7.1f} / {fb[1]:7.1f}"
            )
            rows.append(
                {
                    "epilogue": kind,
                    "choice": choice,
                    "launch": how,
                    "fwd_host_us": fwd[0],
                    "fwd_wall_us": fwd[1],
                    "fwd_bwd_host_us": fb[0],
                    "fwd_bwd_wall_us": fb[1],
                }
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
