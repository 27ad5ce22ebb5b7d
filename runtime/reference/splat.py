"""Reference rules of SPEC §3 (SplatFlow): `splat_attention` and `trajectory`.

- splat_attention: x [B,N,D] -> y. Responsibilities φ [B,H,N,K] from ‖u‖² − 2u·c + ‖c‖² (never
  [B,N,K,d]); mixing in the chunked state form (`splat_chunked.splat_mix`: O(N·(C + K·d/C))
  memory per head, never [B,H,N,N]), which the tests compare with the quadratic form. All of
  it in the compute dtype.
- trajectory: x [B,N,D] -> x + strength·T, the weighted mean of the last `window` unit steps,
  computed as a `window`-tap stencil over the padded step sequence.
- DECODE: cached decoding (splat_attention: the state (S, z); trajectory: the last `window`
  inputs).
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
    compute_dtype,
    down,
    heads_view,
    linear,
    merge,
    up,
    window_fill,
    window_state,
    window_step,
)
from .splat_chunked import splat_mix

Inputs = dict[str, Tensor]
Hp = dict[str, Any]


def splat_responsibilities(
    u: Tensor, centers: Tensor, log_scale: Tensor, log_amp: Tensor
) -> Tensor:
    """φ = softmax_k(−‖u − c_k‖²/(2σ_k²) + log_amp_k): u [B,N,H,d] -> [B,H,N,K]."""
    c = centers.to(u.dtype)
    u2 = u.pow(2).sum(-1).transpose(1, 2)[..., None]  # [B,H,N,1]
    uc = torch.einsum("bnhd,hkd->bhnk", u, c)
    c2 = c.pow(2).sum(-1)[None, :, None, :]  # [1,H,1,K]
    dist2 = u2 - 2 * uc + c2
    inv2var = 0.5 * torch.exp(-2 * log_scale.to(u.dtype))[None, :, None, :]
    z = -dist2 * inv2var + log_amp.to(u.dtype)[None, :, None, :]
    return torch.softmax(z, dim=-1)


def ref_splat_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext
) -> tuple[Tensor, ...]:
    x = inputs["x"]
    heads = hp["heads"]
    u = up(heads_view(linear(x, params, "wa", bias=False), heads))
    v = up(heads_view(linear(x, params, "wv", bias=False), heads))
    phi = splat_responsibilities(u, params["centers"], params["log_scale"], params["log_amp"])
    o = splat_mix(phi, v.transpose(1, 2), bool(hp["causal"]), bool(hp["normalize"]))
    o = o.transpose(1, 2)  # [B,H,N,d] -> [B,N,H,d]
    return (linear(down(merge(o), x), params, "wo", bias=False),)


def trajectory_signal(x: Tensor, window: int, first: int | Tensor = 0) -> Tensor:
    """T [B,N,D] of §3.2 in the dtype of x (T_0 = 0). `first`: the absolute position of row 0
    (a static decode step passes a device tensor, negative when leading rows are padding)."""
    b, n, dm = x.shape
    diff = x[:, 1:] - x[:, :-1]  # δ_j before normalisation, j = 0..N−2
    norm = torch.linalg.vector_norm(diff, dim=-1, keepdim=True).clamp_min(1e-8)
    delta = diff / norm
    # Position p reads δ_{p−window+i} with weight ω_i for i = 0..window−1 (valid when ≥ 0);
    # left-padding δ with `window` zero rows puts δ_{p−window+i} at padded index p + i.
    padded = torch.cat((delta.new_zeros(b, window, dm), delta), dim=1)
    p = first + torch.arange(n, device=x.device)
    num = x.new_zeros(b, n, dm)
    den = x.new_zeros(n)
    for i in range(window):
        w_i = math.exp(-1 + i / (window - 1))
        valid = (p - window + i >= 0).to(x.dtype)  # j ≤ p − 1 holds for every i < window
        num = num + (w_i * valid)[None, :, None] * padded[:, i : i + n]
        den = den + w_i * valid
    return num / den.clamp_min(1e-30)[None, :, None]


def ref_trajectory(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    first = ctx.position if ctx.position is not None else 0
    t = trajectory_signal(up(x), int(hp["window"]), first)
    return (down(up(x) + up(params["strength"]) * t, x),)


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "splat_attention": ref_splat_attention,
    "trajectory": ref_trajectory,
}


# ---- Cached decoding (SPEC §5.6; runtime/decode.py).


def _splat_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    """S = Σ_s φ_s v_sᵀ [B, H, K, d] and z = Σ_s φ_s [B, H, K] of the positions so far."""
    heads, k, cdt = hp["heads"], hp["splats"], compute_dtype(dtype)
    d = shapes["x"][-1] // heads
    return {
        "S": torch.zeros(batch, heads, k, d, device=device, dtype=cdt),
        "z": torch.zeros(batch, heads, k, device=device, dtype=cdt),
    }


def step_splat_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext, state: dict[str, Tensor]
) -> tuple[Tensor, ...]:
    """num = (Φ Φᵀ ⊙ tril) V + Φ S, den = (Φ Φᵀ ⊙ tril) 1 + Φ z over the new rows (in the
    chunked form of `splat_mix`, started from the cached S, z), then S += Φᵀ V, z += Φᵀ 1:
    O(K·d) per new token whatever the context length."""
    x = inputs["x"]
    heads = hp["heads"]
    n = x.shape[1]
    if ctx.decode_kernels and n == 1 and state["S"].dtype == torch.float32:
        # One row on the Triton path: the projections (or GEMVs before it), the
        # responsibilities, the output and the state update in one launch
        # (runtime/decode_splat.py), the same arithmetic as below.
        from ..decode_splat import splat_decode_step  # Triton: only on the kernel path

        o = splat_decode_step(x[:, 0], params, heads, state["S"], state["z"], bool(hp["normalize"]))
        return (linear(down(merge(o[:, None]), x), params, "wo", bias=False),)
    u = up(heads_view(linear(x, params, "wa", bias=False), heads))
    v = up(heads_view(linear(x, params, "wv", bias=False), heads)).transpose(1, 2)
    phi = splat_responsibilities(u, params["centers"], params["log_scale"], params["log_amp"])
    # The chunked form of the full forward, started from the cached state: a prompt of n rows
    # costs O(n·(C + K·d)), never an [n, n] matrix.
    s_prev, z_prev = state["S"], state["z"]
    o = splat_mix(phi, v, True, bool(hp["normalize"]), start=(s_prev, z_prev))
    s_prev.add_(torch.einsum("bhtk,bhtd->bhkd", phi, v))
    z_prev.add_(phi.sum(2))
    return (linear(down(merge(o.transpose(1, 2)), x), params, "wo", bias=False),)


def _trajectory_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    """The last `window` inputs (position p reads x_{p−window} .. x_p)."""
    return window_state(batch, shapes["x"][-1], int(hp["window"]), device, dtype)


def step_trajectory(inputs, params, hp, ctx, state) -> tuple[Tensor, ...]:
    return window_step(ref_trajectory, "x", inputs, params, hp, ctx, state)


def fill_splat_attention(tensors, params, hp, ctx, state) -> None:
    """A prefill's S = Φᵀ V and z = Φᵀ 1 from the prompt's projections u, v [B, N, H, d]."""
    u, v = up(tensors["u"]), up(tensors["v"]).transpose(1, 2)
    phi = splat_responsibilities(u, params["centers"], params["log_scale"], params["log_amp"])
    state["S"].add_(torch.einsum("bhtk,bhtd->bhkd", phi, v))
    state["z"].add_(phi.sum(2))


DECODE: dict[str, Decoder] = {
    "splat_attention": Decoder(_splat_state, step_splat_attention, fill_splat_attention),
    "trajectory": Decoder(_trajectory_state, step_trajectory, window_fill),
}
