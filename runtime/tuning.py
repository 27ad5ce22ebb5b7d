"""A persistent on-disk cache of kernel tuning choices.

Consumes: a kernel name, the kernel's source text (hashed), a shape class (any JSON-able value the
caller uses to bucket shapes), a device key (GPU name, capability, Triton version) and a list of
JSON-able candidate configurations. Produces: the candidate that timed fastest, remembered in
`<cache dir>/tuning/<kernel name>.json` so later processes skip the timing.

Choices shipped with the package (`tuning_shipped.json` beside this module: choices timed on
the lent GPUs, built by `python -m sparkc.tools.ship_tuning`) answer a miss of the local cache
without timing, when their key (source hash, shape class, GPU, Triton version) matches exactly
and the choice is still a candidate; a local choice always wins, and with `$SPARKC_TUNE_SHIPPED=0`
the shipped ones are ignored (every miss is timed locally and stored: local tuning refines them).

The cache directory is `$SPARKC_CACHE_DIR` when set, else `$XDG_CACHE_HOME/sparkc` or
`~/.cache/sparkc`. Files are written atomically (temp file + `os.replace`); an unreadable or
corrupted file is ignored and rewritten on the next store. A stored choice that is no longer among
the candidates (the caller changed its list) counts as a miss. Timing is the caller's `bench_fn`;
this module never imports torch or triton (`env`, a leaf, reads the `$SPARKC_TUNE_SHIPPED` switch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import env

# 2 (2026-12-02): candidates are scored by GPU plus host time (autotune.bench_ms); choices timed
# by GPU time alone are not reused.
FORMAT_VERSION = 2
# Timing rounds over the candidates (see TuningCache.choose); `$SPARKC_TUNE_ROUNDS` overrides it
# (1 under compute-sanitizer, where every launch is slow and only coverage matters).
ROUNDS = 3


def tuning_rounds() -> int:
    try:
        return max(1, int(os.environ.get("SPARKC_TUNE_ROUNDS", ROUNDS)))
    except ValueError:
        return ROUNDS


def cache_root() -> Path:
    explicit = os.environ.get("SPARKC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sparkc"


def source_hash(source: Any) -> str:
    """A stable hash of a kernel's code: a string, or an object with `.src` (a JITFunction)."""
    if not isinstance(source, str):
        inner = getattr(source, "fn", None)
        text = getattr(source, "src", None) or getattr(inner, "src", None)
        if text is None:
            raise TypeError(f"cannot hash the source of {type(source).__name__}")
        source = text
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def _canonical(value: Any) -> str:
    # Tuples and lists both serialise as JSON arrays, so a choice read back from disk compares equal
    # to the candidate the caller wrote.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def entry_key(src_hash: str, shape_class: Any, device: str) -> str:
    return f"{src_hash}|{_canonical(shape_class)}|{device}"


SHIPPED_PATH = Path(__file__).with_name("tuning_shipped.json")
_shipped: dict[str, dict[str, Any]] | None = None


def shipped_choices() -> dict[str, dict[str, Any]]:
    """{kernel name: {entry key: choice}} shipped with the package (empty when the file is
    missing, unreadable or of another format version; read once per process)."""
    global _shipped
    if _shipped is None:
        try:
            data = json.loads(SHIPPED_PATH.read_text())
        except (OSError, ValueError):
            data = None
        ok = isinstance(data, dict) and data.get("version") == FORMAT_VERSION
        kernels = data.get("kernels") if ok else None
        _shipped = kernels if isinstance(kernels, dict) else {}
    return _shipped


def _matching(choice: Any, candidates: Sequence[Any]) -> Any | None:
    wanted = _canonical(choice)
    for candidate in candidates:
        if _canonical(candidate) == wanted:
            return candidate
    return None


