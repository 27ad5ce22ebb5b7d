"""Reference rules of SPEC §4 (HSPMN): `token_router` and `sqdk_attention`.

- token_router: x [B,N,D] -> (mask bool [B,N], gate [B,N], loss). Logistic noise in training,
  threshold or top-k selection (stable sort: ties to the lower index), straight-through gate.
- sqdk_attention: (x, gate) -> y. Keys and values for every position; queries only for routed
  rows (gate ≠ 0), gathered per sequence in tiles of fixed size, attended causally, projected,
  scaled by the gate and scattered into a zero output, so unrouted rows are exactly 0 and their
  gate gets no gradient. Memory O(B·N·D + R·D + tile·H·N); a routed row's value does not depend
  on which other rows are routed (fixed shapes), so changing later routing leaves it bit-exact.
- DECODE: cached decoding (sqdk_attention keeps keys and values of every position; the
  threshold router is per token).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.utils.checkpoint

from .attention import (
    attend_fused,
    attend_step,
    causal_mask,
    fill_kv,
    fused_step,
    kv_state,
    project_qkv,
)
from .common import (
    Decoder,
    Params,
    RefContext,
    Tensor,
    apply_rope,
    down,
    heads_view,
    linear,
    logistic_noise,
    offset_of,
    positions,
    rope_tables,
    up,
)

Inputs = dict[str, Tensor]
Hp = dict[str, Any]


def topk_count(sparsity: float, n: int) -> int:
    """k = max(1, ⌊sparsity·N + 1e-9⌋), in float64 (Python floats are float64)."""
    return max(1, math.floor(float(sparsity) * n + 1e-9))


def ref_token_router(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    logit = up(linear(x, params, "w")).squeeze(-1)  # [B, N]
    p = torch.sigmoid(logit)
    noisy = logit
    if ctx.training and hp["noise"]:
        noisy = logit + logistic_noise(tuple(logit.shape), logit.device, ctx).to(logit.dtype)
    if hp["mode"] == "threshold":
        mask = noisy > 0
    else:
        n = logit.shape[1]
        k = topk_count(hp["sparsity"], n)
        # A stable descending sort keeps equal values in index order: ties go to the lower index.
        order = torch.sort(noisy.detach(), dim=-1, descending=True, stable=True).indices[:, :k]
        mask = torch.zeros_like(noisy, dtype=torch.bool).scatter(1, order, True)
    s = torch.sigmoid(noisy)
    # Forward value exactly mask (s − sg(s) is exactly 0); gradient through the sigmoid.
    gate = mask.to(s.dtype) + (s - s.detach())
    loss = float(hp["aux_weight"]) * (p.mean() - float(hp["sparsity"])) ** 2
    return mask, down(gate, x), down(loss, x)


QUERY_TILE = 64
"""Routed queries per tile of `ref_sqdk_attention` (fewer when N is shorter)."""


def _attend_tile(q: Tensor, k: Tensor, v: Tensor, pos: Tensor) -> Tensor:
    """Causal attention of one tile of queries q [T, KV, G, d] at positions pos [T] over one
    sequence's keys and values k, v [N, KV, d]: o [T, KV, G, d]. Every shape depends only on
    T and N, so a row's result depends on its own query and the keys at positions ≤ its own."""
    d = q.shape[-1]
    s = torch.einsum("tkgd,skd->tkgs", q, k) / math.sqrt(d)
    allowed = torch.arange(k.shape[0], device=q.device)[None, :] <= pos[:, None]  # s ≤ t
    s = s.masked_fill(~allowed[:, None, None, :], float("-inf"))
    return torch.einsum("tkgs,skd->tkgd", torch.softmax(s, dim=-1), v)


