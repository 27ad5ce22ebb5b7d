"""One cached decoding step of `splat_attention` for one new row per sequence, in one launch.

Consumes the new row's projections u, v [B, H, d] (float32: `wa` and `wv` of the row, per head),
the splat parameters centers [H, K, d], log_scale and log_amp [H, K] (any float dtype, read as
float32), the op's decoding state S [B, H, K, d] and z [B, H, K] (float32, `_splat_state` of
runtime/reference/splat.py) and the `normalize` flag. Produces o [B, H, d] (float32) and updates
the state in place, as the reference step rule does for one row:

    φ = softmax_k(−‖u − c_k‖² / (2 σ_k²) + log_amp_k)          (‖u‖² − 2 u·c_k + ‖c_k‖², as the rule)
    o = (φ·φ) v + Σ_k φ_k S_k         divided by (φ·φ + φ·z) when `normalize`
    S_k += φ_k v,  z += φ                                         (after o reads the old state)

`splat_step`: one program per (sequence, head) walks d in chunks twice (distances, then output
and state), so registers hold [K, BLOCK_D] tiles whatever d is. The rule's dozen PyTorch ops per
layer become one launch, which is what a CUDA-graph decode step (runtime/decode_graph.py)
replays; the projections before it are GEMVs.

`splat_proj_step`: the same step from the op's input rows x [B, D] and the `wa`, `wv` weights,
the projections in the same launch: one program per (head, block of up to 64 sequences)
computes the block's u and v with tensor-core products over D (each head's weight rows read
once per block), rounds them to x's dtype as the reference's linear does, then runs the step
for the block, the state walked one splat at a time. Needs d ≤ 128 and K ≤ 64 (a head's rows in
registers).

`splat_decode_step`: what the step rule calls; it picks one of the two per shape by timing
(module docs of the function). Nothing here reads a host value, so the steps can be captured.
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


def _check_state(s: torch.Tensor, z: torch.Tensor, shape: tuple[int, int, int, int]) -> None:
    """S [B, H, K, d] and z [B, H, K]: float32, contiguous (updated in place by the kernels)."""
    assert s.shape == shape and z.shape == shape[:3]
    assert s.dtype == z.dtype == torch.float32 and s.is_contiguous() and z.is_contiguous()


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
    _check_state(s, z, (b, heads, k, d))
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


# ---- The step with its input projections: u = x Waᵀ and v = x Wvᵀ computed in the same launch.


@triton.jit
def splat_proj_step_kernel(
    X, WA, WV, C, LS, LA, S, Z, O, B, H, K, D, DM,
    NORMALIZE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    # One program per (head, block of BLOCK_B sequences): the head's rows of `wa` and `wv` are
    # read once per block (tensor-core products over d_model in BLOCK_M chunks), then the step
    # of `splat_step_kernel` for the block's sequences, the state walked one splat at a time.
    h = tl.program_id(0)
    rb = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    rd = tl.arange(0, BLOCK_D)
    rk = tl.arange(0, BLOCK_K)
    mb, md, mk = rb < B, rd < D, rk < K
    u = tl.zeros((BLOCK_B, BLOCK_D), tl.float32)
    v = tl.zeros((BLOCK_B, BLOCK_D), tl.float32)
    wrow = (h * D + rd).to(tl.int64) * DM
    for m0 in range(0, DM, BLOCK_M):
        rm = m0 + tl.arange(0, BLOCK_M)
        mm = rm < DM
        x = tl.load(X + rb[:, None].to(tl.int64) * DM + rm[None, :], mask=mb[:, None] & mm[None, :])
        w_off = wrow[None, :] + rm[:, None]  # [BLOCK_M, BLOCK_D]: the rows of head h, transposed
        wmask = mm[:, None] & md[None, :]
        u = tl.dot(x, tl.load(WA + w_off, mask=wmask, other=0.0), u, input_precision="ieee")
        v = tl.dot(x, tl.load(WV + w_off, mask=wmask, other=0.0), v, input_precision="ieee")
    # The projections rounded to the activations' dtype, as the reference's linear returns them.
    u = u.to(X.dtype.element_ty).to(tl.float32)
    v = v.to(X.dtype.element_ty).to(tl.float32)
    c = tl.load(
        C + h * K * D + rk[:, None] * D + rd[None, :], mask=mk[:, None] & md[None, :], other=0.0
    ).to(tl.float32)
    uc = tl.dot(u, tl.trans(c), input_precision="ieee")  # [BLOCK_B, BLOCK_K]
    dist2 = tl.sum(u * u, 1)[:, None] - 2.0 * uc + tl.sum(c * c, 1)[None, :]
    log_scale = tl.load(LS + h * K + rk, mask=mk, other=0.0).to(tl.float32)
    log_amp = tl.load(LA + h * K + rk, mask=mk, other=0.0).to(tl.float32)
    logit = -dist2 * (0.5 * tl.exp(-2.0 * log_scale))[None, :] + log_amp[None, :]
    logit = tl.where(mk[None, :], logit, float("-inf"))
    e = tl.exp(logit - tl.max(logit, 1)[:, None])
    e = tl.where(mk[None, :], e, 0.0)
    phi = e / tl.sum(e, 1)[:, None]  # [BLOCK_B, BLOCK_K]
    self_term = tl.sum(phi * phi, 1)
    seq = rb.to(tl.int64) * H + h  # the (sequence, head) rows of the state
    m2 = mb[:, None] & mk[None, :]
    z_old = tl.load(Z + seq[:, None] * K + rk[None, :], mask=m2, other=0.0)
    den = self_term + tl.sum(phi * z_old, 1)
    tl.store(Z + seq[:, None] * K + rk[None, :], z_old + phi, mask=m2)
    acc = tl.zeros((BLOCK_B, BLOCK_D), tl.float32)
    md2 = mb[:, None] & md[None, :]
    for k in range(K):
        pk = tl.sum(tl.where(rk[None, :] == k, phi, 0.0), 1)  # column k of phi
        s_ptrs = S + (seq[:, None] * K + k) * D + rd[None, :]
        s = tl.load(s_ptrs, mask=md2, other=0.0)
        acc += pk[:, None] * s
        tl.store(s_ptrs, s + pk[:, None] * v, mask=md2)
    o = self_term[:, None] * v + acc
    if NORMALIZE:
        o = o / den[:, None]
    tl.store(O + seq[:, None] * D + rd[None, :], o, mask=md2)


# The fused step's limits: a head's row tiles live in registers ([BLOCK_B, d] and [K, d]).
PROJ_MAX_D = 128
PROJ_MAX_K = 64


def splat_proj_step(
    x: torch.Tensor, wa: torch.Tensor, wv: torch.Tensor, splats: tuple, s, z, normalize: bool
) -> torch.Tensor:
    """o [B, H, d] for the new rows x [B, D] (the op's input, any float dtype), `wa`, `wv`
    [H·d, D] applied in the same launch, `splats` = (centers, log_scale, log_amp); `s` and `z`
    updated in place (module docs). Needs d ≤ PROJ_MAX_D and K ≤ PROJ_MAX_K."""
    centers, log_scale, log_amp = splats
    b, dm = x.shape
    heads, k, d = centers.shape
    assert d <= PROJ_MAX_D and k <= PROJ_MAX_K and wa.shape == wv.shape == (heads * d, dm)
    _check_state(s, z, (b, heads, k, d))
    o = torch.empty((b, heads, d), device=x.device, dtype=torch.float32)
    if b * heads == 0:
        return o
    block_b = min(64, max(16, next_pow2(b)))
    splat_proj_step_kernel[(heads, -(-b // block_b))](
        x.contiguous(),
        wa.to(x.dtype).contiguous(),
        wv.to(x.dtype).contiguous(),
        centers.contiguous(),
        log_scale.contiguous(),
        log_amp.contiguous(),
        s,
        z,
        o,
        b,
        heads,
        k,
        d,
        dm,
        NORMALIZE=normalize,
        BLOCK_B=block_b,
        BLOCK_K=max(16, next_pow2(k)),
        BLOCK_D=max(16, next_pow2(d)),
        BLOCK_M=64,
        num_warps=4,
    )
    return o


# At most this many sequences: the fused step is the first candidate (one block of sequences
# reads each head's projection rows once); more: the GEMVs and `splat_step` first.
PROJ_FIRST_MAX_B = 16


def splat_decode_step(
    x: torch.Tensor, params: dict, heads: int, s: torch.Tensor, z: torch.Tensor, normalize: bool
) -> torch.Tensor:
    """One decoding step of `splat_attention` for the new rows x [B, D]: o [B, H, d] float32,
    `s` and `z` updated in place. Two ways, chosen per shape by timing (runtime/autotune.py
    `pick`; untimed off a GPU or with tuning off: the first candidate): "fused"
    (`splat_proj_step`: the projections in the step's launch) and "split" (torch GEMVs for
    `wa` and `wv`, then `splat_step`). The GPU time alone decides (a decoding step is meant to
    be replayed from a CUDA graph, where the launches' host time is not spent); the timing
    runs on copies of the state."""
    from . import autotune  # torch-side tuning; imported here to keep this module's import light

    wa, wv = params["wa.weight"], params["wv.weight"]
    args = (params["centers"], params["log_scale"], params["log_amp"])
    k, d = args[0].shape[1], args[0].shape[2]
    b = x.shape[0]

    def run(way: str, s_: torch.Tensor, z_: torch.Tensor) -> torch.Tensor:
        if way == "fused":
            return splat_proj_step(x, wa, wv, args, s_, z_, normalize)
        u = torch.nn.functional.linear(x, wa).view(b, heads, d)
        v = torch.nn.functional.linear(x, wv).view(b, heads, d)
        return splat_step(u, v, *args, s_, z_, normalize)

    if d > PROJ_MAX_D or k > PROJ_MAX_K:
        return run("split", s, z)
    ways = ["fused", "split"] if b <= PROJ_FIRST_MAX_B else ["split", "fused"]
    scratch: list[torch.Tensor] = []

    def bench(way: str) -> float:
        import triton.testing

        if not scratch:
            scratch.extend((s.clone(), z.clone()))
        if autotune.compiling_only():  # the tuner's compile pass: compile, time nothing
            run(way, *scratch)
            return 0.0
        return float(triton.testing.do_bench(lambda: run(way, *scratch), return_mode="median"))

    shape_class = [b, heads, k, d, x.shape[1], str(x.dtype), bool(normalize)]
    way = autotune.pick(
        "splat_decode_step", shape_class, ways, bench, source=splat_proj_step_kernel, like=x
    )
    return run(way, s, z)
