"""The elementwise ops of §1 primitives: the activations (relu, gelu, silu, sigmoid, tanh) and
the arithmetic spelt with operators (neg, add, sub, mul, div).

Part of the `primitives` family (its module includes these specs in its table); kept apart for
size. Consumes the schema; produces `ACTIVATIONS` and `ARITHMETIC` (specs in table order),
`ACTS` (the activation names: the one list an `act=` hyperparameter, a GEMM epilogue and the
tests read) and `act_hyper`. Each spec carries its pointwise traits: Triton expression and
gradient, scalar fold rule, algebraic identities, epilogue role.
"""

from __future__ import annotations

import math
import operator

from ..types import DType, TensorType, broadcast, fmt_shape, promote
from .schema import (
    Hyper,
    OpContext,
    OpSpec,
    OutSpec,
    PairRule,
    Port,
    elementwise_flops,
    same_as_x,
)


def _binary_infer(ctx: OpContext):
    a, b = ctx.t("a"), ctx.t("b")
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        ctx.fail(
            None,
            f"shapes {fmt_shape(a.shape)} and {fmt_shape(b.shape)} do not broadcast",
            help="elementwise operands must have equal dimensions, or 1, from the right",
        )
    if ctx.op == "div":  # true division, as in PyTorch: ints and bools give floats
        return (TensorType(DType.FLOAT, shape),)
    if ctx.op == "sub":
        for port, t in (("a", a), ("b", b)):
            if t.dtype is DType.BOOL:
                _no_bool_minus(ctx, port, t, "subtract")
    return (TensorType(promote(a, b), shape),)


def _neg_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.dtype is DType.BOOL:
        _no_bool_minus(ctx, "x", t, "negate")
    return (t,)


def _no_bool_minus(ctx: OpContext, port: str, t: TensorType, verb: str) -> None:
    """`-` on a bool tensor is refused, as in PyTorch (where it raises at run time)."""
    ctx.fail(
        port,
        f"cannot {verb} a bool tensor ({t})",
        help="'-' is not defined on bools (as in PyTorch); turn the mask into numbers first: "
        "m * 1 gives integers, m * 1.0 floats",
        code="E0232",
    )


def _unary(
    name: str, summary: str, *, semantics: str, fold, flops: float, triton: str, grad: str
) -> OpSpec:
    """An activation: elementwise on a float tensor, a step of a GEMM epilogue."""
    return OpSpec(
        name,
        "1",
        summary,
        (Port("x", "float"),),
        (),
        (OutSpec("y"),),
        same_as_x,
        category="elementwise",
        kernel="pointwise",
        epilogue="act",
        semantics=semantics,
        flops=elementwise_flops(flops),
        fold=fold,
        triton=triton,
        triton_grad=(("x", grad),),
    )


def _binary(
    name: str, symbol: str, *, fold, triton: str, grad: tuple[str, str], **traits
) -> OpSpec:
    """An infix arithmetic op (`a + b`, ...) with broadcasting."""
    return OpSpec(
        name,
        "1",
        f"elementwise a {symbol} b with broadcasting",
        (Port("a", "any"), Port("b", "any")),
        (),
        (OutSpec("y"),),
        _binary_infer,
        category="arith",
        callable=False,
        kernel="pointwise",
        flops=elementwise_flops(1),
        fold=fold,
        triton=triton,
        triton_grad=(("a", grad[0]), ("b", grad[1])),
        **traits,
    )


# Scalar rules for constant folding (`fold_constant` in sparkc/passes/canonicalize.py says when a result is kept).


def _fold_div(a, b):
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a // b if a % b == 0 else None
    return a / b


def _fold_sigmoid(x: float) -> float:
    # The two-branch form never overflows in exp.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_BINARY = """\
