"""The tensor memory accelerator (TMA): tensor descriptors and the scratch allocator they need.

Consumes: 2-D operand tensors, the switches of `env` (`$SPARKC_GEMM_TMA`, `$SPARKC_TMA_DEVICE`)
and Triton's `TensorDescriptor` where this Triton has one. Produces: whether a GEMM may offer its
descriptor main loop (`tma_ok`), whether the kernels build their descriptors on the device
(`tma_on_device`), host descriptors (`tma_descriptor`) and Triton's global-scratch allocator for
device-built descriptors (`ensure_scratch_allocator`).

torch and triton are imported inside the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from . import env


def tma_ok(*tensors: Any) -> bool:
    """Whether every tensor can be read through a host tensor descriptor (the Hopper tensor
    memory accelerator): 2-D, 16-bit, unit last stride, 16-byte aligned base and row stride,
    on a GPU (or the interpreter), with a Triton that has `TensorDescriptor`; never with
    `$SPARKC_GEMM_TMA=0` (pointer main loops only, for side-by-side measurements)."""
    if _tensor_descriptor_class() is None or env.switched_off("SPARKC_GEMM_TMA"):
        return False
    import torch

    for t in tensors:
        if t.dim() != 2 or t.dtype not in (torch.float16, torch.bfloat16) or min(t.shape) == 0:
            return False
        if t.device.type != "cuda" and not env.interpreting():
            return False
        if t.stride(1) != 1 or (t.stride(0) * t.element_size()) % 16 or t.data_ptr() % 16:
            return False
    return True


def tma_on_device() -> bool:
    """Whether the descriptor main loops build their tensor descriptors inside the kernel
    (`tl.make_tensor_descriptor`) instead of taking host descriptors, whose encoding costs a
    driver call per descriptor and launch on the host. `$SPARKC_TMA_DEVICE=0`: host descriptors
    (for side-by-side measurements)."""
    return not env.switched_off("SPARKC_TMA_DEVICE")


def ensure_scratch_allocator() -> None:
    """Give Triton a global-scratch allocator unless this thread has one: kernels that build
    tensor descriptors on the device keep them in global scratch (128 bytes per descriptor and
    program), which Triton allocates at launch through the allocator of `triton.set_allocator`.
    Triton keeps it in a context variable, which the autograd engine's worker threads do not
    inherit, so this runs before such launches. A user's own allocator is left alone."""
    if env.interpreting():
        return
    from triton.runtime import _allocation

    if isinstance(_allocation._allocator.get(), _allocation.NullAllocator):
        _allocation._allocator.set(_scratch)


def _scratch(size: int, alignment: int, stream: Any) -> Any:
    import torch

    # The caching allocator's blocks are 512-byte aligned; Triton asks for 128.
    return torch.empty(size, dtype=torch.int8, device="cuda")


def tma_descriptor(t: Any, block_shape: Sequence[int]) -> Any:
    """A host tensor descriptor of 2-D `t` read in `block_shape` tiles (zero padding)."""
    return _tensor_descriptor_class()(t, list(t.shape), list(t.stride()), list(block_shape))


@functools.cache
def _tensor_descriptor_class() -> Any:
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:  # Triton before 3.4
        return None
    return TensorDescriptor
