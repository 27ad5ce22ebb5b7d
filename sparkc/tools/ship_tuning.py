"""Build the tuning choices shipped with the package from tuning caches of the lent GPUs.

Consumes: tuning caches as the tuner writes them (`<cache dir>/tuning/<kernel>.json`, format
`runtime.tuning.FORMAT_VERSION`), given as `.tgz`/`.tar.gz` archives (what `bench/device_plan.sh`
brings back), directories, or single `.json` files; and the shipped file to merge into.
Produces: that file (default `runtime/tuning_shipped.json`, read by `runtime.tuning`), written
atomically and deterministically (sorted keys): `{"version": 2, "kernels": {kernel: {key: choice}}}`.

Only GPU entries are kept (an interpreter key is meaningless elsewhere). When two sources hold
the same key with different choices, the one whose fastest timing is lower wins, and a timing-less
shipped entry yields to any timed one (a later run on the same card refines it).

    python -m sparkc.tools.ship_tuning out/tuning.tgz [more ...] [--into runtime/tuning_shipped.json]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparkc.runtime import tuning
from sparkc.runtime.loader import write_atomic

DEFAULT_INTO = tuning.SHIPPED_PATH


def cache_files(source: Path) -> Iterator[tuple[str, Any]]:
    """(kernel name, parsed JSON) of every cache file in an archive, a directory or a file."""
    if source.is_dir():
        for path in sorted(source.rglob("*.json")):
            yield path.stem, json.loads(path.read_text())
    elif source.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(source, "r:gz") as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(".json"):
                    raw = tar.extractfile(member)
                    if raw is not None:
                        text = io.TextIOWrapper(raw, encoding="utf-8").read()
                        yield Path(member.name).stem, json.loads(text)
    else:
        yield source.stem, json.loads(source.read_text())


def _best_ms(entry: dict[str, Any]) -> float:
    times = [t for t in entry.get("timings_ms") or [] if isinstance(t, (int, float))]
    finite = [t for t in times if math.isfinite(t)]
    return min(finite) if finite else math.inf


def merge(sources: list[Path], into: dict[str, dict[str, Any]]) -> tuple[dict, int]:
    """`into` (kernel -> key -> choice) updated from `sources`; returns it and the number of
    entries added or changed."""
    best: dict[tuple[str, str], tuple[float, Any]] = {}
    for source in sources:
        for kernel, data in cache_files(source):
            if not isinstance(data, dict) or data.get("version") != tuning.FORMAT_VERSION:
                continue
            for key, entry in (data.get("entries") or {}).items():
                if not isinstance(entry, dict) or "choice" not in entry or "interpreter" in key:
                    continue
                ms = _best_ms(entry)
                if (kernel, key) not in best or ms < best[(kernel, key)][0]:
                    best[(kernel, key)] = (ms, entry["choice"])
    changed = 0
    for (kernel, key), (_, choice) in sorted(best.items()):
        if into.setdefault(kernel, {}).get(key) != choice:
            into[kernel][key] = choice
            changed += 1
    return into, changed


def write(path: Path, kernels: dict[str, dict[str, Any]]) -> None:
    payload = json.dumps(
        {"version": tuning.FORMAT_VERSION, "kernels": kernels}, indent=1, sort_keys=True
    )
    write_atomic(path, payload + "\n")
    os.chmod(path, 0o644)  # package data: readable by everyone, as a checkout's files are


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sparkc.tools.ship_tuning", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "sources", nargs="+", type=Path, help="tuning.tgz archives, cache dirs or files"
    )
    ap.add_argument("--into", type=Path, default=DEFAULT_INTO, help="the shipped file to update")
    args = ap.parse_args(argv)
    try:
        current = json.loads(args.into.read_text())
        kernels = (
            current.get("kernels", {}) if current.get("version") == tuning.FORMAT_VERSION else {}
        )
    except (OSError, ValueError):
        kernels = {}
    kernels, changed = merge(args.sources, kernels)
    write(args.into, kernels)
    total = sum(len(v) for v in kernels.values())
    print(f"{args.into}: {total} choices of {len(kernels)} kernels ({changed} added or changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
