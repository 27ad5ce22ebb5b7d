"""How `sparkc check` and `sparkc compile` scale with the program's size (CPU only).

For each layer count, times (wall clock, best of --repeat runs):
- `check`: the `sparkc check FILE -D layers=N` command in a fresh process (interpreter start,
  imports and the parser included, as a user sees it), and in-process parse + check;
- `compile`: the whole pipeline up to the generated package's files (`api.compile_files`) in
  this process, with the time of each stage;
- a syntax error: parse and describe one (the lexer is kept after the first).

Prints a table and writes JSON (--json). Timings are printed, never asserted: the tests count
the work instead (tests/frontend/test_scale.py, tests/ir/test_graph_order.py).

Run: python bench/compile_scale.py [--layers 100,1000,10000] [--compile-layers 100,1000,10000]
                                   [--file examples/tiny_gpt.spark] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_check_cli(path: Path, layers: int, repeat: int) -> float:
    cmd = [sys.executable, "-m", "sparkc", "check", str(path), "-D", f"layers={layers}"]

    def run() -> None:
        # cwd: the file's folder, so `-m sparkc` imports the installed (or PYTHONPATH) sparkc.
        subprocess.run(cmd, check=True, capture_output=True, cwd=path.parent, env=dict(os.environ))

    return _best(run, repeat)


def time_check(path: Path, layers: int, repeat: int) -> float:
    from sparkc.frontend.check import check
    from sparkc.frontend.parser import parse

    text = path.read_text()
    return _best(lambda: check(parse(text, path.name), {"layers": layers}), repeat)


def time_compile(path: Path, layers: int) -> dict[str, float]:
    from sparkc import pipeline

    opts = pipeline.CompileOptions(overrides={"layers": layers})
    ctx = pipeline.StageContext(path.name, opts, lambda _: None, path.read_text())
    artefact: object = ctx.source
    stages: dict[str, float] = {}
    from sparkc.codegen import generate

    # As run_pipeline and api.compile_files run them (older sparkc versions: as they are).
    with getattr(pipeline, "collector_paused", contextlib.nullcontext)():
        for stage in pipeline.STAGES[: pipeline.find_stage("fuse") + 1]:
            start = time.perf_counter()
            artefact = stage.run(artefact, ctx)
            stages[stage.name] = time.perf_counter() - start
        start = time.perf_counter()
        generate(artefact, ctx.source, path.name)
        stages["codegen"] = time.perf_counter() - start
    stages["total"] = sum(stages.values())
    return stages


def time_syntax_error(repeat: int) -> dict[str, float]:
    from sparkc.diagnostics import SparkError
    from sparkc.frontend.parser import parse

    src = "model M() {\n  h = f(x heads=4)\n}\n"

    def run() -> None:
        try:
            parse(src, "bad.spark")
        except SparkError:
            pass

    first = _best(run, 1)
    return {"first": first, "later": _best(run, repeat)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", default=str(ROOT / "examples" / "tiny_gpt.spark"))
    ap.add_argument("--layers", default="100,1000,10000", help="layer counts for check")
    ap.add_argument("--compile-layers", default="100,1000,10000", help="layer counts to compile")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (check)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    path = Path(args.file)
    result: dict[str, object] = {"file": path.name, "check": {}, "compile": {}}
    for n in [int(v) for v in args.layers.split(",") if v]:
        row = {
            "cli_s": time_check_cli(path, n, args.repeat),
            "in_process_s": time_check(path, n, 1),
        }
        result["check"][str(n)] = row  # type: ignore[index]
        print(
            f"check   layers={n:>6}: sparkc check {row['cli_s']:.2f} s, "
            f"parse+check in process {row['in_process_s']:.2f} s",
            flush=True,
        )
    for n in [int(v) for v in args.compile_layers.split(",") if v]:
        stages = time_compile(path, n)
        result["compile"][str(n)] = stages  # type: ignore[index]
        detail = ", ".join(f"{k} {v:.2f}" for k, v in stages.items() if k != "total")
        print(f"compile layers={n:>6}: {stages['total']:.2f} s ({detail})", flush=True)
    err = time_syntax_error(args.repeat)
    result["syntax_error_s"] = err
    print(f"syntax error: first {err['first'] * 1e3:.1f} ms, later {err['later'] * 1e3:.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
