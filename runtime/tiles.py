"""Shape arithmetic and tile heuristics of the generated launches.

Consumes: ints and shapes (tuples of ints) on the host, and the interpreter switch of `env`.
Produces: block sizes and grid sizes (`next_pow2`, `cdiv`), the broadcast of operand shapes
(`broadcast_shape`), warps per tile (`num_warps_for`), row-reduction tiles (`row_tile`) and the
collapsed iteration space of a pointwise kernel (`collapse_dims`). Plain Python: generated host
code calls these on every launch, so they must cost less than a small kernel runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import env


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """The broadcast of `shapes` (numpy rules), in plain Python.

    `torch.broadcast_shapes` costs a few hundred microseconds per call on the host, more than a
    memory-bound kernel over 64 MB takes on an H100; every generated launch calls this instead.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, n in enumerate(shape):
            cur = out[offset + i]
            if n != cur and n != 1:
                if cur != 1:
                    raise RuntimeError(
                        "shapes cannot be broadcast together: "
                        + ", ".join(str(list(s)) for s in shapes)
                    )
                out[offset + i] = n
    return tuple(out)


def num_warps_for(block_elems: int) -> int:
    """Warps for a tile of `block_elems` elements: about 256 elements (8 per thread) per warp."""
    return max(1, min(16, next_pow2(block_elems) // 256))


def row_tile(d: int, max_block_d: int = 16384, target: int = 4096) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_D) for kernels that reduce along rows of width `d`.

    The whole row fits one tile up to `max_block_d`; narrow rows are stacked so a program still
    moves about `target` elements (bandwidth). Under the interpreter two rows per tile: grids run
    one program at a time, and a partial last row block exercises the row masks.
    """
    if env.interpreting():
        return 2, min(next_pow2(d), max_block_d)
    block_d = min(next_pow2(d), max_block_d)
    return max(1, min(64, target // block_d)), block_d


def collapse_dims(
    shape: Sequence[int], strides: Sequence[Sequence[int]], max_dims: int = 4
) -> tuple[list[int], list[list[int]]] | None:
    """Merge dimensions of a contiguous output `shape` that every operand walks contiguously.

    `strides[k]` are operand k's strides over `shape` (0 on broadcast dimensions). Size-1
    dimensions are dropped and a dimension merges into the next inner one when, for every operand,
    `stride_outer == stride_inner * size_inner`. Returns `(sizes, strides)` left-padded to
    `max_dims` (size 1, stride 0), or None when more than `max_dims` dimensions remain.
    The common case, same-shape contiguous operands, collapses to one dimension of stride 1.
    """
    dims = [(int(s), [int(st[i]) for st in strides]) for i, s in enumerate(shape) if s != 1]
    merged: list[tuple[int, list[int]]] = []
    for size, sts in dims:
        if merged:
            outer_size, outer_sts = merged[-1]
            if all(o == i * size for o, i in zip(outer_sts, sts)):
                merged[-1] = (outer_size * size, sts)
                continue
        merged.append((size, sts))
    if len(merged) > max_dims:
        return None
    pad = max_dims - len(merged)
    sizes = [1] * pad + [s for s, _ in merged]
    out_strides = [[0] * pad + [sts[k] for _, sts in merged] for k in range(len(strides))]
    return sizes, out_strides
