"""Tuning: choose among a kernel's candidate configurations by timing them on the GPU.

Consumes: a kernel name, a shape class, candidate configurations, a timing function and a tensor
on the target device; the switches of `env`, the identity of `device` and the disk cache of
`tuning`. Produces: the chosen candidate (`pick`), remembered in process (`_PICKED`) and on disk,
and the tuner's cost of one call (`bench_ms`: GPU time plus the host time to issue it,
`issue_ms`). With `$SPARKC_COMPILE_WORKERS` above 1, the candidates of a kernel not tuned yet
are compiled several at a time first (`precompile`: each candidate's call runs once in a worker
thread under `compile_only()`, where sparkc's `Kernel` launches compile and run nothing and
`bench_ms` times nothing), so the timing rounds find every candidate compiled.

Off GPU, under the interpreter or with `$SPARKC_TUNE=0` nothing is timed: the first candidate
(the template's heuristic) is the answer. torch and triton are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import device, env, tuning
from .device import compile_only, compiling_only  # the pass's thread-local switch


def pick(
    name: str,
    shape_class: Any,
    candidates: Sequence[Any] | Callable[[], Sequence[Any]],
    bench_fn: Callable[[Any], float],
    *,
    source: Any,
    like: Any,
) -> Any:
    """Choose among `candidates` for kernel `name` on the device of tensor `like`.

    `bench_fn(candidate)` returns a time in milliseconds. The choice is cached on disk, keyed by
    the hash of `source` (the kernel's source text or JITFunction), the shape class, the GPU and
    the Triton version. Under the interpreter, off GPU, or with `$SPARKC_TUNE=0` the first
    candidate (the template's heuristic) is returned untimed; inside a CUDA graph capture, where
    timing cannot run, or inside the parallel compile pass (`compile_only`, which times nothing),
    the choice on disk if there is one, else the heuristic, not remembered.
    `candidates` may be a function returning the list, called only when the choice is not
    already known in this process (the lookup runs on every launch).
    """
    if env.interpreting() or like.device.type != "cuda" or not env.tuning_enabled():
        return (candidates() if callable(candidates) else candidates)[0]
    # In-process memo in front of the disk cache: hashing the source and serialising the key
    # would cost more host time than a small kernel runs. Everything that changes the candidate
    # list must be part of the shape class.
    key = tuple(shape_class) if isinstance(shape_class, list) else shape_class
    memo_key = (name, id(source), key, like.device.index, env.charge_host())
    hit = _PICKED.get(memo_key)
    if hit is None:
        cands = candidates() if callable(candidates) else candidates
        cache, src = tuning.default_cache(), tuning.source_hash(source)
        if device.capturing(like):
            # Timing synchronises, which a CUDA graph capture forbids (and the compile pass
            # times nothing): a choice stored on disk, else the heuristic for this call,
            # remembered by nobody (callers memoising their choices check `capturing` too), so
            # the first call outside a capture or the pass tunes.
            stored = cache.lookup(
                name, tuning.entry_key(src, shape_class, device.device_key(like)), cands
            )
            return cands[0] if stored is None else stored
        hit = cache.choose(
            name,
            src,
            shape_class,
            device.device_key(like),
            cands,
            bench_fn,
            prepare=lambda: precompile(cands, bench_fn, like),
        )
        _PICKED[memo_key] = hit
    return hit


# pick()'s memo: (kernel, id of its source object, shape class, device) -> choice. Sources are
# module-level JIT functions that live as long as the process, so ids are stable.
_PICKED: dict[tuple, Any] = {}


def precompile(candidates: Sequence[Any], bench_fn: Callable[[Any], float], like: Any) -> None:
    """Compile every candidate before the timing rounds, `env.compile_workers()` at a time:
    `bench_fn(candidate)` once per candidate under `compile_only()` in a worker thread, on the
    device and stream of `like`'s caller (torch work a candidate's call still does, such as an
    allocation or an extern GEMM, is ordered before what the caller issues next). The first
    candidate compiles alone first (Triton builds its per-kernel binder once). A candidate that
    fails here is left to the timing rounds, which score it. No-op with one worker."""
    workers = env.compile_workers()
    if workers < 2 or len(candidates) < 2:
        return
    import concurrent.futures

    place = _caller_place(like)

    def warm(candidate: Any) -> None:
        with place(), compile_only():
            try:
                bench_fn(candidate)
            except Exception:  # noqa: BLE001, S110 - the timing rounds meet it again and score it
                pass

    warm(candidates[0])
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(candidates) - 1)) as pool:
        list(pool.map(warm, candidates[1:]))


def _caller_place(like: Any) -> Callable[[], Any]:
    """A context-manager factory putting a worker thread on the caller's CUDA device and current
    stream (no-op for a tensor off CUDA)."""
    if like.device.type != "cuda":
        return contextlib.nullcontext
    import torch

    index = like.device.index if like.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)

    @contextlib.contextmanager
    def place() -> Iterator[None]:
        with torch.cuda.device(index), torch.cuda.stream(stream):
            yield

    return place


def bench_ms(fn: Callable[[], Any]) -> float:
    """The tuner's cost of one call of `fn()`, in milliseconds: its GPU time (do_bench median,
    L2 flushed) plus the host time it takes to issue (`issue_ms`).

    The serial model of a program whose host and GPU time are comparable. A call is never
    timed alone in a model: when the whole program is host-bound (a training step of ~70
    launches at 80-140 µs of host each on the lent machine) every µs of host time counts, and
    in isolation a GPU-bound kernel hides its host time behind its own run. Measured
    2026-12-02: the tensor-descriptor main loops won their GEMMs in isolation and made the
    tiny_gpt step 15% slower (9.40 against 8.15 ms without them; 7.62 replayed from CUDA
    graphs). A candidate now wins only when it saves more GPU time than it adds host time.
    With `$SPARKC_TUNE_HOST=0` (`charge_host`): the GPU time alone. Inside `compile_only()`:
    one call, no timing, 0.0."""
    if compiling_only():
        fn()
        return 0.0
    import triton.testing

    flushed = float(triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median"))
    return flushed + issue_ms(fn) if env.charge_host() else flushed


def issue_ms(fn: Callable[[], Any], calls: int = 10) -> float:
    """Host milliseconds per call to issue `calls` calls of `fn()` back to back (after one
    untimed call and a synchronisation, so the queue starts empty)."""
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - t0) * 1e3 / calls
    torch.cuda.synchronize()
    return host
