"""The runtime names generated code calls as `_launch.<name>`, gathered from the modules that own
them (a facade: nothing is defined here but `wrap_kernels`).

Consumes: nothing of its own; it re-exports. Produces, by owning module:
- `env`: environment switches (`interpreting`, `tuning_enabled`, `charge_host`) and the Triton
  dependency check (`require_triton`, `INSTALL_HINT`);
- `device`: device identity (`device_key`, `sm_count`, `capturing`, `require_cuda`);
- `tiles`: shape arithmetic and tile heuristics (`next_pow2`, `cdiv`, `broadcast_shape`,
  `num_warps_for`, `row_tile`, `collapse_dims`);
- `autotune`: tuning by timing (`pick`, `bench_ms`, `issue_ms`) over the disk cache of `tuning`;
- `gemm`: GEMM tile candidates and torch's GEMM beside them (`tuned_gemm`, `fit_gemm`,
  `GEMM_*`, `EXTERN`, `EXTERN_CFG`, `extern_gemm_ok`, `extern_call`, `extern_gemm`,
  `fold_bias_ok`, `fold_bias_dw`);
- `pointwise`: the host side of the generated pointwise kernels (`launch_pointwise`: layout,
  tile choice and launch);
- `sdpa`: torch's fused attention beside the generated attention kernels (`extern_attention_ok`,
  `extern_attention`, `attention_impl`);
- `stacking`: the stacked-weight cache of fused projections (`frozen_weights`, `stacked_rows`,
  `adjacent_columns`, `grads_like`, `adjacent_blocks`);
- `tma`: tensor descriptors and their scratch allocator (`tma_ok`, `tma_on_device`,
  `tma_descriptor`, `ensure_scratch_allocator`);
- `dispatch`: calling generated autograd Functions (`apply`, `NoGradCtx`, which generated code
  calls `_NoGradCtx`) and `validate_ids`;
- `triton_compile`: Triton's cache folder and ahead-of-time compiles (`configure_triton_cache`,
  `compile_for_target`);
- `launcher` (imported on first use: it needs triton): `wrap_kernels`, which owns the cached
  launcher and its switch (`launcher.fast_launch`).

This module must import (and `require_triton` must raise its helpful error) on a machine without
triton; torch is imported with it (`apply`).

Patching: the names here are bindings of the owning modules' objects, looked up by generated
code at call time. The runtime's own modules call each other through the owning module
(`env.interpreting()`, `autotune.pick(...)`), so a test that replaces a name for generated code
and for the runtime's internals patches both this module and the owner (tests/conftest.py,
fixture `patch_runtime`).
"""

from __future__ import annotations

from .autotune import bench_ms, issue_ms, pick
from .device import capturing, device_key, require_cuda, sm_count
from .dispatch import NoGradCtx, apply, validate_ids
from .env import INSTALL_HINT, charge_host, interpreting, require_triton, tuning_enabled
from .gemm import (
    EXTERN,
    EXTERN_CFG,
    GEMM_CANDIDATES,
    GEMM_KEYS,
    GEMM_SKINNY_CANDIDATES,
    GEMM_SMEM_BUDGET,
    extern_call,
    extern_gemm,
    extern_gemm_ok,
    fit_gemm,
    fold_bias_dw,
    fold_bias_ok,
    tuned_gemm,
)
from .pointwise import launch_pointwise
from .sdpa import attention_impl, extern_attention, extern_attention_ok
from .stacking import adjacent_blocks, adjacent_columns, frozen_weights, grads_like, stacked_rows
from .tiles import broadcast_shape, cdiv, collapse_dims, next_pow2, num_warps_for, row_tile
from .tma import ensure_scratch_allocator, tma_descriptor, tma_ok, tma_on_device
from .triton_compile import compile_for_target, configure_triton_cache

# Generated code calls it `_launch._NoGradCtx` (the name is part of every golden kernels.py).
_NoGradCtx = NoGradCtx


def wrap_kernels(namespace: dict) -> None:
    """Route a generated kernels.py's launched kernels through sparkc's launcher
    (`runtime/launcher.py`); called on its globals by its last line."""
    from .launcher import wrap_kernels as wrap

    wrap(namespace)


__all__ = [
    "EXTERN",
    "EXTERN_CFG",
    "GEMM_CANDIDATES",
    "GEMM_KEYS",
    "GEMM_SKINNY_CANDIDATES",
    "GEMM_SMEM_BUDGET",
    "INSTALL_HINT",
    "_NoGradCtx",
    "adjacent_blocks",
    "adjacent_columns",
    "apply",
    "attention_impl",
    "bench_ms",
    "broadcast_shape",
    "capturing",
    "cdiv",
    "charge_host",
    "collapse_dims",
    "compile_for_target",
    "configure_triton_cache",
    "device_key",
    "ensure_scratch_allocator",
    "extern_attention",
    "extern_attention_ok",
    "extern_call",
    "extern_gemm",
    "extern_gemm_ok",
    "fit_gemm",
    "fold_bias_dw",
    "fold_bias_ok",
    "frozen_weights",
    "grads_like",
    "interpreting",
    "issue_ms",
    "launch_pointwise",
    "next_pow2",
    "num_warps_for",
    "pick",
    "require_cuda",
    "require_triton",
    "row_tile",
    "sm_count",
    "stacked_rows",
    "tma_descriptor",
    "tma_ok",
    "tma_on_device",
    "tuned_gemm",
    "tuning_enabled",
    "validate_ids",
    "wrap_kernels",
]
