"""Pointwise groups → fused Triton programs, forward and (by reverse-mode autodiff) backward.

Consumes a fusion group of elementwise IR nodes; produces the template context of
`fused_pointwise.py.jinja`: a forward expression program (SSA statements over the group's external
inputs, constants passed as scalar arguments) and the backward program derived from the per-op
derivative rule table below (the adjoint of every value, summed over its uses, recomputing the
forward values from the saved inputs instead of storing intermediates).

Each elementwise op's Triton expression and derivative are traits of its spec (`OpSpec.triton`,
`OpSpec.triton_grad`, in sparkc/ir/ops/primitives.py); tests/ir/test_op_traits.py asserts every
elementwise op of the op table has both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph, Node, Value
from ..ir.ops import OPS


@dataclass
class PointwiseProgram:
    """A fused elementwise group, ready for the template."""

    name: str
    inputs: list[Value]  # external tensor inputs, in argument order (named a0, a1, ...)
    scalars: list[float]  # constants, passed as runtime float arguments c0, c1, ...
    body: list[str]  # forward SSA statements
    outputs: list[tuple[Value, str]]  # (IR value, SSA name) of every value used outside
    grad_body: list[str]  # backward statements (after the forward body)
    grad_outputs: list[tuple[str, str]]  # (gradient name of input i, SSA expression)

    def context(self) -> dict:
        return {
            "name": self.name,
            "inputs": [f"a{i}" for i in range(len(self.inputs))],
            "scalars": [f"c{i}" for i in range(len(self.scalars))],
            "body": self.body,
            "outputs": [(f"o{i}", ssa) for i, (_, ssa) in enumerate(self.outputs)],
            "grad_inputs": [f"g{i}" for i in range(len(self.outputs))],
            "grad_body": self.grad_body,
            "grad_outputs": self.grad_outputs,
        }


def build_program(
    graph: Graph, node_ids: list[str] | tuple[str, ...], name: str, used_outside: set[Value]
) -> PointwiseProgram:
    nodes = [graph.node(n) for n in node_ids]
    inside = {n.id for n in nodes}
    ssa: dict[Value, str] = {}
    inputs: list[Value] = []
    scalars: list[float] = []
    body: list[str] = []

    def operand(v: Value) -> str:
        if v in ssa:
            return ssa[v]
        src = graph.node(v.node)
        if src.op == "const":
            scalars.append(float(src.attr("value")))
            ssa[v] = f"c{len(scalars) - 1}"
        else:
            inputs.append(v)
            ssa[v] = f"a{len(inputs) - 1}"
        return ssa[v]

    for k, node in enumerate(nodes):
        args = {port: operand(v) for port, v in zip(node.port_names, node.inputs)}
        body.append(f"t{k} = {OPS[node.op].triton.format(**args)}")
        ssa[node.out()] = f"t{k}"
    outputs = [(n.out(), ssa[n.out()]) for n in nodes if n.out() in used_outside]
    grad_body, grad_outputs = _adjoint(nodes, ssa, outputs, inputs, inside)
    return PointwiseProgram(name, inputs, scalars, body, outputs, grad_body, grad_outputs)


def _adjoint(nodes: list[Node], ssa: dict[Value, str], outputs, inputs: list[Value], inside):
    """Reverse-mode statements: d<ssa> for every value, from the output gradients g<i>."""
    contrib: dict[str, list[str]] = {}
    for i, (_, name) in enumerate(outputs):
        contrib.setdefault(name, []).append(f"g{i}")
    lines: list[str] = []
    for node in reversed(nodes):
        y = ssa[node.out()]
        terms = contrib.get(y)
        if not terms:
            continue
        lines.append(f"d{y} = {' + '.join(terms)}")
        args = {port: ssa[v] for port, v in zip(node.port_names, node.inputs)}
        for port, v in zip(node.port_names, node.inputs):
            src = ssa[v]
            if src.startswith("c"):
                continue  # constants take no gradient
            rule = dict(OPS[node.op].triton_grad)[port]
            contrib.setdefault(src, []).append("(" + rule.format(g=f"d{y}", y=y, **args) + ")")
    grads = []
    for i, _ in enumerate(inputs):
        terms = contrib.get(f"a{i}", [f"0.0 * a{i}"])
        grads.append((f"da{i}", " + ".join(terms)))
    return lines, grads


def add_program() -> dict:
    """The fused_pointwise.py.jinja context of a + b (both gradients the incoming one), for
    rules that add two tensors outside a pointwise group (positional tables, router noise)."""
    return {
        "inputs": ["a0", "a1"],
        "scalars": [],
        "body": ["t0 = a0 + a1"],
        "outputs": [("o0", "t0")],
        "grad_inputs": ["g0"],
        "grad_body": ["dt0 = g0"],
        "grad_outputs": [("da0", "dt0"), ("da1", "dt0")],
    }
