"""Replay the GEMM candidate pruning (`runtime/gemm.py: pruned`) over tuning caches whose every
candidate was timed (the `tuning.tgz` archives that `bench/device_plan.sh` brings back, or
cache directories), on the CPU.

For each GEMM shape class with a full list of timings (kernels `*_mm_kernel`, `*_fwd_kernel`,
`*_lr_kernel` of format `runtime.tuning.FORMAT_VERSION`), the candidate list is rebuilt as
`tuned_gemm` builds it (the shared heuristic of `primitives_gemm_shared`: 64 x 64 x 128 for
M <= 64, 128 x 256 x 64 for 16-bit non-dual GEMMs with M, N >= 2048, else 128 x 128 x 64, then
the fitted `GEMM_CANDIDATES`, their descriptor and persistent forms and cuBLAS, as the shape
class's tags say) and checked against the stored choice (its time must be the fastest); a class
whose list cannot be rebuilt is reported and skipped. Prints, per class and in all: the
candidates kept, whether the best kept one is the best of all, and its slowdown; the summary
is what docs/kernels/matmul.md quotes.

    python3 bench/replay_gemm_pruning.py /path/to/tuning.tgz [more archives or dirs] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from sparkc.runtime import gemm

from sparkc.tools.ship_tuning import cache_files


def heuristic(m: int | str, n: int, dual: bool) -> tuple[int, ...]:
    if m == "skinny":
        return (64, 64, 128, 1, 4, 4)
    if not dual and m >= 2048 and n >= 2048:
        return (128, 256, 64, 8, 8, 3)
    return (128, 128, 64, 8, 8, 3)


def candidates(shape_class: list) -> list:
    m, n, _k, _dtype, dual = shape_class[:5]
    tags = set(shape_class[5:])
    tiles = [gemm.fit_gemm(heuristic(m, n, dual), 2, dual)]
    for cand in gemm.GEMM_SKINNY_CANDIDATES if m == "skinny" else gemm.GEMM_CANDIDATES:
        cand = gemm.fit_gemm(cand, 2, dual)
        if cand not in tiles:
            tiles.append(cand)
    out: list = list(tiles)
    if "tma" in tags:
        out = [(*t, 0, 0) for t in tiles] + [(*t, 1, 0) for t in tiles]
        out += [(*t, 1, 1) for t in tiles if "persistent" in tags and t[4] == 8]
    return out + [gemm.EXTERN] if "extern" in tags else out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    classes = {}
    for source in args.sources:
        for kernel, data in cache_files(source):
            if not kernel.endswith(("_mm_kernel", "_fwd_kernel", "_lr_kernel")):
                continue
            for key, entry in (data.get("entries") or {}).items():
                classes[(kernel, key)] = entry
    kept_n = total_n = exact = 0
    slowdowns = []
    for (kernel, key), entry in sorted(classes.items()):
        shape_class = json.loads(key.split("|")[1])
        gemm_like = isinstance(shape_class, list) and len(shape_class) >= 5
        if not gemm_like or shape_class[3] not in ("torch.bfloat16", "torch.float16"):
            continue  # another kernel family named *_fwd_kernel, or float32 (not pruned)
        cands, times = candidates(shape_class), entry.get("timings_ms") or []
        choice = entry["choice"] if entry["choice"] == gemm.EXTERN else tuple(entry["choice"])
        finite = [t for t in times if t is not None]
        if len(cands) != len(times) or choice not in cands or not finite:
            print(f"skipped (list not rebuilt): {kernel} {shape_class}")
            continue
        best = min(finite)
        if times[cands.index(choice)] != best:
            print(f"skipped (stored choice is not the fastest): {kernel} {shape_class}")
            continue
        m = 64 if shape_class[0] == "skinny" else shape_class[0]
        plain = "extern" in shape_class and "tma" not in shape_class
        kept = cands if m <= 64 else gemm.pruned(cands, min(m, *shape_class[1:3]), plain)
        kept_best = min(times[cands.index(c)] for c in kept if times[cands.index(c)] is not None)
        kept_n, total_n = kept_n + len(kept), total_n + len(cands)
        exact += kept_best == best
        slowdowns.append(kept_best / best)
        if args.verbose or kept_best != best:
            print(
                f"{kernel:24s} {shape_class!s:60s} kept {len(kept):2d}/{len(cands):2d}"
                f" slowdown {kept_best / best:.3f}"
            )
    if not slowdowns:
        print("no GEMM class with a full list of timings")
        return 1
    geo = math.exp(sum(math.log(s) for s in slowdowns) / len(slowdowns))
    print(
        f"{len(slowdowns)} classes: kept {kept_n} of {total_n} candidates; the best kept is the"
        f" best in {exact}; slowdown geometric mean {100 * (geo - 1):.2f}%,"
        f" largest {100 * (max(slowdowns) - 1):.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
