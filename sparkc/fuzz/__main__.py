"""`python -m sparkc.fuzz`: run a fuzz campaign and print its table (see sparkc/fuzz/__init__.py).

Consumes command-line options; produces the outcome table on stdout, progress on stderr, the
report as JSON with `--json PATH`, and exit status 1 when any finding is not a diagnostic or a
success. `--digests` is the second process of the determinism check: it reads
[[file name, text], ...] as JSON on stdin and prints the digests of the generated files.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import run_campaign
from .attacks import digests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sparkc.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--programs", type=int, default=0, help="stop after N check-level programs")
    p.add_argument("--seconds", type=float, default=60.0, help="stop after S seconds (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=float, default=5.0, help="seconds per program (default 5)")
    p.add_argument(
        "--compile-every", type=int, default=200, help="compile+import every Nth program"
    )
    p.add_argument("--injections", type=int, default=-1, help="injection attempts (-1: all)")
    p.add_argument("--determinism", type=int, default=8, help="programs checked across processes")
    p.add_argument("--reduce-seconds", type=float, default=30.0, help="per finding")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--show", type=int, default=20, help="findings printed with reproducers")
    p.add_argument("--digests", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.digests:
        print(json.dumps(digests([tuple(x) for x in json.load(sys.stdin)])))
        return 0
    report = run_campaign(
        programs=args.programs,
        seconds=args.seconds,
        seed=args.seed,
        limit_s=args.limit,
        compile_every=args.compile_every,
        injections=args.injections,
        determinism_sample=args.determinism,
        reduce_s=args.reduce_seconds,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(report.table())
    bad = report.bad()
    for f in bad[: args.show]:
        shown = f.reduced if f.reduced is not None else f.example
        print(f"\n== {f.signature}  (x{f.count}, from {f.source}, file {f.filename!r})")
        print(shown.decode("utf-8", errors="backslashreplace"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, indent=1, sort_keys=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
