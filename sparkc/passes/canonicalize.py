"""`canonicalize`: constant folding, algebraic identities and a canonical operand order.

Consumes a `Graph`; rewrites it in place and reports whether it changed. Which rules apply to an
op follows from the traits of its spec (`fold`, `commutative`, `right_identity`, `involution`);
each rule looks at one node and either rewrites it or leaves it alone. The pass sweeps the graph
in its stable topological order until no rule fires, so the result does not depend on node ids
or on the order in which earlier passes created nodes.

Rules:
- fold: an op with a `fold` trait (what it computes on Python scalars) whose inputs are all
  `const` becomes a `const`, when `fold_constant` keeps the result (below);
- commute: a commutative op (`add`, `mul`) with a constant left operand and a non-constant
  right operand swaps them, so constants sit on the right (`2 * x` and `x * 2` then look alike
  to `cse`);
- identities: `x * 1`, `x / 1`, `x + 0`, `x - 0` become `x`, and `neg(neg(x))` becomes `x`,
  only when the result has exactly `x`'s type (a broadcast or a dtype promotion is not an
  identity). `x + 0` turns `-0.0` into `+0.0`; dropping it keeps `-0.0`, a difference no op of
  the language can observe except through a division by that zero, which we accept (as XLA and
  TorchInductor do).
- `x * 0` is never rewritten: for a float `x` it is NaN where `x` is ±inf or NaN and `-0.0`
  where `x` is negative, so replacing it by zeros would change results; it would also need a
  zeros-of-a-shape op that the IR does not have. Reassociation (`(x * 2) * 3` to `x * 6`) is
  not done either: it changes rounding.

Folding keeps a result only when it reproduces the run-time one:
- Arithmetic is done in float64 (Python floats), like Python folds `0.1 * 3` in source code; the
  generated module uses the folded literal as it would a literal the user had written.
- A result that is not finite (overflow, 0/0, x/0) is never folded: the op stays and the
  run-time dtype decides what inf/nan it produces.
- Integer results must fit in int64 (torch wraps around, Python does not); an integer division is
  folded only when it is exact, so that the i64 result type the op table gives stays truthful.

Nodes a rewrite orphans (the rewritten node, constants only it read) are erased at once; other
dead code is left to `dce`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..diagnostics import CompilerBug
from ..ir.graph import Graph, Node, rule_hparams
from ..ir.ops import OPS, OpSpec, ShapeFailure, instantiate
from ..ir.types import DType, TensorType
from .base import register
from .rewrite import const_value, erase_if_dead, is_const

Rule = Callable[[Graph, Node], bool]
Scalar = int | float

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def fold_constant(op: str, args: list[Scalar], dtype: DType) -> Scalar | None:
    """The value of `op(*args)` as a constant of `dtype`, or None when it must not be folded."""
    spec = OPS.get(op)
    if spec is None or spec.fold is None or len(args) != len(spec.inputs):
        return None
    try:
        raw = spec.fold(*args)
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    if raw is None:
        return None
    if dtype is DType.FLOAT:
        value = float(raw)
        return value if math.isfinite(value) else None
    if dtype.is_int and isinstance(raw, int) and not isinstance(raw, bool):
        lo, hi = (_I64_MIN, _I64_MAX) if dtype is DType.I64 else (-(2**31), 2**31 - 1)
        return raw if lo <= raw <= hi else None
    return None


def _fold(g: Graph, node: Node) -> bool:
    if len(node.types) != 1 or node.types[0].shape != () or not node.inputs:
        return False
    if not all(is_const(g, v) for v in node.inputs):
        return False
    args = [const_value(g, v) for v in node.inputs]
    value = fold_constant(node.op, args, node.types[0].dtype)
    if value is None:
        return False
    c = g.add(
        "const",
        (),
        {"value": value},
        (TensorType(node.types[0].dtype, ()),),
        scope=node.scope,
        span=node.span,
    )
    g.replace_uses(node.out(), c.out())
    erase_if_dead(g, node.id)
    return True


def _types_with(g: Graph, node: Node, inputs: tuple) -> tuple[TensorType, ...] | None:
    ports = {name: g.type_of(v) for name, v in zip(node.port_names, inputs)}
    try:
        return tuple(instantiate(node.op, ports, rule_hparams(node)).outputs)
    except ShapeFailure:
        return None


def _commute(g: Graph, node: Node) -> bool:
    a, b = node.inputs
    if not is_const(g, a) or is_const(g, b):
        return False
    # Promotion is symmetric, so a swap keeps the type; the check guards future asymmetric ops.
    if _types_with(g, node, (b, a)) != node.types:
        return False
    g.update(node.id, inputs=(b, a))
    return True


def _right_identity(unit: int) -> Rule:
    def rule(g: Graph, node: Node) -> bool:
        a, b = node.inputs
        value = const_value(g, b)
        if value is None or value != unit or g.type_of(a) != node.types[0]:
            return False
        g.replace_uses(node.out(), a)
        erase_if_dead(g, node.id)
        return True

    rule.__name__ = f"right_identity_{unit}"
    return rule


def _involution(g: Graph, node: Node) -> bool:
    """op(op(x)) = x, e.g. neg(neg(x))."""
    inner = g.node(node.inputs[0].node)
    if inner.op != node.op or g.type_of(inner.inputs[0]) != node.types[0]:
        return False
    g.replace_uses(node.out(), inner.inputs[0])
    erase_if_dead(g, node.id)
    return True


_IDENTITIES: dict[int, Rule] = {0: _right_identity(0), 1: _right_identity(1)}


def rules_of(spec: OpSpec) -> tuple[Rule, ...]:
    """The rules that apply to an op, in the order they are tried, from its traits."""
    rules: list[Rule] = []
    if spec.fold is not None:
        rules.append(_fold)
    if spec.commutative:
        rules.append(_commute)
    if spec.right_identity is not None:
        rules.append(_IDENTITIES[spec.right_identity])
    if spec.involution:
        rules.append(_involution)
    return tuple(rules)


# op name -> its rules (only ops some rule applies to), derived from the op table.
RULES: dict[str, tuple[Rule, ...]] = {
    name: rules for name, spec in OPS.items() if (rules := rules_of(spec))
}


@register
class Canonicalize:
    name = "canonicalize"
    description = "fold constants, drop x*1 x/1 x+0 x-0 neg(neg x), put constants on the right"

    def run(self, graph: Graph) -> bool:
        changed = False
        # Every firing removes a node or moves a constant right, so this terminates; the bound
        # turns a rule that undoes another into a clear bug instead of a hang.
        for _ in range(2 * len(graph) + 2):
            if not self._sweep(graph):
                return changed
            changed = True
        raise CompilerBug("canonicalize did not reach a fixed point", "canonicalize")

    @staticmethod
    def _sweep(graph: Graph) -> bool:
        fired = False
        for nid in [n.id for n in graph.topo_order()]:
            if nid not in graph:
                continue
            node = graph.node(nid)
            for rule in RULES.get(node.op, ()):
                if rule(graph, node):
                    fired = True
                    break
        return fired
