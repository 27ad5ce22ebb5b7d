"""§3 SplatFlow: splat_attention, trajectory.

Consumes the schema; produces `SPECS` and `TRAJECTORY_MAX_WINDOW`.
"""

from __future__ import annotations

import math

from .schema import (
    CAUSAL,
    Hyper,
    Init,
    OpContext,
    OpSpec,
    OutSpec,
    ParamSpec,
    Port,
    causal_hp,
    gemm_flops,
    head_width,
    linear_params,
    seq_dims,
)

# --------------------------------------------------------------------------------------------
# §3 SplatFlow


def _splat_infer(ctx: OpContext):
    _b, _n, d = seq_dims(ctx)
    head_width(ctx, d)
    return (ctx.t("x"),)


def _splat_params(ctx: OpContext):
    d_model = ctx.last("x")
    h, k = ctx.hp["heads"], ctx.hp["splats"]
    d = d_model // h
    return (
        linear_params("wa", d_model, d_model, bias=False)
        + linear_params("wv", d_model, d_model, bias=False)
        + linear_params("wo", d_model, d_model, bias=False)
        + [
            ParamSpec("centers", (h, k, d), Init("normal", (1.0,))),
            ParamSpec("log_scale", (h, k), Init("const", (0.5 * math.log(d),))),
            ParamSpec("log_amp", (h, k), Init("zeros")),
        ]
    )


# The stencil kernels unroll one tap per window step (kernels.py grows ~19 KB per tap).
TRAJECTORY_MAX_WINDOW = 64


def _traj_validate(ctx: OpContext):
    if ctx.hp["window"] < 2:
        ctx.fail(
            "window",
            f"'window' must be >= 2, got {ctx.hp['window']} (in trajectory)",
            help="the trajectory averages at least two steps: window=2 or more",
            code="E0302",
        )
    if ctx.hp["window"] > TRAJECTORY_MAX_WINDOW:
        ctx.fail(
            "window",
            f"'window' must be <= {TRAJECTORY_MAX_WINDOW}, got {ctx.hp['window']} (in trajectory)",
            help=f"the kernels unroll one tap per step of the window: window={TRAJECTORY_MAX_WINDOW} "
            "or less",
            code="E0302",
        )


def _splat_flops(ctx) -> float:
    dm, k = ctx.width(), ctx.hp["splats"]
    rows = ctx.rows()
    return (
        gemm_flops(ctx, (dm, dm), (dm, dm), (dm, dm))
        + 2.0 * rows * k * dm * 3
        + 4.0 * rows * k * dm
    )


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_SPLAT = """\
Tokens communicate only through `K = splats` Gaussian splats per head: O(N·K) work instead of
O(N²).

- Parameters: `wa = Linear(D→D, bias=False)` (affinity features), `wv = Linear(D→D,
  bias=False)`, `wo = Linear(D→D, bias=False)`, `centers [H, K, d]` N(0, 1), `log_scale [H, K]`
  initialised to `½ ln d`, `log_amp [H, K]` zeros.
- Per head: `u_t = wa(x)_t` (the head's slice), `σ_k = exp(log_scale_k)`,
  `z_tk = −‖u_t − c_k‖² / (2σ_k²) + log_amp_k`, `φ_t = softmax_k(z_t)`: the normalised Gaussian
  responsibility, computed stably so it never underflows to all zeros. `‖u − c‖²` is computed
  as `‖u‖² − 2u·c + ‖c‖²`, never materialising `[B, N, K, d]`.
- With `v = wv(x)` per head: causal `num_t = Σ_{s≤t} (φ_t·φ_s) v_s`, `den_t = Σ_{s≤t} φ_t·φ_s`
  (non-causal: the same sums over all `s`); `o_t = num_t / den_t` when `normalize=true`, else
  `o_t = num_t`; `y = wo(merge_heads(o))`.
- Equivalent state form: `S_t = Σ_{s≤t} φ_s v_sᵀ ∈ R^{K×d}`, `z_t = Σ_{s≤t} φ_s`,
  `o_t = φ_tᵀ S_t / φ_tᵀ z_t`; a kernel processes the sequence in chunks like chunked linear
  attention, and decoding one token costs O(K·d).
- Departures from the SplatFlow research code: every version mixed over all positions
  (including future ones), kept the splats outside `state_dict`, moved them by heuristics
  without gradients, and the latest added a dense O(N²) path. Here the splats are parameters
  trained by backpropagation; `causal=false` gives the original global mixing."""

_TRAJECTORY = """\
The causal inter-layer trajectory signal. Parameter: `strength`, a 0-d tensor initialised to
0.2. Requires `2 ≤ window ≤ 64` (the kernels unroll one tap per step of the window).

- Normalised steps `δ_j = (x_{j+1} − x_j) / max(‖x_{j+1} − x_j‖, 1e-8)` for `j = 0..N−2` (the
  norm over the features).
- Weights `ω_i = exp(−1 + i/(window − 1))`, `i = 0..window−1`, from oldest to newest.
- `T_0 = 0`; for `p ≥ 1`, `T_p = Σ_j ω_{j−p+window} δ_j / Σ_j ω_{j−p+window}` over
  `j = max(0, p − window)..p − 1`.
- `y = x + strength · T`. One stencil kernel.
- Departures from the SplatFlow research code: a Python loop over positions, and a cache that
  reused trajectories of unrelated earlier batches (not part of this op)."""


SPECS: tuple[OpSpec, ...] = (
    # §3 SplatFlow -------------------------------------------------------------------------------
    OpSpec(
        "splat_attention",
        "3.1",
        "token mixing through K Gaussian splats, O(N·K)",
        (Port("x", "float", rank=3),),
        (
            Hyper("splats", "int", 16, check="pos"),
            Hyper("heads", "int", 1, check="pos"),
            CAUSAL,
            Hyper("normalize", "bool", True),
        ),
        (OutSpec("y"),),
        _splat_infer,
        _splat_params,
        category="mixing",
        causal=causal_hp,
        kernel="splat_attention",
        gemm_tail=True,
        flops=_splat_flops,
        semantics=_SPLAT,
    ),
    OpSpec(
        "trajectory",
        "3.2",
        "causal trajectory signal x + strength·T",
        (Port("x", "float", rank=3),),
        (Hyper("window", "int", 6, check="pos"),),
        (OutSpec("y"),),
        lambda ctx: (seq_dims(ctx), ctx.t("x"))[1:],
        lambda ctx: [ParamSpec("strength", (), Init("const", (0.2,)))],
        category="mixing",
        causal=lambda hp: True,
        validate=_traj_validate,
        kernel="trajectory",
        flops=lambda c: 12.0 * c.out_size() * c.hp["window"],
        semantics=_TRAJECTORY,
    ),
)
