"""One cached decoding step of `splat_attention` for one new row per sequence, in one launch.

Consumes the new row's projections u, v [B, H, d] (float32: `wa` and `wv` of the row, per head),
the splat parameters centers [H, K, d], log_scale and log_amp [H, K] (any float dtype, read as
float32), the op's decoding state S [B, H, K, d] and z [B, H, K] (float32, `_splat_state` of
runtime/reference/splat.py) and the `normalize` flag. Produces o [B, H, d] (float32) and updates
the state in place, as the reference step rule does for one row:

    φ = softmax_k(−‖u − c_k‖² / (2 σ_k²) + log_amp_k)          (‖u‖² − 2 u·c_k + ‖c_k‖², as the rule)
    o = (φ·φ) v + Σ_k φ_k S_k         divided by (φ·φ + φ·z) when `normalize`
    S_k += φ_k v,  z += φ                                         (after o reads the old state)

One program per (sequence, head) walks d in chunks twice (distances, then output and state), so
registers hold [K, BLOCK_D] tiles whatever d is. The rule's dozen PyTorch ops per layer become
one launch, which is what a CUDA-graph decode step (runtime/decode_graph.py) replays; the
projections around it stay GEMVs. The step reads no host value, so it can be captured.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .tiles import next_pow2


@triton.jit
def splat_step_kernel(
    U, V, C, LS, LA, S, Z, O, H, K, D,
    NORMALIZE: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)  # b · H + h
    h = pid % H
    rk = tl.arange(0, BLOCK_K)
    rd = tl.arange(0, BLOCK_D)
    mk = rk < K
    u2 = tl.zeros((BLOCK_D,), tl.float32)
    uc = tl.zeros((BLOCK_K,), tl.float32)
    c2 = tl.zeros((BLOCK_K,), tl.float32)
    for d0 in range(0, D, BLOCK_D):
        md = d0 + rd < D
        u = tl.load(U + pid * D + d0 + rd, mask=md, other=0.0)
        c = tl.load(
            C + h * K * D + rk[:, None] * D + d0 + rd[None, :],
            mask=mk[:, None] & md[None, :],
            other=0.0,
        ).to(tl.float32)
        u2 += u * u
        uc += tl.sum(c * u[None, :], 1)
        c2 += tl.sum(c * c, 1)
    dist2 = tl.sum(u2, 0) - 2.0 * uc + c2
    log_scale = tl.load(LS + h * K + rk, mask=mk, other=0.0).to(tl.float32)
    log_amp = tl.load(LA + h * K + rk, mask=mk, other=0.0).to(tl.float32)
    logit = -dist2 * (0.5 * tl.exp(-2.0 * log_scale)) + log_amp
    logit = tl.where(mk, logit, float("-inf"))
    e = tl.exp(logit - tl.max(logit, 0))
    e = tl.where(mk, e, 0.0)
    phi = e / tl.sum(e, 0)
    self_term = tl.sum(phi * phi, 0)
    z_old = tl.load(Z + pid * K + rk, mask=mk, other=0.0)
    den = self_term + tl.sum(phi * z_old, 0)
    tl.store(Z + pid * K + rk, z_old + phi, mask=mk)
    for d0 in range(0, D, BLOCK_D):
        md = d0 + rd < D
        m2 = mk[:, None] & md[None, :]
        v = tl.load(V + pid * D + d0 + rd, mask=md, other=0.0)
        s_ptrs = S + pid * K * D + rk[:, None] * D + d0 + rd[None, :]
        s = tl.load(s_ptrs, mask=m2, other=0.0)
        o = self_term * v + tl.sum(phi[:, None] * s, 0)
        if NORMALIZE:
            o = o / den
        tl.store(s_ptrs, s + phi[:, None] * v[None, :], mask=m2)
        tl.store(O + pid * D + d0 + rd, o, mask=md)


def splat_step(
    u: torch.Tensor,
    v: torch.Tensor,
    centers: torch.Tensor,
    log_scale: torch.Tensor,
    log_amp: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    normalize: bool,
) -> torch.Tensor:
    """o [B, H, d] for the new row (module docs); `s` and `z` are updated in place."""
    b, heads, d = u.shape
    k = centers.shape[1]
    assert s.shape == (b, heads, k, d) and z.shape == (b, heads, k)
    assert s.dtype == z.dtype == torch.float32 and s.is_contiguous() and z.is_contiguous()
    o = torch.empty((b, heads, d), device=u.device, dtype=torch.float32)
    if b * heads == 0:
        return o
    block_k = max(16, next_pow2(k))
    block_d = max(16, min(next_pow2(d), 4096 // block_k))  # a [K, BLOCK_D] tile ≤ 4096
    splat_step_kernel[(b * heads,)](
        u.float().contiguous(),
        v.float().contiguous(),
        centers.contiguous(),
        log_scale.contiguous(),
        log_amp.contiguous(),
        s,
        z,
        o,
        heads,
        k,
        d,
        NORMALIZE=normalize,
        BLOCK_K=block_k,
        BLOCK_D=block_d,
        num_warps=4,
    )
    return o
