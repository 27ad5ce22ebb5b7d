"""Reference rule of SPEC §1.1 `attention` (GQA, RoPE) with the §5.5 procedural basis bias.

Consumes `x [B, N, D]` and the parameters `wq.weight`, `wk.weight`, `wv.weight`, `wo.weight`
(and `basis.gains [H, 2·freqs + legendre]` when `basis` is set); produces `y [B, N, D]`.
Attention is a batched matmul with an explicit mask (the reference may materialise [B,H,N,N]);
scores, softmax and the weighted sum run in the compute dtype (float32, or float64).

Also exports the pieces other mixers reuse: `project_qkv`, `attend`, `basis_bias`, and its
cached-decoding rule (`DECODE`: keys and values of every position, `kv_state`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .common import (
    Decoder,
    Params,
    RefContext,
    Tensor,
    apply_rope,
    check_positions,
    compute_dtype,
    down,
    heads_view,
    linear,
    merge,
    offset_of,
    positions,
    rope_tables,
    up,
)

Inputs = dict[str, Tensor]
Hp = dict[str, Any]


def basis_dict(basis: Any) -> dict[str, Any]:
    """`basis` arrives as a tuple of (name, value) pairs (or an equivalent mapping)."""
    return dict(basis.items()) if hasattr(basis, "items") else dict(basis)


def legendre(y: Tensor, order: int) -> list[Tensor]:
    """P_1..P_order at y by the three-term recurrence (n+1)P_{n+1} = (2n+1) y P_n − n P_{n−1}."""
    out: list[Tensor] = []
    p_prev, p = torch.ones_like(y), y
    for n in range(1, order + 1):
        out.append(p)
        p_prev, p = p, ((2 * n + 1) * y * p - n * p_prev) / (n + 1)
    return out


def basis_atoms(spec: dict[str, Any], q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """The atoms of §5.5 in order (sin f=1..F, cos f=1..F, P_1..P_L of 2x−1): [A, Nq, Nk]."""
    max_len = spec["max_len"]
    if spec["over"] == "distance":
        x = (q_pos[:, None] - k_pos[None, :]).abs() / max_len
    else:
        x = (k_pos[None, :] / max_len).expand(q_pos.shape[0], k_pos.shape[0])
    f = range(1, spec["freqs"] + 1)
    atoms = [torch.sin(math.pi * i * x) for i in f] + [torch.cos(math.pi * i * x) for i in f]
    atoms += legendre(2 * x - 1, spec["legendre"])
    return torch.stack(atoms)


def basis_bias(spec: dict[str, Any], gains: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """bias_h(i, j) = Σ_a gains[h, a] · atom_a(x_ij): [H, Nq, Nk] in the positions' dtype."""
    atoms = basis_atoms(spec, q_pos, k_pos)
    return torch.einsum("ha,aij->hij", gains.to(atoms.dtype), atoms)


