"""The run-time rule table of a generated module: which SPEC run-time rule each op puts on which
model input.

Consumes an optimised IR `Graph`; produces `input_rules(graph)`, a tuple of plain dicts (rendered
with `pyrepr` into the module's `RULES`, read by `sparkc.runtime.checks.check_inputs`):

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

# SPEC §5.1: opcodes are -1 (end of tape) or 0..8 (PLAN .. CITE).
OPCODE_LOW, OPCODE_HIGH = -1, 9


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


def _range(graph, node, port, what, low, high, allow=None, allow_name=None) -> dict | None:
    source = _source_input(graph, node, port)
    if source is None:
        return None
    return {
        "kind": "range",
        "input": source,
        "op": node.op,
        "instance": node.scope,
        "what": what,
        "low": low,
        "high": high,
        "allow": allow,
        "allow_name": allow_name,
    }


def _max_len(graph: Graph, node: Node, port: str, max_len: int) -> dict[str, Any]:
    dim = _port_dim(graph, node, port, 1)
    inputs = tuple(
        (n.attr("name"), axis)
        for n in graph.inputs()
        for axis, d in enumerate(n.types[0].shape)
        if isinstance(dim, str) and d == dim
    )
    return {
        "kind": "max_len",
        "dim": dim,
        "max_len": int(max_len),
        "inputs": inputs,
        "op": node.op,
        "instance": node.scope,
    }


def _rules_of(graph: Graph, node: Node) -> list[dict[str, Any] | None]:
    hp = node.attr_dict
    if node.op == "embed":
        vocab = int(hp["vocab"])
        return [_range(graph, node, "tokens", f"token ids (vocab={vocab})", 0, vocab)]
    if node.op == "cross_entropy":
        v = _port_dim(graph, node, "logits", -1)
        ignore = int(hp["ignore_index"])
        return [_range(graph, node, "targets", f"targets (V={v})", 0, v, ignore, "ignore_index")]
    if node.op == "opcode_tape":
        what = "opcodes (-1 ends the tape)"
        return [_range(graph, node, "ops", what, OPCODE_LOW, OPCODE_HIGH)]
    if node.op == "routed_mlp" and hp.get("route") == "hash":
        return [_range(graph, node, "tokens", "token ids (hash routing)", 0, None)]
    if node.op == "pos_embed":
        return [_max_len(graph, node, "x", hp["max_len"])]
    if node.op == "attention" and hp.get("basis"):
        return [_max_len(graph, node, "x", dict(hp["basis"])["max_len"])]
    return []


def input_rules(graph: Graph) -> tuple[dict[str, Any], ...]:
    rules = []
    for node in graph.topo_order():
        rules += [r for r in _rules_of(graph, node) if r is not None]
    return tuple(rules)