def ref_sqdk_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext
) -> tuple[Tensor, ...]:
    x, gate = inputs["x"], inputs["gate"]
    b, n, dm = x.shape
    heads, kv = hp["heads"], hp["kv_heads"] or hp["heads"]
    k = up(heads_view(linear(x, params, "wk", bias=False), kv))  # [B, N, KV, d]
    v = up(heads_view(linear(x, params, "wv", bias=False), kv))
    cdt, d = k.dtype, k.shape[-1]
    routed = gate.detach() != 0
    out = x.new_zeros(b, n, dm)
    counts = routed.sum(dim=1).tolist()
    if sum(counts) == 0:
        # Keep a graph edge to x, gate and the weights so backward runs (every grad is 0);
        # sums over empty slices are exactly 0 even when an input holds inf or NaN.
        edge = x[..., :0].sum() + gate[..., :0].sum().to(x.dtype)
        for w in ("wq", "wk", "wv", "wo"):
            edge = edge + params[f"{w}.weight"][..., :0].sum().to(x.dtype)
        return (out + edge,)
    if hp["rope"]:
        cos_all, sin_all = rope_tables(n, d, hp["rope_base"], ctx.position_offset, x.device, cdt)
        k = apply_rope(k, cos_all, sin_all)
    # Routed queries go in tiles of T rows per sequence, in position order, the last tile padded
    # with position 0; each tile is projected, attended against its whole sequence (masked) and
    # projected back with shapes fixed by (T, N). So a routed row's output never depends on how
    # many other rows are routed, and memory stays O(B·N·D + R·D + T·H·N), never [R, N, H, d].
    tile = min(QUERY_TILE, n)
    checkpoint = torch.is_grad_enabled() and (
        x.requires_grad or any(params[f"{w}.weight"].requires_grad for w in ("wq", "wk", "wv"))
    )
    rows_b, rows_t, ys = [], [], []
    for bi, count in enumerate(counts):
        positions = torch.nonzero(routed[bi], as_tuple=True)[0]
        for start in range(0, count, tile):
            pos = positions[start : start + tile]
            m = pos.numel()
            pos_p = torch.cat([pos, pos.new_zeros(tile - m)])  # padded rows: discarded below
            q = up(linear(x[bi, pos_p], params, "wq", bias=False)).reshape(tile, heads, d)
            if hp["rope"]:
                q = apply_rope(q[None], cos_all[pos_p], sin_all[pos_p])[0]
            q = q.reshape(tile, kv, heads // kv, d)
            if checkpoint:  # backward recomputes the [T, H, N] scores instead of keeping them
                o = torch.utils.checkpoint.checkpoint(
                    _attend_tile, q, k[bi], v[bi], pos_p, use_reentrant=False
                )
            else:
                o = _attend_tile(q, k[bi], v[bi], pos_p)
            y = linear(down(o.reshape(tile, dm), x), params, "wo", bias=False)[:m]
            ys.append(y * gate[bi, pos][:, None])
            rows_b.append(torch.full_like(pos, bi))
            rows_t.append(pos)
    return (out.index_put((torch.cat(rows_b), torch.cat(rows_t)), torch.cat(ys)),)


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "token_router": ref_token_router,
    "sqdk_attention": ref_sqdk_attention,
}


# ---- Cached decoding (SPEC §5.6; runtime/decode.py).


def _router_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    return {}  # threshold routing is per token: nothing to keep


def step_token_router(inputs, params, hp, ctx, state) -> tuple[Tensor, ...]:
    """Per token; the loss covers the new positions only."""
    return ref_token_router(inputs, params, hp, ctx)


