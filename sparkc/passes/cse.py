"""`cse`: common-subexpression elimination.

Consumes a `Graph`; merges nodes that compute the same value and reports whether it changed.
Two nodes are the same when they have the same op, the same inputs (in port order; sorted for
the commutative ops, `OpSpec.commutative`: `add`, `mul`), the same port names, the same
attributes and the same types. The first in the stable topological order survives and takes
over every reader of the others.

Never merged:
- `input`, `param`, `output` and `aux_sum` nodes (each is a distinct thing by definition);
- op instances that own parameters: two `linear`s read different weights, and merging them
  would silently tie two parameters (they never compare equal anyway; this is a guard);
- ops that draw random noise in training (`OPS[op].noise(hp)`): two draws are independent.
`const` nodes merge when their values are identical (same type, same `repr`, so `0.0` and
`-0.0` stay apart and NaN merges with NaN).

One sweep in topological order is a fixed point: a node's inputs have already been merged when
the node is reached, so chains of duplicates collapse in a single run.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..ir.graph import SPECIAL_OPS, Graph, Node, Value, rule_hparams
from ..ir.ops import OPS
from .base import register
from .rewrite import owns_params


def _freeze(v: Any) -> Hashable:
    """A key in which values compare by type and spelling (True != 1, 0.0 != -0.0)."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_freeze(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, (bool, int, float, str)) or v is None:
        return (type(v).__name__, repr(v))
    return (type(v).__name__, v)


def _mergeable(g: Graph, node: Node) -> bool:
    if node.op == "const":
        return True
    if node.op in SPECIAL_OPS or node.op not in OPS:
        return False
    if owns_params(g, node):
        return False
    return not OPS[node.op].noise(rule_hparams(node))


def _key(g: Graph, node: Node) -> Hashable:
    inputs: tuple[Value, ...] = node.inputs
    if node.op in OPS and OPS[node.op].commutative:
        # Same inputs in either order give the same value; the types guard dtype promotion.
        inputs = tuple(sorted(inputs, key=lambda v: (v.node, v.index)))
    return (
        node.op,
        tuple((v.node, v.index) for v in inputs),
        node.port_names,
        _freeze(node.attrs),
        node.types,
    )


@register
class CommonSubexpressionElimination:
    name = "cse"
    description = "merge identical nodes (never parameter owners, noisy ops, inputs or outputs)"

    def run(self, graph: Graph) -> bool:
        seen: dict[Hashable, str] = {}
        changed = False
        for nid in [n.id for n in graph.topo_order()]:
            node = graph.node(nid)
            if not _mergeable(graph, node):
                continue
            key = _key(graph, node)
            survivor = seen.get(key)
            if survivor is None:
                seen[key] = nid
                continue
            for i in range(len(node.types)):
                graph.replace_uses(node.out(i), Value(survivor, i))
            graph.remove(nid)
            changed = True
        return changed
