"""The run-time rule table of a generated module: which run-time rule each op puts on which model
input.

Consumes an optimised IR `Graph`; produces `input_rules(graph)`, a tuple of plain dicts (rendered
with `pyrepr` into the module's `RULES`, read by `sparkc.runtime.checks.check_inputs`):

Each op's rules are a trait of its `OpSpec` (`runtime_rules`, `RangeRule`/`MaxLenRule` in
`sparkc/ir/ops/`); this module resolves them against the graph:

- `{"kind": "range", "input", "op", "instance", "what", "low", "high", "allow", "allow_name"}`: the values of
  an integer model input must lie in `[low, high)` (`high` None: no upper bound; an int or a
  symbolic dim) or equal `allow`. Emitted where an op's integer port is fed straight by a model
  input: `embed` ids in `[0, vocab)`, `cross_entropy` targets in `[0, V)` or `ignore_index`,
  `opcode_tape` opcodes in `[-1, 9)`, `routed_mlp(route=hash)` ids `>= 0`.
- `{"kind": "max_len", "dim", "max_len", "inputs", "op", "instance"}`: the sequence dim of an
  op's port (a symbolic dim such as `N`, or an int) must not exceed `max_len`; `inputs` lists
  the (model input, axis) pairs that bind it, in declaration order, so the error names the
  input the user passed. Emitted for `pos_embed` and for `attention(basis=...)`.

An integer port fed by a computed value (not a model input) gets no entry: the op's own check
(reference rule, kernel launcher) covers it, and every kernel masks data-dependent indices.
Rules are in topological order of their ops, so the first failing rule is the earliest op.
"""

from __future__ import annotations

from typing import Any

from ..ir.graph import Graph, Node
from ..ir.ops import OPS, MaxLenRule, RangeRule


def _source_input(graph: Graph, node: Node, port: str) -> str | None:
    for name, v in zip(node.port_names, node.inputs):
        if name == port:
            producer = graph.node(v.node)
            return producer.attr("name") if producer.op == "input" else None
    return None


def _port_dim(graph: Graph, node: Node, port: str, axis: int):
    for name, v in zip(node.port_names, node.inputs):
        if name == port:
            return graph.type_of(v).shape[axis]
    raise KeyError(port)


def _range(graph: Graph, node: Node, rule: RangeRule) -> dict[str, Any] | None:
    source = _source_input(graph, node, rule.port)
    if source is None:
        return None
    high = rule.high
    if isinstance(high, tuple):  # ("dim", port, axis)
        high = _port_dim(graph, node, high[1], high[2])
    return {
        "kind": "range",
        "input": source,
        "op": node.op,
        "instance": node.scope,
        "what": rule.what.format(high=high),
        "low": rule.low,
        "high": high,
        "allow": rule.allow,
        "allow_name": rule.allow_name,
    }


def _max_len(graph: Graph, node: Node, rule: MaxLenRule) -> dict[str, Any]:
    dim = _port_dim(graph, node, rule.port, 1)
    inputs = tuple(
        (n.attr("name"), axis)
        for n in graph.inputs()
        for axis, d in enumerate(n.types[0].shape)
        if isinstance(dim, str) and d == dim
    )
    return {
        "kind": "max_len",
        "dim": dim,
        "max_len": rule.max_len,
        "inputs": inputs,
        "op": node.op,
        "instance": node.scope,
    }


def input_rules(graph: Graph) -> tuple[dict[str, Any], ...]:
    rules = []
    for node in graph.topo_order():
        spec = OPS.get(node.op)
        if spec is None:
            continue
        for rule in spec.runtime_rules(node.attr_dict):
            entry = (
                _max_len(graph, node, rule)
                if isinstance(rule, MaxLenRule)
                else _range(graph, node, rule)
            )
            if entry is not None:
                rules.append(entry)
    return tuple(rules)
