"""§5 SPARK procedural blocks: opcode_tape, routed_mlp, demopack_linear, lora_linear.

Consumes the schema and `act_hyper` (primitives_elementwise); produces `SPECS`.
"""

from __future__ import annotations

from ..types import DType, TensorType, fmt_shape
from .primitives_elementwise import act_hyper
from .schema import (
    DocVariant,
    Hyper,
    Init,
    OpContext,
    OpSpec,
    OutSpec,
    ParamSpec,
    Port,
    RangeRule,
    float_type,
    gemm_flops,
    linear_params,
    seq_dims,
    want_shape,
)

# --------------------------------------------------------------------------------------------
# §5 SPARK procedural


def _tape_infer(ctx: OpContext):
    o, a, h = ctx.t("ops"), ctx.t("args"), ctx.t("has_arg")
    if o.rank != 2:
        ctx.fail("ops", f"ops must be int [B, T], got {fmt_shape(o.shape)}")
    b, t = o.shape
    if a.rank != 3 or a.shape[:2] != (b, t):
        ctx.fail(
            "args",
            f"args must be {want_shape(('B', 'T', 'D'), (b, t, 'D'))}, got {fmt_shape(a.shape)}",
        )
    if h.shape != (b, t):
        ctx.fail(
            "has_arg",
            f"has_arg must be bool {want_shape(('B', 'T'), (b, t))}, got {fmt_shape(h.shape)}",
        )
    d = ctx.last("args")
    i32 = DType.I32
    return (
        float_type((b, d)),
        TensorType(i32, (b,)),
        TensorType(i32, (b,)),
        TensorType(i32, (b,)),
        float_type((b, t, d)),
        TensorType(i32, (b, t)),
    )


def _routed_validate(ctx: OpContext):
    hp = ctx.hp
    if hp["hidden"] % hp["groups"]:
        ctx.fail("groups", f"groups={hp['groups']} must divide hidden={hp['hidden']}", code="E0304")
    if hp["active"] > hp["groups"]:
        ctx.fail("active", f"active={hp['active']} exceeds groups={hp['groups']}", code="E0302")


def _routed_infer(ctx: OpContext):
    b, n, _d = seq_dims(ctx)
    if ctx.hp["route"] == "hash":
        tok = ctx.inputs.get("tokens")
        if tok is None:
            ctx.fail(
                None,
                "route=hash needs the token ids: pass tokens=<int [B, N] tensor>",
                code="E0305",
            )
        if tok.shape != (b, n):
            ctx.fail(
                "tokens",
                f"tokens must be int {want_shape(('B', 'N'), (b, n))}, got {fmt_shape(tok.shape)}",
            )
    return (ctx.t("x"),)


def _routed_params(ctx: OpContext):
    d, h = ctx.last("x"), ctx.hp["hidden"]
    ps = linear_params("fc1", d, h) + linear_params("fc2", h, d)
    if ctx.hp["route"] == "learned":
        ps += linear_params("gate", d, ctx.hp["groups"])
    return ps


def _linear_like_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank < 1:
        ctx.fail("x", "needs at least one dimension")
    ctx.last("x")
    return (float_type(t.shape[:-1] + (ctx.hp["out"],)),)


def _demopack_params(ctx: OpContext):
    i, o, hp = ctx.last("x"), ctx.hp["out"], ctx.hp
    return [
        ParamSpec(
            "codebook",
            (hp["codewords"], i),
            Init("trunc_normal", (0.02, 0.04)),
            trainable=bool(hp["learnable"]),
        ),
        ParamSpec("scale", (o,), Init("ones")),
        ParamSpec("bias", (o,), Init("zeros")),
        ParamSpec(
            "index",
            (o, hp["per_row"]),
            Init("randint", (hp["codewords"], hp["seed"])),
            trainable=False,
            dtype=DType.I64,
        ),
    ]


def _lora_infer(ctx: OpContext):
    t, m = ctx.t("x"), ctx.t("meta")
    if t.rank != 3:
        ctx.fail("x", f"x must be [B, N, in], got {fmt_shape(t.shape)}")
    if m.rank != 2 or m.shape[0] != t.shape[0]:
        ctx.fail("meta", f"meta must be [B, M] with B = {t.shape[0]}, got {fmt_shape(m.shape)}")
    ctx.last("meta")
    return _linear_like_infer(ctx)