def _sqdk_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    """Keys (RoPE at their positions) and values of every position, routed or not."""
    kv = hp["kv_heads"] or hp["heads"]
    return kv_state(batch, max_len, kv, shapes["x"][-1] // hp["heads"], device, dtype)


def _routed_only(y: Tensor, gate: Tensor) -> Tensor:
    """y [B, N, D] with the rows whose gate is 0 set to exactly 0 (whatever y held there)."""
    return torch.where((gate != 0)[..., None], y, torch.zeros((), dtype=y.dtype, device=y.device))


def step_sqdk_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext, state: dict[str, Tensor]
) -> tuple[Tensor, ...]:
    """Keys and values of the new rows into the cache; queries only for the routed new rows,
    each attending to the cached positions ≤ its own; unrouted rows are exactly 0."""
    x, gate = inputs["x"], inputs["gate"]
    b, n, dm = x.shape
    heads, kv = hp["heads"], hp["kv_heads"] or hp["heads"]
    if fused_step(ctx, n, state):  # one row on the Triton path: the fused decode step kernel
        q, k, v = project_qkv(x, params, heads, kv)
        o = attend_step(q, k, v, hp, ctx, state, gate=gate[:, 0])
        y = linear(down(o.reshape(b, n, dm), x), params, "wo", bias=False) * gate[..., None]
        return (_routed_only(y, gate),)
    k = up(heads_view(linear(x, params, "wk", bias=False), kv))
    v = up(heads_view(linear(x, params, "wv", bias=False), kv))
    cdt, d = k.dtype, k.shape[-1]
    if hp["rope"]:
        cos, sin = rope_tables(n, d, hp["rope_base"], offset_of(ctx), x.device, cdt)
        k = apply_rope(k, cos, sin)
    if ctx.position is not None:
        tables = (cos, sin) if hp["rope"] else (None, None)
        return (_static_sqdk_step(x, gate, params, hp, ctx, state, k, v, *tables),)
    off, end = ctx.position_offset, ctx.position_offset + n
    state["k"][:, off:end] = k
    state["v"][:, off:end] = v
    # Queries for every new row, one fused attention over the cached rows (each row masked to
    # positions ≤ its own), then unrouted rows set to exactly 0: a prefill of B·N rows costs a
    # few batched launches (the earlier per-tile gather of each routed row's whole cache,
    # [T, L+N, KV, d] per tile, took 1.08 s for hspmn's B = 64 prompt, H100 2026-12-07). The
    # unrouted rows' queries are wasted work, bounded by one dense prefill; decoding steps
    # (N = 1) are where the cost per token matters, and a row's output still depends only on
    # its own query and the cached rows.
    q = up(heads_view(linear(x, params, "wq", bias=False), heads))  # [B, N, H, d]
    if hp["rope"]:
        q = apply_rope(q, cos, sin)
    pos = torch.arange(end, device=x.device)
    o = attend_fused(
        q, state["k"][:, :end], state["v"][:, :end], causal_mask(n, end, pos[off:], pos)
    )
    y = linear(down(o.reshape(b, n, dm), x), params, "wo", bias=False) * gate[..., None]
    return (_routed_only(y, gate),)


def _static_sqdk_step(x, gate, params, hp, ctx, state, k, v, cos, sin) -> Tensor:
    """A static step (`ctx.position` set, no host sync: capturable in a CUDA graph): the same
    outputs, with queries for every new row (no data-dependent row selection), each reading
    the cached rows ≤ its position; unrouted rows are set to exactly 0."""
    b, n, dm = x.shape
    heads, kv = hp["heads"], hp["kv_heads"] or hp["heads"]
    d = k.shape[-1]
    rows = positions(ctx, n, x.device)
    state["k"].index_copy_(1, rows, k)
    state["v"].index_copy_(1, rows, v)
    q = up(heads_view(linear(x, params, "wq", bias=False), heads))
    if cos is not None:
        q = apply_rope(q, cos, sin)
    q = q.reshape(b, n, kv, heads // kv, d)
    s = torch.einsum("bnkgd,bskd->bnkgs", q, state["k"]) / math.sqrt(d)
    allowed = torch.arange(state["k"].shape[1], device=x.device)[None, :] <= rows[:, None]
    s = s.masked_fill(~allowed[None, :, None, None, :], float("-inf"))
    o = torch.einsum("bnkgs,bskd->bnkgd", torch.softmax(s, dim=-1), state["v"])
    y = linear(down(o.reshape(b, n, dm), x), params, "wo", bias=False) * gate[..., None]
    return _routed_only(y, gate)


DECODE: dict[str, Decoder] = {
    "token_router": Decoder(_router_state, step_token_router),
    "sqdk_attention": Decoder(_sqdk_state, step_sqdk_attention, fill_kv),
}
