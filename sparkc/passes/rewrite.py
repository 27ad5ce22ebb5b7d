"""Small graph-rewriting helpers shared by the passes.

Consumes and mutates a `Graph` through its public API only. Answers the questions every pass
asks: is this value a constant and what is it, does this node own parameters, may this node be
erased, and erases a node together with the pure producers that only it kept alive.
"""

from __future__ import annotations

from ..ir.graph import SPECIAL_OPS, Graph, Node, Value
from ..ir.ops import OPS

# Ops that compute a pure function of their inputs (no parameters, no noise, no aux loss).
_PURE_CATEGORIES = ("arith", "elementwise")


def const_value(graph: Graph, v: Value) -> int | float | None:
    """The value of `v` when it is produced by a `const` node, else None."""
    node = graph.node(v.node)
    return node.attr("value") if node.op == "const" else None


def is_const(graph: Graph, v: Value) -> bool:
    return graph.node(v.node).op == "const"


def owns_params(graph: Graph, node: Node) -> bool:
    return any(graph.node(v.node).op == "param" for v in node.inputs)


def is_trivially_erasable(graph: Graph, node: Node) -> bool:
    """A node that may vanish once unused: a const, or a pure arithmetic/elementwise op.

    Params, inputs, outputs, `aux_sum` and op instances with parameters or aux losses stay:
    whether those may go is the business of `dce`, which documents the rule.
    """
    if node.op == "const":
        return True
    if node.op in SPECIAL_OPS or node.op not in OPS:
        return False
    spec = OPS[node.op]
    return (
        spec.category in _PURE_CATEGORIES and not spec.loss_outputs and not owns_params(graph, node)
    )


def erase_if_dead(graph: Graph, node_id: str) -> int:
    """Erase `node_id` if it has no users and is trivially erasable, then its producers likewise.

    Returns how many nodes were erased. Used by rewrites to clean up the nodes they orphan.
    """
    erased = 0
    work = [node_id]
    while work:
        nid = work.pop()
        if nid not in graph or graph.users(nid):
            continue
        node = graph.node(nid)
        if not is_trivially_erasable(graph, node):
            continue
        producers = sorted({v.node for v in node.inputs})
        graph.remove(nid)
        erased += 1
        work.extend(producers)
    return erased
