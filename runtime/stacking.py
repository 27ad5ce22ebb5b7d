"""Column blocks and the stacked-weight cache of horizontally fused projections.

Consumes: the weight tensors of a fused projection (attention's q/k/v, say) and its outputs or
operands read as column blocks; `device.capturing`. Produces: the weights stacked
(`stacked_rows`), kept between calls inside `frozen_weights()` while the same weights are
unchanged (`_STACKED`); a [rows, sum(widths)] matrix of adjacent column blocks, a view when
they already share one buffer (`adjacent_columns`); gradient buffers laid out as the same
blocks of one new buffer (`grads_like`, `adjacent_blocks`).

torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

from . import device


def _column_blocks(tensors: Sequence[Any], widths: Sequence[int]) -> tuple[int, int] | None:
    """(rows, row stride) when `tensors`, read as [rows, widths[i]] matrices, are the adjacent
    column blocks, in order, of one row-major [rows, sum(widths)] buffer; else None."""
    first = tensors[0]
    total = sum(widths)
    offset = first.storage_offset()
    rows = None
    for t, w in zip(tensors, widths):
        if t.dtype != first.dtype or t.device != first.device or w <= 0 or t.numel() % w:
            return None
        if t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
            return None
        try:
            m = t.view(-1, w)
        except RuntimeError:
            return None
        if rows is None:
            rows = m.shape[0]
        if m.shape[0] != rows or m.stride(1) != 1 or (rows > 1 and m.stride(0) != total):
            return None
        if t.storage_offset() != offset:
            return None
        offset += w
    return rows, total


def adjacent_columns(mats: Sequence[Any], widths: Sequence[int]) -> Any:
    """The [rows, sum(widths)] matrix whose column blocks are `mats` (each [rows, widths[i]]):
    a view of their buffer when they already are its adjacent blocks (no copy), else their
    concatenation."""
    import torch

    found = _column_blocks(mats, widths)
    if found is not None:
        rows, total = found
        return mats[0].as_strided((rows, total), (total, 1))
    return torch.cat([m.reshape(-1, w) for m, w in zip(mats, widths)], 1)


# Stacked weights of horizontally fused projections kept between calls (`stacked_rows`) inside
# `frozen_weights()`: key the weights' ids, value (weak references to them, their version
# stamps, the stacked tensor).
_STACKED: dict[tuple[int, ...], tuple[tuple, tuple, Any]] = {}
_STACKED_MAX = 256
_FROZEN = [0]  # depth of nested frozen_weights() blocks


@contextlib.contextmanager
def frozen_weights() -> Any:
    """Inside this block the horizontally fused projections (attention's q/k/v) keep their
    stacked weights between calls instead of copying them on every call: for decoding and
    inference, where the copy is three times the projection's own weight traffic and one launch.

    A kept copy is used again only while the same weight tensors have the same version counters,
    data pointers, shapes and strides, so tracked in-place updates (optimizer steps,
    `load_state_dict`, `copy_` under `torch.no_grad()`) are seen. Writes through `.data`
    (`w.data.copy_(...)`, as some EMA code does) bump no version counter and are NOT seen:
    update weights that way only outside the block. Leaving the outermost block frees the
    kept copies. Calls that need the weights' gradients never use them."""
    _FROZEN[0] += 1
    try:
        yield
    finally:
        _FROZEN[0] -= 1
        if not _FROZEN[0]:
            _STACKED.clear()


def stacked_rows(ws: Sequence[Any], keep: bool) -> Any:
    """`torch.cat(ws, 0)`, the weights of a horizontally fused projection stacked. Inside
    `frozen_weights()` and with `keep` (no gradient flows to the weights) the stacked tensor is
    kept and returned again while the same weights are unchanged (see `frozen_weights`: the same
    tensor objects, through weak references, with the same version counters, data pointers,
    shapes and strides). Never kept while a CUDA graph is being captured (a replay would keep
    reading the copy after the weights change). An entry goes when any of its weights is freed,
    when they are stacked again with gradients flowing, or when the block ends."""
    import torch

    if not keep or not _FROZEN[0]:
        if _STACKED:  # training again after decoding: the kept copy would only hold memory
            _STACKED.pop(tuple(id(w) for w in ws), None)
        return torch.cat(ws, 0)
    if device.capturing(ws[0]):
        return torch.cat(ws, 0)
    try:
        stamp = tuple((w._version, w.data_ptr(), w.shape, w.stride()) for w in ws)
    except RuntimeError:  # inference-mode tensors carry no version counter
        return torch.cat(ws, 0)
    key = tuple(id(w) for w in ws)
    hit = _STACKED.get(key)
    if hit is not None:
        refs, old, stacked = hit
        if old == stamp and all(r() is w for r, w in zip(refs, ws)):
            return stacked
    # A normal tensor even under torch.inference_mode(): a later call that saves it for the
    # backward (frozen weights, an input that needs its gradient) could not save an inference
    # tensor.
    with torch.inference_mode(False):
        stacked = torch.cat(ws, 0)
    if len(_STACKED) >= _STACKED_MAX:
        _STACKED.pop(next(iter(_STACKED)))

    def forget(_ref: Any, key: tuple = key) -> None:
        _STACKED.pop(key, None)

    _STACKED[key] = (tuple(weakref.ref(w, forget) for w in ws), stamp, stacked)
    return stacked


def _block_widths(tensors: Sequence[Any]) -> list[int]:
    return [t.shape[-1] * t.shape[-2] if t.dim() > 1 else t.shape[-1] for t in tensors]


def adjacent_blocks(*tensors: Any) -> bool:
    """Whether `tensors` (each read as [rows, its last two dims]) are adjacent column blocks of
    one buffer: what `grads_like` tests, for a caller that keeps only the answer."""
    return bool(tensors[0].numel()) and _column_blocks(tensors, _block_widths(tensors)) is not None


def grads_like(*tensors: Any, adjacent: bool | None = None) -> list[Any]:
    """Empty gradient buffers shaped like `tensors` (each read as [rows, its last two dims]).
    When the tensors are adjacent column blocks of one buffer (the views a horizontally fused
    projection returns), the gradients are the same blocks of one new buffer, so the fused
    projection's backward reads them as one matrix without stacking them. `adjacent` (from
    `adjacent_blocks` of the tensors the gradients are for) overrides the test, for gradients
    of tensors that were copied (same shapes) since."""
    import torch

    widths = _block_widths(tensors)
    if adjacent is None:
        adjacent = adjacent_blocks(*tensors)
    if not adjacent:
        return [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
    total = sum(widths)
    rows = tensors[0].numel() // widths[0]
    buf = torch.empty((rows, total), dtype=tensors[0].dtype, device=tensors[0].device)
    out, start = [], 0
    for t, w in zip(tensors, widths):
        out.append(buf[:, start : start + w].view(t.shape))
        start += w
    return out