Elementwise with broadcasting from the right (as in NumPy and PyTorch: sizes must be equal or
1). Either operand may be a scalar constant of the program; constant arithmetic is folded at
compile time in float64. Written with the operators `+ - * /`. Division follows IEEE rules
(`x / 0` is ±inf or nan), as in PyTorch."""


# The activations (an mlp's or routed_mlp's `act=`, a GEMM epilogue step), in table order.
# gelu is the erf form. Triton: tanh goes through the sigmoid (libdevice's tanh does not run
# under the interpreter).
_ERF_GELU = "0.5 * {x} * (1.0 + tl.math.erf({x} * 0.7071067811865476))"
ACTIVATIONS: tuple[OpSpec, ...] = (
    _unary(
        "relu",
        "max(x, 0)",
        semantics="`max(x, 0)` elementwise; the gradient at 0 is 0.",
        fold=lambda x: x if x > 0 else 0.0,
        flops=1,
        triton="tl.maximum({x}, 0.0)",
        grad="tl.where({x} > 0.0, {g}, 0.0)",
    ),
    _unary(
        "gelu",
        "x·Φ(x) (erf form)",
        semantics="`x · Φ(x)` elementwise, `Φ` the standard normal CDF: the exact (erf) form, "
        "not the tanh approximation.",
        fold=lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
        flops=8,
        triton=_ERF_GELU,
        grad="{g} * (0.5 * (1.0 + tl.math.erf({x} * 0.7071067811865476))"
        " + {x} * 0.3989422804014327 * tl.exp(-0.5 * {x} * {x}))",
    ),
    _unary(
        "silu",
        "x·σ(x)",
        semantics="`x · σ(x)` elementwise.",
        fold=lambda x: x * _fold_sigmoid(x),
        flops=8,
        triton="{x} * tl.sigmoid({x})",
        grad="{g} * tl.sigmoid({x}) * (1.0 + {x} * (1.0 - tl.sigmoid({x})))",
    ),
    _unary(
        "sigmoid",
        "σ(x)",
        semantics="`σ(x) = 1 / (1 + e^(−x))` elementwise.",
        fold=_fold_sigmoid,
        flops=8,
        triton="tl.sigmoid({x})",
        grad="{g} * {y} * (1.0 - {y})",
    ),
    _unary(
        "tanh",
        "tanh(x)",
        semantics="`tanh(x)` elementwise.",
        fold=math.tanh,
        flops=8,
        triton="2.0 * tl.sigmoid(2.0 * {x}) - 1.0",
        grad="{g} * (1.0 - {y} * {y})",
    ),
)
ACTS: tuple[str, ...] = tuple(op.name for op in ACTIVATIONS)


def act_hyper(default: str = "gelu") -> Hyper:
    return Hyper("act", "choice", default, choices=ACTS, doc="activation")


ARITHMETIC: tuple[OpSpec, ...] = (
    OpSpec(
        "neg",
        "1",
        "-x",
        (Port("x", "any"),),
        (),
        (OutSpec("y"),),
        _neg_infer,
        category="arith",
        callable=False,
        kernel="pointwise",
        flops=elementwise_flops(1),
        fold=operator.neg,
        involution=True,
        triton="-{x}",
        triton_grad=(("x", "-{g}"),),
        semantics="`−x` elementwise; written `-x`.",
    ),
    _binary(
        "add",
        "+",
        semantics=_BINARY,
        fold=operator.add,
        triton="{a} + {b}",
        grad=("{g}", "{g}"),
        commutative=True,
        right_identity=0,
        epilogue="residual",
        pairs=(PairRule("rownorm", "rownorm_residual", residual=True),),
    ),
    _binary(
        "sub",
        "-",
        semantics=_BINARY,
        fold=operator.sub,
        triton="{a} - {b}",
        grad=("{g}", "-{g}"),
        right_identity=0,
    ),
    _binary(
        "mul",
        "*",
        semantics=_BINARY,
        fold=operator.mul,
        triton="{a} * {b}",
        grad=("{g} * {b}", "{g} * {a}"),
        commutative=True,
        right_identity=1,
        epilogue="scale",
    ),
    _binary(
        "div",
        "/",
        semantics=_BINARY,
        fold=_fold_div,
        triton="{a} / {b}",
        grad=("{g} / {b}", "-{g} * {a} / ({b} * {b})"),
        right_identity=1,
    ),
)
