"""The canonical text form of an IR `Graph` (`sparkc compile --emit ir|opt`, golden files).

Consumes a `Graph`; produces text, one line per node:

    graph TinyGPT(vocab=256, d=128) {
      %0 : i64[B,N] = input "tokens"
      %1 : float[256,128] = param "tok.weight" normal(1.0)
      %2 : float[B,N,128] = embed(%0, %1) vocab=256 dim=128   # tok
      ...
      output "logits" = %9
      loss "ce" = %12 weight=1.0
      aux_loss = aux_sum(%5.3, %8.2)
    }

The form is a function of the graph's structure only: node ids and spans never appear, SSA
numbers are given in print order, attributes follow op-table order, floats print as their
shortest round-trip `repr`. So two graphs that differ only in node ids print the same, and the
same graph prints byte-identically on every machine.

Print order (`print_order`): inputs first, then the op nodes in the graph's stable topological
order, each preceded by the not yet printed `param`/`const` nodes it reads (so a parameter sits
next to its op, and a constant created late by a pass still prints beside its first user), then
outputs, losses and `aux_sum`. Unused params/consts (only before `dce`) print at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .graph import Graph, Node, Value
from .ops import OPS
from .types import TensorType

# Source-less nodes that are printed lazily, just before their first reader.
_LAZY = ("param", "const")
# Sinks, printed last in this order.
_SINKS = ("output", "aux_sum")


def print_order(graph: Graph) -> list[Node]:
    """The nodes in canonical print order (also the order of the stable ids of `sparkc.viz`)."""
    topo = graph.topo_order()
    done: set[str] = set()
    out: list[Node] = []

    def emit(n: Node) -> None:
        if n.id not in done:
            done.add(n.id)
            out.append(n)

    def emit_with_operands(n: Node) -> None:
        for v in n.inputs:
            p = graph.node(v.node)
            if p.op in _LAZY:
                emit(p)
        emit(n)

    sinks = [n for n in topo if n.op == "output" and n.attr("kind", "output") == "output"]
    sinks += [n for n in topo if n.op == "output" and n.attr("kind", "output") != "output"]
    sinks += [n for n in topo if n.op == "aux_sum"]
    for n in topo:
        if n.op == "input":
            emit(n)
    for n in topo:
        if n.op not in _LAZY and n.op not in _SINKS:
            emit_with_operands(n)
    for n in sinks:  # a const read only by a sink still prints before it
        for v in n.inputs:
            if graph.node(v.node).op in _LAZY:
                emit(graph.node(v.node))
    for n in topo:  # unused params and consts (only before dce)
        if n.op not in _SINKS:
            emit(n)
    for n in sinks:
        emit(n)
    return out


def format_value(v: Any) -> str:
    """A hyperparameter or constant value in its canonical spelling."""
    for kind, fmt in _VALUE_FORMATS:
        if isinstance(v, kind):
            return fmt(v)
    return str(v)


def _fmt_float(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _fmt_pairs(v: tuple) -> str:
    if v and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in v):
        return "(" + ", ".join(f"{k}={format_value(x)}" for k, x in v) + ")"
    return "(" + ", ".join(format_value(x) for x in v) + ")"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_VALUE_FORMATS: tuple[tuple[type | tuple[type, ...], Callable[[Any], str]], ...] = (
    (bool, lambda v: "true" if v else "false"),  # before int: bool is an int subclass
    (int, str),
    (float, _fmt_float),
    (type(None), lambda v: "none"),
    (tuple, _fmt_pairs),
    (dict, lambda v: _fmt_pairs(tuple(v.items()))),
    (str, lambda v: v),
)


def _types(types: tuple[TensorType, ...]) -> str:
    if len(types) == 1:
        return str(types[0])
    return "(" + ", ".join(str(t) for t in types) + ")"


class _Namer:
    """SSA names in print order; `aux_sum` is named `%aux_loss` wherever it is read."""

    def __init__(self, order: list[Node]):
        self.ids: dict[str, str] = {}
        for n in order:
            if n.op == "aux_sum":
                self.ids[n.id] = "%aux_loss"
            elif n.op != "output":
                self.ids[n.id] = f"%{len(self.ids)}"

    def __call__(self, v: Value) -> str:
        base = self.ids.get(v.node, f"%?{v.node}")
        return f"{base}.{v.index}" if v.index else base


def _attrs(node: Node) -> str:
    spec = OPS.get(node.op)
    known = [h.name for h in spec.hypers] if spec else []
    values = node.attr_dict
    # Op-table order first; anything else a later pass attached, by name.
    names = [k for k in known if k in values] + sorted(k for k in values if k not in known)
    return " ".join(f"{k}={format_value(values[k])}" for k in names)


def _line_input(node: Node, name: Callable[[Value], str]) -> str:
    t = node.types[0]
    src = node.attr("source_dtype")
    extra = f" {src}" if src and src != t.dtype.value else ""
    return f"{name(node.out())} : {t} = input {_quote(node.attr('name'))}{extra}"


def _line_param(node: Node, name: Callable[[Value], str]) -> str:
    text = f"{name(node.out())} : {node.types[0]} = param {_quote(node.attr('name'))} {node.attr('init')}"
    if node.attr("trainable") is False:
        text += " buffer"
    if node.attr("tied_to"):
        text += f" tied_to={_quote(node.attr('tied_to'))}"
    return text


def _line_const(node: Node, name: Callable[[Value], str]) -> str:
    return f"{name(node.out())} : {node.types[0]} = const {format_value(node.attr('value'))}"


def _line_output(node: Node, name: Callable[[Value], str]) -> str:
    kind = node.attr("kind", "output")
    text = f"{kind} {_quote(node.attr('name'))} = {name(node.inputs[0])}"
    if kind == "loss":
        text += f" weight={format_value(node.attr('weight'))}"
    return text


def _line_aux(node: Node, name: Callable[[Value], str]) -> str:
    return f"aux_loss = aux_sum({', '.join(name(v) for v in node.inputs)})"


def _line_op(node: Node, name: Callable[[Value], str]) -> str:
    # A multi-output node is one SSA name with a tuple type; readers write `%5.3`.
    text = f"{name(node.out())} : {_types(node.types)} = {node.op}({', '.join(name(v) for v in node.inputs)})"
    attrs = _attrs(node)
    return text + (f" {attrs}" if attrs else "")


_LINES: dict[str, Callable[[Node, Callable[[Value], str]], str]] = {
    "input": _line_input,
    "param": _line_param,
    "const": _line_const,
    "output": _line_output,
    "aux_sum": _line_aux,
}


def print_node(node: Node, name: Callable[[Value], str]) -> str:
    line = _LINES.get(node.op, _line_op)(node, name)
    if node.scope and node.op not in ("param", "input", "output"):
        line += f"   # {node.scope}"
    return line


def print_graph(graph: Graph) -> str:
    """The canonical text of `graph`, ending with a newline."""
    order = print_order(graph)
    name = _Namer(order)
    hyper = ", ".join(f"{k}={format_value(v)}" for k, v in graph.hyper)
    lines = [f"graph {graph.name}({hyper}) {{"]
    lines += ["  " + print_node(n, name) for n in order]
    lines.append("}")
    return "\n".join(lines) + "\n"