def _lora_params(ctx: OpContext):
    i, o, m = ctx.last("x"), ctx.hp["out"], ctx.last("meta")
    r, g = ctx.hp["rank"], ctx.hp["gen_dim"]
    gen_b = [
        ParamSpec("gen_b.weight", (o * r, g), Init("zeros")),
        ParamSpec("gen_b.bias", (o * r,), Init("zeros")),
    ]
    return (
        linear_params("base", i, o)
        + linear_params("gen1", m, g)
        + linear_params("gen2", g, g)
        + linear_params("gen_a", g, r * i)
        + gen_b
    )


def _routed_flops(ctx) -> float:
    d, hid, g, a = ctx.width(), ctx.hp["hidden"], ctx.hp["groups"], ctx.hp["active"]
    gate = (d, g) if ctx.hp["route"] == "learned" else (0, 0)
    return gemm_flops(ctx, gate) + 2.0 * ctx.rows() * 2 * d * hid * a / g


def _lora_flops(ctx) -> float:
    i, o, r = ctx.width(), ctx.hp["out"], ctx.hp["rank"]
    return gemm_flops(ctx, (i, o), (i, r), (r, o))


SPECS: tuple[OpSpec, ...] = (
    # §5 SPARK procedural ------------------------------------------------------------------------
    OpSpec(
        "opcode_tape",
        "5.1",
        "batched stack machine over instruction tapes",
        (
            Port("ops", "int", rank=2),
            Port("args", "float", rank=3),
            Port("has_arg", "bool", rank=2),
        ),
        (Hyper("budget", "int", 32, check="pos"), Hyper("capacity", "int", 32, check="pos")),
        (
            OutSpec("top"),
            OutSpec("depth"),
            OutSpec("status"),
            OutSpec("steps"),
            OutSpec("checks"),
            OutSpec("trace"),
        ),
        _tape_infer,
        lambda ctx: [ParamSpec("branch", (ctx.last("args"),), Init("zeros"))],
        category="block",
        # Opcodes are -1 (end of tape) or 0..8 (PLAN .. CITE).
        runtime_rules=lambda hp: (RangeRule("ops", "opcodes (-1 ends the tape)", -1, 9),),
        kernel="reference",  # its kernels come with their own issue
        flops=lambda c: 4.0 * c.size("args"),
    ),
    OpSpec(
        "routed_mlp",
        "5.2",
        "MLP whose hidden neurons are split into groups; each token runs `active` groups",
        (Port("x", "float", rank=3), Port("tokens", "int", rank=2, optional=True)),
        (
            Hyper("hidden", "int", check="pos"),
            Hyper("groups", "int", 8, check="pos"),
            Hyper("active", "int", 2, check="pos"),
            Hyper("route", "choice", "learned", choices=("learned", "hash")),
            act_hyper(),
        ),
        (OutSpec("y"),),
        _routed_infer,
        _routed_params,
        category="block",
        validate=_routed_validate,
        runtime_rules=lambda hp: (
            (RangeRule("tokens", "token ids (hash routing)", 0, None),)
            if hp.get("route") == "hash"
            else ()
        ),
        kernel="reference",  # its kernels come with their own issue
        flops=_routed_flops,
        doc_variants=(DocVariant("route=hash", (("route", "hash"),), ("tokens",)),),
    ),
    OpSpec(
        "demopack_linear",
        "5.3",
        "linear layer with a codebook-synthesised weight",
        (Port("x", "float", min_rank=1),),
        (
            Hyper("out", "int", check="pos"),
            Hyper("codewords", "int", 256, check="pos"),
            Hyper("per_row", "int", 4, check="pos"),
            Hyper("seed", "int", 0, check="nonneg"),
            Hyper("learnable", "bool", True),
        ),
        (OutSpec("y"),),
        _linear_like_infer,
        _demopack_params,
        category="block",
        kernel="demopack_linear",
        flops=lambda c: gemm_flops(c, (c.width(), c.hp["out"])),
        doc_variants=(DocVariant("learnable=false", (("learnable", False),)),),
    ),
    OpSpec(
        "lora_linear",
        "5.4",
        "linear layer plus a per-sample low-rank delta from metadata",
        (Port("x", "float", rank=3), Port("meta", "float", rank=2)),
        (
            Hyper("out", "int", check="pos"),
            Hyper("rank", "int", 4, check="pos"),
            Hyper("gen_dim", "int", 64, check="pos"),
        ),
        (OutSpec("y"),),
        _lora_infer,
        _lora_params,
        category="block",
        kernel="reference",  # its kernels come with their own issue
        flops=_lora_flops,
    ),
)
