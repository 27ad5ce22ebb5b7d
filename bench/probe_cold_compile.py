"""Cold compile work of an example's training step on the Triton path, on the CPU (no GPU).

Records every kernel launch of one forward + backward under the interpreter (float32 and
bfloat16, one layer unless `-D layers=K`), then compiles each distinct (kernel, argument types,
constexprs) for sm_90 into an empty Triton cache in a subprocess, as a fresh GPU machine must
before its first step (there it does so once per tuning candidate; here once, at the
interpreter's tiles). Prints the launches, the distinct kernel sources, the distinct compiles
and the wall time of the compiles. Timings are printed, never asserted.

Run: python bench/probe_cold_compile.py [--example tiny_gpt] [-D layers=2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "codegen"))

import torch
from launch_record import compile_records, distinct, recording

from sparkc import api
from sparkc.cli import parse_define
from sparkc.tools.demo_data import progressions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="tiny_gpt")
    ap.add_argument("-D", dest="define", action="append", type=parse_define, default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    hyper = {"layers": 1, **dict(args.define)}
    module = api.load(ROOT / "examples" / f"{args.example}.spark", **hyper)
    torch.manual_seed(0)
    net = module.Model(impl="triton").train()
    tokens, targets = progressions(
        2, 5, int(module.HYPER["vocab"]), torch.Generator().manual_seed(3)
    )
    records: list[dict] = []
    with recording(records):
        for dtype in (torch.float32, torch.bfloat16):
            net.to(dtype)
            net(tokens, targets).loss.backward()
    kinds = distinct(records)
    sources = {r["kernel"] for r in kinds}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        compile_records(records, Path(cache))
        seconds = time.perf_counter() - t0
    row = {
        "example": args.example,
        "hyper": hyper,
        "launches": len(records),
        "kernel_sources": len(sources),
        "compiles": len(kinds),
        "compile_s": round(seconds, 2),
    }
    print(
        f"{args.example} {hyper}: {row['launches']} launches (fwd+bwd, f32 and bf16), "
        f"{row['kernel_sources']} kernel sources, {row['compiles']} distinct compiles, "
        f"{row['compile_s']} s to compile them cold for sm_90"
    )
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
