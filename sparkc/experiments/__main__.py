"""`python -m sparkc.experiments NAME`: run one experiment (or `all`) and write its results.

Consumes the command line (`NAME [--device cpu|cuda] [--steps N] [--seeds 0,1,2] [--smoke]
[--set KEY=VALUE] [--out DIR]`, or `NAME --merge DIR... --out DIR` to join the results of runs
with other seeds or lengths); produces `DIR/NAME.json`, `DIR/NAME.md` and, when matplotlib is
installed, `DIR/NAME.png`, and prints the markdown table. The default device is CUDA when
available; the default seeds are 0,1,2 (0 with `--smoke`). Exit code 0 on success, 2 on a
usage error (an unknown setting, a CUDA run without a device, results that cannot be joined).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from . import EXPERIMENTS, experiment
from .harness import Config
from .report import from_json, merge, write


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas: {text!r}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers >= 0: {text!r}")
    return seeds


def parse_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_setting(text: str) -> tuple[str, object]:
    """`KEY=VALUE`: an int, a float, or a comma-separated list of them (a tuple)."""
    key, eq, value = text.partition("=")
    if not eq or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        if "," in value:
            return key, tuple(parse_number(v) for v in value.split(",") if v.strip())
        return key, parse_number(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}: not a number or a list of numbers: {value!r}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sparkc.experiments", description=__doc__.split("\n")[0]
    )
    ap.add_argument("name", choices=[*EXPERIMENTS, "all"], help="the experiment to run")
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="cuda: the generated Triton kernels; cpu: the reference path "
        "(default: cuda when available)",
    )
    ap.add_argument("--steps", type=int, default=None, help="training steps per run")
    ap.add_argument("--seeds", type=parse_seeds, default=None, help="e.g. 0,1,2")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: seconds on a CPU")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_setting,
        default=[],
        metavar="KEY=VALUE",
        help="replace a size setting of the experiment (repeatable), e.g. lengths=1024,4096 "
        "or d=256 (docs/experiments.md lists them)",
    )
    ap.add_argument(
        "--no-graph",
        dest="graph",
        action="store_false",
        help="on CUDA, one eager call per training step instead of replaying the step from a "
        "CUDA graph (the same arithmetic; slower for these small models)",
    )
    ap.add_argument(
        "--no-tune",
        dest="tune",
        action="store_false",
        help="launch every kernel's heuristic tiles without timing candidates ($SPARKC_TUNE=0 for "
        "this run): a much shorter first step on a machine with empty caches",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("build/experiments"),
        help="folder for the result files (default build/experiments)",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="DIR",
        default=None,
        help="train nothing: join DIR/NAME.json of runs with other seeds or lengths into one result "
        "in --out",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if args.merge:
        return merge_results(ap, names, args.merge, args.out)
    if args.steps is not None and args.steps < 1:
        ap.error("--steps must be at least 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    if not args.tune:
        os.environ["SPARKC_TUNE"] = "0"
    seeds = args.seeds or ((0,) if args.smoke else (0, 1, 2))
    threads = 1 if args.smoke and device == "cpu" else None
    cfg = Config(
        torch.device(device), seeds, args.smoke, args.steps, args.out, sys.stderr, threads,
        tuple(args.overrides), args.graph,
    )  # fmt: skip
    for name in names:
        module = experiment(name)
        try:
            cfg.size(module.SIZES)
        except ValueError as err:
            ap.error(f"--set ({name}): {err}")
        start = time.perf_counter()
        report = module.run(cfg)
        written = write(report, args.out, sys.stdout)
        print(written["md"].read_text())
        files = ", ".join(str(p) for p in written.values())
        print(f"{name}: {time.perf_counter() - start:.1f} s; wrote {files}")
    return 0


def merge_results(
    ap: argparse.ArgumentParser, names: list[str], dirs: list[Path], out: Path
) -> int:
    """Join `DIR/NAME.json` of every folder in `dirs` into `out` (see `report.merge`)."""
    for name in names:
        files = [d / f"{name}.json" for d in dirs]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            ap.error(f"--merge: no results at {', '.join(missing)}")
        try:
            report = merge([from_json(json.loads(f.read_text())) for f in files])
        except (ValueError, KeyError) as err:
            ap.error(f"--merge {name}: {err}")
        written = write(report, out, sys.stdout)
        print(written["md"].read_text())
        print(
            f"{name}: merged {len(files)} results; wrote " + ", ".join(map(str, written.values()))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
