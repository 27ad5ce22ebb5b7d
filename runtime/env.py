"""Environment switches and the Triton dependency check of the runtime.

Consumes: environment variables, read on every call (so a change made at any time, through
`os.environ` or a test's monkeypatch, is seen by the next call): `TRITON_INTERPRET`,
`SPARKC_TUNE`, `SPARKC_TUNE_HOST` and any other default-on `SPARKC_*` switch. Produces: booleans
(`interpreting`, `tuning_enabled`, `charge_host`, `env_flag`, `switched_off`) and the Triton
module or a helpful ImportError (`require_triton`).

A leaf of `sparkc.runtime`: imports nothing from the package, never torch, and triton only inside
`require_triton`. The other runtime modules call these as `env.<name>()`, so a test that patches
a switch here is seen by all of them.
"""

from __future__ import annotations

import os
from typing import Any

INSTALL_HINT = "pip install 'sparkc[gpu]'  (or: pip install triton)"


# The bytes dictionary behind `os.environ` on POSIX (kept in step by os.environ's setters,
# putenv included): generated code asks `interpreting()` and the switches below ~180 times per
# tiny_gpt training step, and `os.environ.get` plus the parsing cost 0.67 µs a call against
# 0.14 µs for a lookup here and a cached parse (bench/host_time_cpu.py). Elsewhere: os.environ.
_ENV_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ENV_KEYS = {
    k: k.encode()
    for k in (
        "TRITON_INTERPRET",
        "SPARKC_TUNE",
        "SPARKC_EXTERN_GEMM",
        "SPARKC_EXTERN_ATTENTION",
        "SPARKC_GEMM_TMA",
        "SPARKC_TMA_DEVICE",
        "SPARKC_TUNE_HOST",
        "SPARKC_FAST_LAUNCH",
        "SPARKC_TUNE_PRUNE",
    )
}


_FLAGS: dict[tuple[bytes | str | None, bool], bool] = {}


def _flag(raw: bytes | str | None, default: bool) -> bool:
    # A dict memo, not functools.lru_cache: `torch.compile` traces through this (generated host
    # glue asks the switches) and warns about every lru_cache it meets.
    hit = _FLAGS.get((raw, default))
    if hit is None:
        text = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw or "").strip()
        hit = default if not text else text.lower() not in ("0", "false", "no", "off")
        if len(_FLAGS) < 256:
            _FLAGS[(raw, default)] = hit
    return hit


def env_flag(name: str, default: bool) -> bool:
    """Environment variable `name` as a boolean: unset or empty is `default`, 0/false/no/off
    False, anything else True."""
    if isinstance(_ENV_BYTES, dict):
        return _flag(_ENV_BYTES.get(_ENV_KEYS.get(name) or name.encode()), default)
    return _flag(os.environ.get(name), default)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return env_flag("TRITON_INTERPRET", False)


def require_triton() -> Any:
    try:
        import triton
    except ImportError as e:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(
            f"sparkc's generated kernels need Triton, which is not installed: {INSTALL_HINT}"
        ) from e
    return triton


def switched_off(variable: str) -> bool:
    """Whether environment switch `variable` (default on) is set to 0/false/no/off."""
    return not env_flag(variable, True)


def tuning_enabled() -> bool:
    """False when `$SPARKC_TUNE` is 0/false/no/off: every kernel then launches its template's
    heuristic configuration without timing candidates (quick first calls, e.g. in test runs that
    compile hundreds of shapes once each)."""
    return not switched_off("SPARKC_TUNE")


def charge_host() -> bool:
    """Whether tuning charges each candidate its host time as well as its GPU time
    (`bench_ms`). `$SPARKC_TUNE_HOST=0`: GPU time alone, for programs replayed from CUDA graphs,
    where launches cost no host time; its choices are stored apart (`device_key`)."""
    return not switched_off("SPARKC_TUNE_HOST")


# Compile threads of the tuner's parallel pass when `$SPARKC_COMPILE_WORKERS` is unset.
DEFAULT_COMPILE_WORKERS = 8


def compile_workers() -> int:
    """How many threads compile a kernel's tuning candidates before they are timed
    (`autotune.precompile`): `$SPARKC_COMPILE_WORKERS` (a positive int; 1 compiles each
    candidate at its first timed launch). Unset: `DEFAULT_COMPILE_WORKERS`, at most the
    machine's CPU count. Triton's compiler releases the GIL in its passes and in ptxas: two
    threads compiled eight GEMM candidates for sm_90 in 3.2 s against 5.5-5.7 s serially on the
    2-core development machine (2026-12-06, bench/probe_compile_threads.py); on the H100 eight
    workers took the attention block's first forward+backward from 61.3 s to 31.4 s with empty
    caches, the steady-state times unchanged (2026-12-07, docs/performance.md)."""
    import os

    raw = os.environ.get("SPARKC_COMPILE_WORKERS", "").strip()
    if not raw:
        return max(1, min(DEFAULT_COMPILE_WORKERS, os.cpu_count() or 1))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"$SPARKC_COMPILE_WORKERS must be a positive integer, got {raw!r}"
        ) from None
    if value < 1:
        raise ValueError(f"$SPARKC_COMPILE_WORKERS must be a positive integer, got {raw!r}")
    return value
