"""Host side of the generated pointwise kernels: the layout, tile choice and launch that every
fused elementwise program of a generated module shares (codegen_templates/
primitives_pointwise.py.jinja renders only the kernel and thin entry points calling this).

Consumes: a program's kernel (`NAME_kernel`: a `@triton.jit` function, or the launcher's `Kernel`
wrapping it), its tuning name (the string "NAME", the key of its tuning cache entries), the names
of its constexpr unit-stride flags (`x_UNIT`, one per tensor input, in input order), the inputs
(any strides, broadcastable to the outputs' shape), the outputs (contiguous, all of one shape)
and the program's scalar arguments; `env` (the interpreter switch), `tiles` (`cdiv`,
`next_pow2`, `collapse_dims`) and `autotune` (`pick`, `bench_ms`).
Produces: the launch computing into the outputs (`launch_pointwise`) and its
`(BLOCK, num_warps)` (`pointwise_config`: (32, 1) under the interpreter, (1024, 4) below 2^20
elements, else tuned per GPU and size class). Plain Python on the host; the kernel's module
imports triton, this one imports nothing but the runtime's own modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import autotune, env, tiles

# (BLOCK, num_warps) candidates timed for tensors of 2^20 elements or more (the first is the
# untimed default with tuning off).
POINTWISE_CANDIDATES = ((1024, 4), (2048, 4), (4096, 8), (8192, 8))


def pointwise_config(
    kernel: Any,
    name: str,
    numel: int,
    ndim: int,
    ins: Sequence[Any],
    outs: Sequence[Any],
    args: list,
    flags: dict[str, bool],
) -> tuple[int, int]:
    """(BLOCK, num_warps) of one launch of pointwise `kernel`: tuned per device and size class
    for large tensors. `args` and `flags` are the launch's arguments (`launch_pointwise`), with
    which each candidate is timed."""
    if env.interpreting():
        return 32, 1
    if numel < (1 << 20):
        return 1024, 4

    def bench(cfg):
        grid = (tiles.cdiv(numel, cfg[0]),)
        launch = kernel[grid]
        return autotune.bench_ms(
            lambda: launch(*args, **flags, NDIM=ndim, BLOCK=cfg[0], INT64=False, num_warps=cfg[1])
        )

    shape_class = [ndim, min(tiles.next_pow2(numel), 1 << 28)]
    shape_class += [str(t.dtype) for t in [*ins, *outs]]
    return tuple(
        autotune.pick(name, shape_class, POINTWISE_CANDIDATES, bench, source=kernel, like=outs[0])
    )


def launch_pointwise(
    kernel: Any,
    name: str,
    units: Sequence[str],
    ins: Sequence[Any],
    outs: Sequence[Any],
    *scalars: float,
) -> None:
    """Compute into `outs` (contiguous, one shape) from `ins` (broadcastable to that shape) with
    pointwise `kernel`, whose tuning name is `name` and whose unit-stride flags are `units`
    (`"x_UNIT"` of each input, in order); `scalars` are passed as floats after the outputs."""
    shape = outs[0].shape
    numel = outs[0].numel()
    for o in outs:
        assert o.is_contiguous() and o.shape == shape, "pointwise outputs: contiguous, one shape"
    if numel == 0:
        return
    ins = [t.expand(shape) for t in ins]
    layout = tiles.collapse_dims(shape, [t.stride() for t in ins])
    if layout is None:
        # More than 4 non-mergeable dims: materialise the inputs, which makes the layout flat.
        ins = [t.contiguous() for t in ins]
        layout = tiles.collapse_dims(shape, [t.stride() for t in ins])
    sizes, strides = layout
    ndim = max(1, sum(1 for s in sizes if s != 1))
    reach = max([numel] + [sum((n - 1) * st for n, st in zip(sizes, sts)) + 1 for sts in strides])
    args = [*ins, *outs, *[float(s) for s in scalars], numel, *sizes[1:]]
    for sts in strides:
        args += sts
    # x_UNIT (innermost stride 1) is a constexpr of the kernel, so loads of such inputs vectorise.
    flags = {unit: sts[3] == 1 for unit, sts in zip(units, strides)}
    block, warps = pointwise_config(kernel, name, numel, ndim, ins, outs, args, flags)
    grid = (tiles.cdiv(numel, block),)
    kernel[grid](*args, **flags, NDIM=ndim, BLOCK=block, INT64=reach >= 2**31, num_warps=warps)
