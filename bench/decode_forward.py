"""A decode-sized forward of a generated module, with and without its two host-side savings:
the stacked q/k/v weights kept between calls (`sparkc.frozen_weights()`) and the cached
launcher (`SPARKC_FAST_LAUNCH`).

Consumes: a `.spark` file (default examples/tiny_gpt.spark), `-D` overrides, a shape (default
B=1, N=1: one token), a dtype. Produces: µs per forward under `torch.no_grad()` for the four
combinations, host-paced (no synchronisation inside the loop, one at the end), best of
`--rounds` rounds that interleave the combinations (the lent machine's host swings by ±20%
between runs), and the outputs' largest difference between the combinations (they compute the
same thing). With --json PATH the rows are written too. Needs a CUDA GPU. Timings only: no
assertions.

Run: python bench/decode_forward.py [examples/tiny_gpt.spark] [-D d=1024 ...] [--shape B=1,N=1]
     [--dtype bf16] [--calls 200] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from sparkc.runtime import launch

from sparkc import api
from sparkc.tools.bench import make_inputs, parse_shape

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(ROOT / "examples" / "tiny_gpt.spark"))
    ap.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--shape", default="B=1,N=1")
    ap.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run (TRITON_INTERPRET=1)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    overrides = {k: int(v) for k, _, v in (d.partition("=") for d in args.defines)}
    module = api.load_source(Path(args.file).read_text(), Path(args.file).name, **overrides)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    shape = parse_shape(args.shape)
    torch.manual_seed(0)
    net = module.Model(impl="triton").to(args.device, dtype).eval()
    inputs = make_inputs(module, shape, args.device, dtype, torch.Generator().manual_seed(0))
    combos = [(k, f) for k in (True, False) for f in (True, False)]
    best: dict[tuple[bool, bool], float] = {}
    outs: dict[tuple[bool, bool], dict] = {}
    saved_env = os.environ.get("SPARKC_FAST_LAUNCH")
    try:
        for _ in range(args.rounds):
            for keep, fast in combos:
                os.environ["SPARKC_FAST_LAUNCH"] = "1" if fast else "0"
                block = launch.frozen_weights() if keep else contextlib.nullcontext()
                with block, torch.no_grad():
                    outs[keep, fast] = net(**inputs)  # warm: compiles, tunes, keeps
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        net(**inputs)
                    sync()
                us = (time.perf_counter() - t0) / args.calls * 1e6
                best[keep, fast] = min(us, best.get((keep, fast), us))
    finally:
        if saved_env is None:
            os.environ.pop("SPARKC_FAST_LAUNCH", None)
        else:
            os.environ["SPARKC_FAST_LAUNCH"] = saved_env
    ref = outs[False, False]
    rows = []
    print(
        f"{module.MODEL_NAME} {args.shape} {args.dtype} on "
        f"{torch.cuda.get_device_name() if cuda else 'cpu (interpreter)'}, "
        f"no_grad forward, µs per call (best of {args.rounds} interleaved rounds)"
    )
    for keep, fast in combos:
        diff = max(
            (outs[keep, fast][k].float() - v.float()).abs().max().item()
            for k, v in ref.items()
            if torch.is_tensor(v) and v.is_floating_point()
        )
        rows.append(
            {
                "kept_weights": keep,
                "fast_launch": fast,
                "us": best[keep, fast],
                "max_abs_diff": diff,
            }
        )
        print(
            f"  kept weights {keep!s:5s}  fast launch {fast!s:5s}  {best[keep, fast]:9.1f} us"
            f"   max |diff| {diff:.3g}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
