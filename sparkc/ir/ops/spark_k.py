"""§2 SPaR-K: fk_attention, spd_router, verifier_stack.

Consumes the schema; produces `SPECS` (this family's op specs in table order).
"""

from __future__ import annotations

import math

from .schema import (
    CAUSAL,
    Derived,
    Hyper,
    Init,
    OpContext,
    OpSpec,
    OutSpec,
    ParamSpec,
    Port,
    attention_core_flops,
    causal_hp,
    float_type,
    gemm_flops,
    head_width,
    layernorm_params,
    linear_params,
    seq_dims,
)

# --------------------------------------------------------------------------------------------
# §2 SPaR-K


def _fk_infer(ctx: OpContext):
    _b, _n, d_model = seq_dims(ctx)
    head_width(ctx, d_model)
    return (ctx.t("x"),)


def _fk_params(ctx: OpContext):
    d = ctx.last("x")
    return (
        linear_params("wq", d, d, bias=False)
        + linear_params("wk", d, d, bias=False)
        + linear_params("wv", d, d, bias=False)
        + linear_params("wo", d, d, bias=True)
    )


def _spd_infer(ctx: OpContext):
    b, n, d = seq_dims(ctx)
    if d < 4:
        ctx.fail("x", f"spd_router needs D >= 4, got D={d}", code="E0304")
    ds, dp = ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    return (float_type((b, n, d)), float_type((b, n, ds)), float_type((b, n, dp)), float_type(()))


def _spd_params(ctx: OpContext):
    d = ctx.last("x")
    ds, dp = ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    h2, h4 = d // 2, d // 4
    return (
        linear_params("gate_s1", d, h2)
        + linear_params("gate_s2", h2, ds)
        + linear_params("gate_p1", d, h2)
        + linear_params("gate_p2", h2, dp)
        + [ParamSpec("basis.weight", (ds, d), Init("normal", (1.0 / math.sqrt(d),)))]
        + linear_params("coeffs", ds, ds)
        + linear_params("proc_s1", ds, ds)
        + layernorm_params("proc_s_norm", ds)
        + linear_params("proc_s2", ds, ds)
        + linear_params("pseudo_proj", d, dp)
        + linear_params("proc_p1", dp, 2 * dp)
        + linear_params("proc_p2", 2 * dp, dp)
        + layernorm_params("proc_p_norm", dp)
        + linear_params("reconstruct", ds + dp, d)
        + linear_params("pred1", ds, h4)
        + linear_params("pred2", h4, d)
    )


def _stack_infer(ctx: OpContext):
    b, n, d = seq_dims(ctx, "h")
    if d < 4:
        ctx.fail("h", f"verifier_stack needs D >= 4, got D={d}", code="E0304")
    return (
        float_type((b, n, ctx.hp["elem"])),
        float_type((b, n, ctx.hp["signals"])),
        float_type((b, n)),
        float_type(()),
    )


def _stack_params(ctx: OpContext):
    d, e = ctx.last("h"), ctx.hp["elem"]
    return (
        linear_params("ctrl1", d, d // 2)
        + linear_params("ctrl2", d // 2, 3)
        + linear_params("enc", d, e)
        + linear_params("head1", d + e, d // 4)
        + linear_params("head2", d // 4, ctx.hp["signals"])
    )


_HALF_D = Derived("D/2", lambda ctx: ctx.last(ctx_port(ctx)) // 2)


def ctx_port(ctx: OpContext) -> str:
    return "h" if "h" in ctx.inputs else "x"


def _fk_flops(ctx) -> float:
    b, n, dm = ctx.ins["x"]
    h = ctx.hp["heads"]
    proj = gemm_flops(ctx, (dm, dm), (dm, dm), (dm, dm), (dm, dm))
    return proj + ctx.hp["hops"] * attention_core_flops(b, h, n, dm // h, bool(ctx.hp["causal"]))


def _spd_flops(ctx) -> float:
    d, ds, dp = ctx.width(), ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    h2, h4 = d // 2, d // 4
    pairs = [
        (d, h2),
        (h2, ds),
        (d, h2),
        (h2, dp),
        (d, ds),
        (ds, ds),
        (ds, ds),
        (ds, ds),
        (d, dp),
        (dp, 2 * dp),
        (2 * dp, dp),
        (ds + dp, d),
        (ds, h4),
        (h4, d),
    ]
    return gemm_flops(ctx, *pairs) + 20.0 * ctx.rows() * (ds + dp)


def _stack_flops(ctx) -> float:
    d, e, s = ctx.width("h"), ctx.hp["elem"], ctx.hp["stack"]
    rows = ctx.rows("h")
    mlps = (
        2.0
        * rows
        * (d * (d // 2) + (d // 2) * 3 + d * e + (d + e) * (d // 4) + (d // 4) * ctx.hp["signals"])
    )
    return mlps + 6.0 * rows * s * e  # the memory update and the read, per step


SPECS: tuple[OpSpec, ...] = (
    # §2 SPaR-K --------------------------------------------------------------------------------
    OpSpec(
        "fk_attention",
        "2.1",
        "Feynman–Kac multi-hop attention Σ_k (βA)^k V",
        (Port("x", "float", rank=3),),
        (
            Hyper("heads", "int", check="pos"),
            Hyper("hops", "int", 10, check="pos"),
            Hyper("beta", "float", 0.5, check="open01"),
            CAUSAL,
            Hyper("normalize", "bool", False),
        ),
        (OutSpec("y"),),
        _fk_infer,
        _fk_params,
        category="mixing",
        causal=causal_hp,
        kernel="fk_attention",
        gemm_tail=True,
        flops=_fk_flops,
        backward_factor=2.5,
    ),
    OpSpec(
        "spd_router",
        "2.2",
        "structure / pseudo-randomness decomposition",
        (Port("x", "float", rank=3),),
        (
            Hyper("struct_dim", "int", _HALF_D, check="pos"),
            Hyper("pseudo_dim", "int", _HALF_D, check="pos"),
            Hyper("gate", "choice", "sigmoid", choices=("sigmoid", "softmax")),
            Hyper("gate_noise", "bool", False),
            Hyper("sep_weight", "float", 0.1, check="nonneg"),
        ),
        (
            OutSpec("y"),
            OutSpec("x_struct"),
            OutSpec("x_pseudo"),
            OutSpec("loss", "separation loss (weighted by sep_weight)", is_loss=True),
        ),
        _spd_infer,
        _spd_params,
        category="block",
        noise=lambda hp: bool(hp["gate_noise"]),
        kernel="spd_router",
        flops=_spd_flops,
    ),
    OpSpec(
        "verifier_stack",
        "2.3",
        "differentiable stack driven by the sequence",
        (Port("h", "float", rank=3),),
        (
            Hyper("stack", "int", 16, check="pos"),
            Hyper("elem", "int", _HALF_D, check="pos"),
            Hyper("signals", "int", 1, check="pos"),
            Hyper("read", "choice", "top", choices=("top", "mean")),
            Hyper("op_noise", "bool", False),
            Hyper("penalty", "float", 1.0, check="nonneg"),
        ),
        (
            OutSpec("read"),
            OutSpec("signals"),
            OutSpec("pointer"),
            OutSpec("loss", "under/overflow penalty (weighted by penalty)", is_loss=True),
        ),
        _stack_infer,
        _stack_params,
        category="mixing",
        causal=lambda hp: True,
        noise=lambda hp: bool(hp["op_noise"]),
        kernel="verifier_stack",
        flops=_stack_flops,
    ),
)