class TuningCache:
    """Tuning choices of one cache directory; reads each kernel's file at most once per process."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_root() / "tuning"
        self._files: dict[str, dict[str, Any]] = {}

    def path(self, kernel: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in kernel)
        return self.directory / f"{safe}.json"

    def _entries(self, kernel: str) -> dict[str, Any]:
        if kernel not in self._files:
            self._files[kernel] = self._read(self.path(kernel))
        return self._files[kernel]

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}  # missing or corrupted: start over; the next store rewrites the file
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def lookup(self, kernel: str, key: str, candidates: Sequence[Any]) -> Any | None:
        """The stored choice of `kernel` for `key` if it is among `candidates`, else the
        shipped one (module docs), else None."""
        entry = self._entries(kernel).get(key)
        if isinstance(entry, dict) and "choice" in entry:
            local = _matching(entry["choice"], candidates)
            if local is not None:
                return local
        if not env.switched_off("SPARKC_TUNE_SHIPPED"):
            shipped = shipped_choices().get(kernel, {})
            if key in shipped:
                return _matching(shipped[key], candidates)
        return None

    def store(self, kernel: str, key: str, choice: Any, timings_ms: Sequence[float]) -> None:
        path = self.path(kernel)
        # Merge with what other processes wrote since we read the file, then replace atomically.
        entries = {**self._read(path), **self._entries(kernel)}
        entries[key] = {
            "choice": json.loads(_canonical(choice)),
            "timings_ms": [t if math.isfinite(t) else None for t in timings_ms],
        }
        self._files[kernel] = entries
        payload = json.dumps(
            {"version": FORMAT_VERSION, "entries": entries}, indent=1, sort_keys=True
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(payload + "\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def choose(
        self,
        kernel: str,
        src_hash: str,
        shape_class: Any,
        device: str,
        candidates: Sequence[Any],
        bench_fn: Callable[[Any], float],
        rounds: int | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> Any:
        """The cached choice, or time every candidate `rounds` times in turn (default
        `tuning_rounds()`; ms, each candidate's fastest round counts; a failing one counts as
        infinitely slow), store the fastest and return it. `prepare()` runs once before the
        timing, only when there is no cached choice (the tuner compiles the candidates there)."""
        rounds = tuning_rounds() if rounds is None else rounds
        if not candidates:
            raise ValueError(f"no tuning candidates for kernel {kernel!r}")
        key = entry_key(src_hash, shape_class, device)
        hit = self.lookup(kernel, key, candidates)
        if hit is not None:
            return hit
        if prepare is not None:
            prepare()
        # Round-robin rounds, each candidate's best time kept: on the lent H200 one timing of a
        # bandwidth-bound kernel swung 2x between consecutive measurements (clock or memory state,
        # not the configuration; docs/performance.md, 2026-12-02), so a single pass picked
        # configurations at half speed. Interleaving spreads such a slow spell over every candidate.
        timings = [math.inf] * len(candidates)
        failed = [False] * len(candidates)
        for _ in range(max(1, rounds)):
            for i, candidate in enumerate(candidates):
                if failed[i]:
                    continue
                try:
                    t = float(bench_fn(candidate))
                except Exception:  # noqa: BLE001 - a config the compiler or device rejects is not chosen
                    t = math.nan
                if math.isnan(t):
                    failed[i] = True
                    timings[i] = math.inf
                else:
                    timings[i] = min(timings[i], t)
        best = min(range(len(candidates)), key=lambda i: (timings[i], i))
        if math.isinf(timings[best]):
            raise RuntimeError(f"every tuning candidate of kernel {kernel!r} failed to run")
        self.store(kernel, key, candidates[best], timings)
        return candidates[best]


_default: TuningCache | None = None


def default_cache() -> TuningCache:
    """The process-wide cache (re-created when `$SPARKC_CACHE_DIR` changes, e.g. in tests)."""
    global _default
    directory = cache_root() / "tuning"
    if _default is None or _default.directory != directory:
        _default = TuningCache(directory)
    return _default
