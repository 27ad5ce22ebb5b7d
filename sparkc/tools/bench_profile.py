"""Per-step profile of one benchmark row (`sparkc bench --profile TOP`).

Consumes a zero-argument step function, whether the device is CUDA, and how many entries to
keep. Produces a dict of the wall time per call under torch.profiler, the busy time of the device
kernels per call (on the CPU: the top-level operators' own CPU time), the launches per call and
the `top` busiest kernels as (name, calls per step, ms per step) (`profile_step`), and the text
lines `sparkc bench` prints for it (`format_profile`). torch is imported when a profile runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def profile_step(fn: Callable[[], Any], cuda: bool, top: int, iters: int = 3) -> dict[str, Any]:
    """Run `fn` `iters` times under torch.profiler. Returns the wall time per call, the summed
    time of the device kernels per call (on CPU: of the operators' own CPU time), the launches
    per call, and the `top` busiest kernels as (name, calls per step, ms per step)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t0) * 1e3 / iters
    per_name = busy_by_name(prof.events(), cuda, DeviceType)
    busy = sum(ms for _, ms in per_name.values()) / iters
    ranked = sorted(per_name.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return {
        "wall_ms": wall_ms,
        "busy_ms": busy,
        "launches": sum(n for n, _ in per_name.values()) / iters,
        "top": [(name, n / iters, ms / iters) for name, (n, ms) in ranked[:top]],
    }


def busy_by_name(events: Any, cuda: bool, device_type: Any) -> dict[str, list[float]]:
    """name -> [count, ms] of the events that are device work (on CPU: top-level operators).
    A `record_function` range (the optimizer's "Optimizer.step#AdamW.step", say) also appears
    on the CUDA timeline, spanning kernels counted on their own: it is left out, or its time
    would count twice (it did in the 2026-12-07 tiny_gpt profile: 0.66 ms of 7.60)."""
    per_name: dict[str, list[float]] = {}
    for evt in events:
        if cuda:
            if evt.device_type != device_type.CUDA or getattr(evt, "is_user_annotation", False):
                continue
            us = evt.time_range.elapsed_us()
        else:
            if evt.device_type != device_type.CPU or evt.cpu_parent is not None:
                continue  # top-level operators only: their children's time is inside theirs
            us = evt.cpu_time_total
        entry = per_name.setdefault(evt.name, [0, 0.0])
        entry[0] += 1
        entry[1] += us / 1e3
    return per_name


def format_profile(vname: str, mode: str, prof: dict[str, Any], cuda: bool) -> str:
    what = "kernels" if cuda else "operators"
    lines = [
        (
            f"profile {vname} {mode}: {prof['wall_ms']:.3f} ms wall per call under the profiler, "
            f"{what} busy {prof['busy_ms']:.3f} ms ({100 * prof['busy_ms'] / prof['wall_ms']:.0f}%), "
            f"{prof['launches']:.0f} {what} per call"
        )
    ]
    for name, n, ms in prof["top"]:
        short = name if len(name) <= 70 else name[:67] + "..."
        lines.append(f"  {ms:9.3f} ms  {n:5.0f}x  {short}")
    return "\n".join(lines)
