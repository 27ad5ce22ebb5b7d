"""The op table: every built-in op of the language and of the IR, as data.

One `OpSpec` per op (SPEC.md is the contract): its tensor inputs, hyperparameters (type, default,
range), outputs and their shape rule, the parameters it owns (names exactly as in SPEC, shapes,
initialisers), its category and whether it mixes the sequence causally, and its traits: kernel
kind and fusion rules, FLOP rule and backward factor, algebra (fold, commutativity, identities),
elementwise Triton expression and gradient, exact definition (docs/ops.md). The checker, the
lowering, the IR verifier, the passes, the cost model, `sparkc ops`, `docs/ops.md` and the code
generators all read this one table; no other table is keyed by op name.

The specs live in one module per op family (`primitives`, `attention`, `spark_k`, `splat`,
`hspmn`, `procedural`; `primitives_elementwise` holds the primitives' activations and
arithmetic, for size), the schema they are written in in `schema`; this package assembles
`OPS` from the families in that order and refuses an op defined twice. Shape rules receive an
`OpContext` and either return the output types or call `ctx.fail(...)` with the name of the
argument at fault, so that the front end can point at it.

Adding an op: its `OpSpec` (with the traits its category needs; tests/ir/test_op_traits.py
names what is missing) in its family's `SPECS`; a new family: a module with `SPECS`, listed in
`FAMILIES`. This package imports nothing heavy (no torch, no lark): it is data plus small
functions.
"""

from __future__ import annotations

from typing import Any

from ..types import TensorType
from . import attention, hspmn, primitives, procedural, spark_k, splat
from .schema import (
    REQUIRED,
    Derived,
    DocVariant,
    Hyper,
    Init,
    InstanceSpec,
    MaxLenRule,
    OpContext,
    OpSpec,
    OutSpec,
    PairRule,
    ParamSpec,
    Port,
    RangeRule,
    ShapeFailure,
    check_hyper_value,
    default_text,
    layernorm_params,
    linear_params,
    tied_embed_init,
)

# The families, in table order (the order of `sparkc ops` and docs/ops.md).
FAMILIES = (primitives, attention, spark_k, splat, hspmn, procedural)


def assemble(families) -> dict[str, OpSpec]:
    """name -> spec over the families' `SPECS`, in order; an op defined twice is a bug."""
    table: dict[str, OpSpec] = {}
    for family in families:
        for spec in family.SPECS:
            if spec.name in table:
                raise ValueError(f"op '{spec.name}' is defined twice (second in {family.__name__})")
            table[spec.name] = spec
    return table


OPS: dict[str, OpSpec] = assemble(FAMILIES)

# Ops a program may call by name (the rest are spelt with operators).
CALLABLE: tuple[str, ...] = tuple(sorted(n for n, op in OPS.items() if op.callable))

# The operators of the language and the ops they denote (infix, then prefix).
BINARY_OPERATORS: dict[str, str] = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
UNARY_OPERATORS: dict[str, str] = {"-": "neg"}


def instantiate(op: str, inputs: dict[str, TensorType], hp: dict[str, Any]) -> InstanceSpec:
    """Run an op's validate, shape and param rules (raises ShapeFailure on a user error).

    `hp` must already hold every hyperparameter except Derived defaults, which are filled here.
    The rules are pure, so results are kept by (op, input types, hyperparameters): a model of
    10,000 identical layers runs each layer's rules once, in the checker and in the verifier.
    """
    try:
        key = (op, tuple(inputs.items()), tuple((k, exact_key(v)) for k, v in hp.items()))
        kept = _KEPT.get(key)
    except TypeError:  # an unhashable hyperparameter value: compute it every time
        return _instantiate(op, inputs, hp)
    if kept is None:
        if len(_KEPT) >= 4096:
            _KEPT.clear()
        kept = _KEPT[key] = _instantiate(op, inputs, hp)
    return kept


_KEPT: dict[tuple, InstanceSpec] = {}


def exact_key(v: Any) -> Any:
    """A hashable key that tells apart values that compare equal (1, 1.0, True; 0.0, -0.0), at
    every nesting level; raises TypeError for an unhashable leaf."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(exact_key(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((exact_key(k), exact_key(x)) for k, x in v.items()))
    return (type(v).__name__, repr(v) if isinstance(v, float) else v)


def _instantiate(op: str, inputs: dict[str, TensorType], hp: dict[str, Any]) -> InstanceSpec:
    spec = OPS[op]
    ctx = OpContext(op, dict(inputs), dict(hp))
    for h in spec.hypers:
        if h.name not in ctx.hp or ctx.hp[h.name] is REQUIRED:
            if isinstance(h.default, Derived):
                ctx.hp[h.name] = h.default.fn(ctx)
                msg = check_hyper_value(h, ctx.hp[h.name])
                if msg:
                    ctx.fail(h.name, msg + f" (its default is {h.default.text})", code="E0302")
            elif h.default is REQUIRED:
                ctx.fail(None, f"{op} needs the hyperparameter '{h.name}'", code="E0205")
            else:
                ctx.hp[h.name] = h.default
    spec.validate(ctx)
    outs = spec.infer(ctx)
    params = spec.params(ctx)
    ordered_hp = tuple((h.name, ctx.hp[h.name]) for h in spec.hypers)
    return InstanceSpec(op, ordered_hp, tuple(inputs.items()), tuple(outs), tuple(params))


__all__ = [
    "BINARY_OPERATORS",
    "CALLABLE",
    "FAMILIES",
    "OPS",
    "REQUIRED",
    "UNARY_OPERATORS",
    "Derived",
    "DocVariant",
    "Hyper",
    "Init",
    "InstanceSpec",
    "MaxLenRule",
    "OpContext",
    "OpSpec",
    "OutSpec",
    "PairRule",
    "ParamSpec",
    "Port",
    "RangeRule",
    "ShapeFailure",
    "assemble",
    "check_hyper_value",
    "default_text",
    "exact_key",
    "instantiate",
    "layernorm_params",
    "linear_params",
    "tied_embed_init",
]