def project_qkv(
    x: Tensor, params: Params, heads: int, kv_heads: int, bias: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """q [B,N,H,d], k and v [B,N,KV,d] from the `wq`, `wk`, `wv` linears."""
    q = heads_view(linear(x, params, "wq", bias), heads)
    k = heads_view(linear(x, params, "wk", bias), kv_heads)
    v = heads_view(linear(x, params, "wv", bias), kv_heads)
    return q, k, v


def expand_kv(t: Tensor, heads: int) -> Tensor:
    """[.., N, KV, d] -> [.., N, H, d] where query head h reads key/value head ⌊h / G⌋."""
    g = heads // t.shape[-2]
    return t if g == 1 else t.repeat_interleave(g, dim=-2)


def causal_mask(nq: int, nk: int, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """True where key j may be read by query i (j ≤ i in absolute positions): [Nq, Nk]."""
    return k_pos[None, :] <= q_pos[:, None]


def attention_probs(q: Tensor, k: Tensor, mask: Tensor | None, bias: Tensor | None) -> Tensor:
    """softmax_j(q_i·k_j/√d + bias) with masked entries exactly 0: [B, H, Nq, Nk].

    q [B,Nq,H,d], k [B,Nk,H,d], both already in the compute dtype."""
    s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        s = s + bias
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1)


def attend(p: Tensor, v: Tensor) -> Tensor:
    """o_i = Σ_j p_ij v_j: p [B,H,Nq,Nk], v [B,Nk,H,d] -> [B,Nq,H,d]."""
    return torch.einsum("bhij,bjhd->bihd", p, v)


def attend_fused(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """softmax_j(q_i·k_j/√d, mask) v through torch's fused attention, without the [B, H, Nq, Nk]
    scores: q [B,Nq,H,d], k and v [B,Nk,KV,d] with KV dividing H (query head h reads key/value
    head ⌊h / G⌋, as `expand_kv`), mask [Nq, Nk] (True: may read; every row reads at least one
    key) -> [B,Nq,H,d]. The same function as `attend(attention_probs(...))` up to rounding."""
    o = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask,
        scale=1.0 / math.sqrt(q.shape[-1]),
        enable_gqa=q.shape[2] != k.shape[2],
    )
    return o.transpose(1, 2)


def ref_attention(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    n, heads, kv = x.shape[1], hp["heads"], hp["kv_heads"] or hp["heads"]
    q, k, v = (up(t) for t in project_qkv(x, params, heads, kv))
    cdt = q.dtype
    pos = torch.arange(ctx.position_offset, ctx.position_offset + n, device=x.device, dtype=cdt)
    if hp["rope"]:
        cos, sin = rope_tables(n, q.shape[-1], hp["rope_base"], ctx.position_offset, x.device, cdt)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    bias = None
    if hp.get("basis"):
        spec = basis_dict(hp["basis"])
        check_positions("attention", n, ctx.position_offset, spec["max_len"], "x")
        bias = basis_bias(spec, up(params["basis.gains"]), pos, pos)
    mask = causal_mask(n, n, pos, pos) if hp["causal"] else None
    p = attention_probs(q, expand_kv(k, heads), mask, bias)
    o = attend(p, expand_kv(v, heads))
    return (linear(down(merge(o), x), params, "wo", bias=False),)


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {"attention": ref_attention}


# ---- Cached decoding (SPEC §5.6; runtime/decode.py): keys and values of every position so far.


def kv_state(batch: int, max_len: int, kv_heads: int, d: int, device, dtype) -> dict[str, Tensor]:
    """Keys (RoPE applied at their positions) and values [B, max_len, KV, d], compute dtype."""
    shape = (batch, max_len, kv_heads, d)
    cdt = compute_dtype(dtype)
    return {
        "k": torch.zeros(shape, device=device, dtype=cdt),
        "v": torch.zeros(shape, device=device, dtype=cdt),
    }


def _attention_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    if hp.get("basis") and max_len > basis_dict(hp["basis"])["max_len"]:
        raise ValueError(
            f"max_len={max_len} exceeds the basis max_len={basis_dict(hp['basis'])['max_len']}"
        )
    kv = hp["kv_heads"] or hp["heads"]
    return kv_state(batch, max_len, kv, shapes["x"][-1] // hp["heads"], device, dtype)


def fused_step(ctx: RefContext, n: int, state: dict[str, Tensor]) -> bool:
    """Whether a cached call of `n` rows runs the fused decode step kernel: a single new row on
    the Triton path (`ctx.decode_kernels`) with a float32 cache."""
    return ctx.decode_kernels and n == 1 and state["k"].dtype == torch.float32


def attend_step(
    q: Tensor, k: Tensor, v: Tensor, hp: Hp, ctx: RefContext, state, gate: Tensor | None = None
) -> Tensor:
    """One new row through runtime/decode_attention.py's `decode_step`: q [B,1,H,d], k and v
    [B,1,KV,d] as projected (RoPE, the cache write and the attention in the kernel) ->
    o [B,1,H,d] float32. `gate` [B]: sequences whose gate is 0 do not query (output 0)."""
    from ..decode_attention import decode_step, rope_table  # Triton: only on the kernel path

    cache_k = state["k"]
    rope = None
    if hp["rope"]:
        rope = rope_table(cache_k.shape[1], q.shape[-1], hp["rope_base"], q.device)
    o = decode_step(
        q[:, 0], k[:, 0], v[:, 0], cache_k, state["v"], offset_of(ctx), rope=rope, gate=gate
    )
    return o[:, None]


def step_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext, state: dict[str, Tensor]
) -> tuple[Tensor, ...]:
    """The new rows' queries against the cached keys/values of positions 0..L+N−1. A single new
    row on the Triton path (`fused_step`) without a basis bias is one fused step
    (`attend_step`: RoPE, cache write and split-KV attention in the decode kernel of
    runtime/decode_attention.py). In a static step (`ctx.position` set) the new
    keys and values are written at the device positions and the queries read every cached row,
    the rows past the new ones masked (no host value: the step can be captured in a CUDA graph)."""
    x = inputs["x"]
    n, heads, kv = x.shape[1], hp["heads"], hp["kv_heads"] or hp["heads"]
    if fused_step(ctx, n, state) and not hp.get("basis"):
        q, k, v = project_qkv(x, params, heads, kv)
        o = attend_step(q, k, v, hp, ctx, state)
        return (linear(down(merge(o), x), params, "wo", bias=False),)
    q, k, v = (up(t) for t in project_qkv(x, params, heads, kv))
    cdt = q.dtype
    if hp["rope"]:
        cos, sin = rope_tables(n, q.shape[-1], hp["rope_base"], offset_of(ctx), x.device, cdt)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    static = ctx.position is not None
    if static:
        rows = positions(ctx, n, x.device)
        state["k"].index_copy_(1, rows, k)
        state["v"].index_copy_(1, rows, v)
        keys, values = state["k"], state["v"]
    else:
        off, end = ctx.position_offset, ctx.position_offset + n
        state["k"][:, off:end] = k
        state["v"][:, off:end] = v
        keys, values = state["k"][:, :end], state["v"][:, :end]
    if static:
        q_pos = rows.to(cdt)
        k_pos = torch.arange(keys.shape[1], device=x.device, dtype=cdt)
    else:
        q_pos = torch.arange(off, end, device=x.device, dtype=cdt)
        k_pos = torch.arange(0, end, device=x.device, dtype=cdt)
        if not hp.get("basis"):
            # A prefill (or any call of several rows): one fused attention call, no [B, H, N, L]
            # scores (tiny_gpt's B = 64 × 512-token prompt took 81 ms through them on the H100,
            # 2026-12-07, against 27 ms for the eager gpt-fast-style prefill).
            o = attend_fused(q, keys, values, causal_mask(n, end, q_pos, k_pos))
            return (linear(down(merge(o), x), params, "wo", bias=False),)
    bias = None
    if hp.get("basis"):
        spec = basis_dict(hp["basis"])
        if not static:  # a static step's cache was checked against it at new_cache
            check_positions("attention", n, ctx.position_offset, spec["max_len"], "x")
        bias = basis_bias(spec, up(params["basis.gains"]), q_pos, k_pos)
    p = attention_probs(
        q, expand_kv(keys, heads), causal_mask(n, keys.shape[1], q_pos, k_pos), bias
    )
    o = attend(p, expand_kv(values, heads))
    return (linear(down(merge(o), x), params, "wo", bias=False),)


def fill_kv(tensors: Inputs, params: Params, hp: Hp, ctx: RefContext, state) -> None:
    """A prefill's keys (RoPE applied at their positions, as the step caches them) and values
    from the prompt's projections k, v [B, N, KV, d]."""
    k, v = up(tensors["k"]), up(tensors["v"])
    off, n = ctx.position_offset, k.shape[1]
    if hp["rope"]:
        cos, sin = rope_tables(n, k.shape[-1], hp["rope_base"], off, k.device, k.dtype)
        k = apply_rope(k, cos, sin)
    state["k"][:, off : off + n] = k
    state["v"][:, off : off + n] = v


DECODE: dict[str, Decoder] = {"attention": Decoder(_attention_state, step_attention, fill_kv)}
