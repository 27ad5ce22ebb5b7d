"""Device identity: which GPU a tensor is on, as the tuner and the launches need it.

Consumes: a tensor (only its `.device`) and the switches of `env`. Produces: a clean error for a
tensor no Triton kernel can read (`require_cuda`), the key a tuning choice is valid for (GPU
name, compute capability, Triton version, whether host time was charged: `device_key`), the
number of streaming multiprocessors (`sm_count`) and whether a CUDA graph is being captured
(`capturing`, true as well inside the tuner's compile pass, `compile_only`). The GPU's properties are asked once per device (`_cuda_identity`).

torch and triton are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

from . import env


def require_cuda(tensor: Any) -> None:
    """Triton kernels run on CUDA tensors, or on CPU tensors under the interpreter; anything else
    is refused with the remedies (the one check of the Triton path's device, for the plain
    forward and the cached calls alike)."""
    if tensor.device.type == "cuda" or (env.interpreting() and tensor.device.type == "cpu"):
        return
    raise RuntimeError(
        f"impl='triton' runs generated kernels on a CUDA device, but the input is on "
        f"{tensor.device}; move the model and inputs with .cuda(), use impl='reference', or set "
        "TRITON_INTERPRET=1 (before importing triton) to run the kernels in the interpreter"
    )


@functools.cache
def _cuda_identity(index: int) -> tuple[str, int, int, int]:
    import torch

    props = torch.cuda.get_device_properties(index)
    return props.name, props.major, props.minor, props.multi_processor_count


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "none"
    return str(triton.__version__)


def device_key(tensor: Any) -> str:
    """Identifies the hardware and compiler a tuning result is valid for."""
    if tensor.device.type == "cuda" and not env.interpreting():
        name, major, minor, _ = _cuda_identity(tensor.device.index or 0)
        mode = "" if env.charge_host() else "|gpu-only"
        return f"{name}|sm{major}{minor}|triton-{_triton_version()}{mode}"
    return f"{tensor.device.type}-interpreter|triton-{_triton_version()}"


_LOCAL = threading.local()


@contextlib.contextmanager
def compile_only() -> Iterator[None]:
    """In this thread: the tuner's parallel compile pass (`autotune.precompile`). A generated
    kernel's launch (`launcher.Kernel`) compiles it for its arguments (Triton's `warmup`) and
    runs nothing, `autotune.bench_ms(fn)` calls `fn` once and times nothing, and `capturing` is
    true (nothing synchronises, no choice is made for good)."""
    before = getattr(_LOCAL, "compile_only", False)
    _LOCAL.compile_only = True
    try:
        yield
    finally:
        _LOCAL.compile_only = before


def compiling_only() -> bool:
    """Whether this thread is inside `compile_only()`."""
    return getattr(_LOCAL, "compile_only", False)


def capturing(tensor: Any) -> bool:
    """True while the current CUDA stream is being captured into a CUDA graph, or while this
    thread runs the tuner's compile pass (`compile_only`): work that synchronises with the host,
    such as validating ids or timing a candidate, must be skipped then, and a tile choice made
    then is provisional (not remembered)."""
    if compiling_only():
        return True
    if tensor.device.type != "cuda":
        return False
    import torch

    return torch.cuda.is_current_stream_capturing()


def sm_count(tensor: Any) -> int:
    """Streaming multiprocessors of the tensor's GPU (a small number under the interpreter, where
    every program runs one after another)."""
    if tensor.device.type == "cuda" and not env.interpreting():
        return _cuda_identity(tensor.device.index or 0)[3]
    return 2
