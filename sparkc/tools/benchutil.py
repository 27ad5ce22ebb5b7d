"""Timing and memory helpers shared by the benchmark scripts in bench/ (and usable by any script
that has sparkc installed: the GPU machine runs them as `python3 -P bench/<script>.py`, where the
script's own folder is not importable).

Consumes a callable of no arguments. Produces:
- `median_ms(fn, warmup=, rep=)`: its median time in milliseconds from `triton.testing.do_bench`
  (L2 flushed before each call; `warmup` and `rep` are do_bench's, in milliseconds);
- `peak_mb(fn)`: the peak CUDA memory one call allocates above what was allocated before it, MiB;
- `cpu_ms(fn)`: one call timed with `time.perf_counter` (the scripts' CPU dry runs);
- `timer(device, warmup=, rep=)`: `median_ms` with those settings on "cuda", else `cpu_ms`;
- `copy_ms(nbytes, device, dtype, timer)`: the time of `torch.empty_like(src).copy_(src)` for a
  `src` of nbytes / 2 bytes, a copy that moves `nbytes` (read + write): the bandwidth ceiling a
  memory-bound kernel moving `nbytes` is compared with, measured in the same run;
- `graph_replay(fn, warmup=)`: `fn` recorded once in a CUDA graph (after `warmup` eager calls on
  a side stream, where kernels compile and tune) and the graph's `replay`: the time of the same
  work without its per-call host cost, for a row beside the per-call one (a call that
  synchronises with the host cannot be recorded: run it with its checks off).
torch and triton are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def median_ms(fn: Callable[[], Any], *, warmup: int, rep: int) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def peak_mb(fn: Callable[[], Any]) -> float:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def cpu_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def timer(device: str, *, warmup: int, rep: int) -> Callable[[Callable[[], Any]], float]:
    if device == "cuda":
        return lambda fn: median_ms(fn, warmup=warmup, rep=rep)
    return cpu_ms


def copy_ms(
    nbytes: int, device: str, dtype: Any, timer: Callable[[Callable[[], Any]], float]
) -> float:
    import torch

    numel = max(1, nbytes // 2 // torch.empty((), dtype=dtype).element_size())
    src = torch.randn(numel, device=device).to(dtype)
    return timer(lambda: torch.empty_like(src).copy_(src))


def graph_replay(fn: Callable[[], Any], *, warmup: int = 2) -> Callable[[], None]:
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay
