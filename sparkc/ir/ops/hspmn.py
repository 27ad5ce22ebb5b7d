"""§4 HSPMN: token_router, sqdk_attention.

Consumes the schema; produces `SPECS`.
"""

from __future__ import annotations

from ..types import DType, TensorType, fmt_shape
from .schema import (
    Derived,
    Hyper,
    OpContext,
    OpSpec,
    OutSpec,
    Port,
    attention_core_flops,
    check_rope_even,
    float_type,
    gemm_flops,
    gqa_width,
    linear_params,
    seq_dims,
    want_shape,
)

# --------------------------------------------------------------------------------------------
# §4 HSPMN


def _router_infer(ctx: OpContext):
    b, n, _d = seq_dims(ctx)
    return (TensorType(DType.BOOL, (b, n)), float_type((b, n)), float_type(()))


def _sqdk_infer(ctx: OpContext):
    b, n, d_model = seq_dims(ctx)
    g = ctx.t("gate")
    if g.shape != (b, n):
        ctx.fail(
            "gate",
            f"gate must be {want_shape(('B', 'N'), (b, n))} like x, got {fmt_shape(g.shape)}",
            help="pass token_router(x).gate",
        )
    d, _ = gqa_width(ctx, d_model)
    check_rope_even(ctx, d)
    return (ctx.t("x"),)


def _sqdk_params(ctx: OpContext):
    d_model = ctx.last("x")
    d = d_model // ctx.hp["heads"]
    kv = ctx.hp.get("kv_heads") or ctx.hp["heads"]
    return (
        linear_params("wq", d_model, d_model, bias=False)
        + linear_params("wk", d_model, kv * d, bias=False)
        + linear_params("wv", d_model, kv * d, bias=False)
        + linear_params("wo", d_model, d_model, bias=False)
    )


def _sqdk_flops(ctx) -> float:
    # Upper bound: every token routed (the kernel's work scales with the routed count).
    b, n, dm = ctx.ins["x"]
    h, kv = ctx.hp["heads"], ctx.hp["kv_heads"]
    d = dm // h
    return gemm_flops(ctx, (dm, dm), (dm, kv * d), (dm, kv * d), (dm, dm)) + attention_core_flops(
        b, h, n, d, True
    )


SPECS: tuple[OpSpec, ...] = (
    # §4 HSPMN -------------------------------------------------------------------------------------
    OpSpec(
        "token_router",
        "4.1",
        "decides which tokens take the contextual path",
        (Port("x", "float", rank=3),),
        (
            Hyper("sparsity", "float", 0.2, check="prob"),
            Hyper("mode", "choice", "threshold", choices=("threshold", "topk")),
            Hyper("noise", "bool", True),
            Hyper("aux_weight", "float", 0.1, check="nonneg"),
        ),
        (
            OutSpec("mask"),
            OutSpec("gate"),
            OutSpec("loss", "sparsity regulariser (weighted by aux_weight)", is_loss=True),
        ),
        _router_infer,
        lambda ctx: linear_params("w", ctx.last("x"), 1),
        category="block",
        causal=lambda hp: hp["mode"] == "threshold",
        decodable=lambda hp: hp["mode"] == "threshold",
        noise=lambda hp: bool(hp["noise"]),
        kernel="token_router",
        flops=lambda c: gemm_flops(c, (c.width(), 1)),
    ),
    OpSpec(
        "sqdk_attention",
        "4.2",
        "sparse-query dense-key attention (always causal)",
        (Port("x", "float", rank=3), Port("gate", "float", rank=2)),
        (
            Hyper("heads", "int", check="pos"),
            Hyper("kv_heads", "int", Derived("heads", lambda ctx: ctx.hp["heads"]), check="pos"),
            Hyper("rope", "bool", True),
            Hyper("rope_base", "float", 10000.0, check="pos"),
        ),
        (OutSpec("y"),),
        _sqdk_infer,
        _sqdk_params,
        category="mixing",
        causal=lambda hp: True,
        kernel="reference",  # its kernels come with their own issue
        flops=_sqdk_flops,
        backward_factor=2.5,
    ),
)
