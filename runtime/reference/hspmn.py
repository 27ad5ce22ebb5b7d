"""Reference rules of SPEC §4 (HSPMN): `token_router` and `sqdk_attention`.

- token_router: x [B,N,D] -> (mask bool [B,N], gate [B,N], loss). Logistic noise in training,
  threshold or top-k selection (stable sort: ties to the lower index), straight-through gate.
- sqdk_attention: (x, gate) -> y. Keys and values for every position; queries only for routed
  rows (gate ≠ 0), gathered, attended causally, projected, scaled by the gate and scattered into
  a zero output, so unrouted rows are exactly 0 and their gate gets no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .attention import expand_kv
from .common import (
    Params,
    RefContext,
    Tensor,
    apply_rope,
    down,
    heads_view,
    linear,
    logistic_noise,
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


def ref_sqdk_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext
) -> tuple[Tensor, ...]:
    x, gate = inputs["x"], inputs["gate"]
    b, n, dm = x.shape
    heads, kv = hp["heads"], hp["kv_heads"] or hp["heads"]
    k = up(heads_view(linear(x, params, "wk", bias=False), kv))  # [B, N, KV, d]
    v = up(heads_view(linear(x, params, "wv", bias=False), kv))
    cdt, d = k.dtype, k.shape[-1]
    bi, ti = torch.nonzero(gate.detach() != 0, as_tuple=True)  # routed rows, row-major order
    out = x.new_zeros(b, n, dm)
    if bi.numel() == 0:
        # Keep a graph edge to x, gate and the weights so backward runs (every grad is 0);
        # sums over empty slices are exactly 0 even when an input holds inf or NaN.
        edge = x[..., :0].sum() + gate[..., :0].sum().to(x.dtype)
        for w in ("wq", "wk", "wv", "wo"):
            edge = edge + params[f"{w}.weight"][..., :0].sum().to(x.dtype)
        return (out + edge,)
    q = up(heads_view(linear(x[bi, ti][:, None, :], params, "wq", bias=False), heads))[:, 0]
    if hp["rope"]:
        cos_all, sin_all = rope_tables(n, d, hp["rope_base"], ctx.position_offset, x.device, cdt)
        k = apply_rope(k, cos_all, sin_all)
        q = apply_rope(q, cos_all[ti], sin_all[ti])  # each routed query at its own position t
    kr = expand_kv(k, heads)[bi]  # [R, N, H, d]: the keys of each routed row's sequence
    vr = expand_kv(v, heads)[bi]
    s = torch.einsum("rhd,rshd->rhs", q, kr) / math.sqrt(d)
    allowed = torch.arange(n, device=x.device)[None, :] <= ti[:, None]  # s ≤ t
    s = s.masked_fill(~allowed[:, None, :], float("-inf"))
    o = torch.einsum("rhs,rshd->rhd", torch.softmax(s, dim=-1), vr).reshape(-1, dm)
    y = linear(down(o, x), params, "wo", bias=False) * gate[bi, ti][:, None]
    return (out.index_put((bi, ti), y),)


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "token_router": ref_token_router,
    "sqdk_attention": ref_sqdk_attention,
}
