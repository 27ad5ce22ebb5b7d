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
        kernel="reference",  # its kernels come with their own issue
        flops=_splat_flops,
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
    ),
)
