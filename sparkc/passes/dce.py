"""`dce`: dead-code elimination.

Consumes a `Graph`; removes every node whose value cannot reach the model's results and reports
whether it changed. The roots are the `output` nodes (outputs and loss terms), `aux_sum` and the
`input` nodes; a node is live when a root depends on it. Removing a dead op instance removes its
parameters with it (decision and reasons in docs/architecture.md, "Passes"):

- the module then holds exactly the parameters its results depend on, so every parameter gets
  a gradient (SPEC §0 and property 4 of §6), and DistributedDataParallel does not fail on unused
  parameters;
- an op with an aux loss is never dead: `aux_sum` reads its loss, so `r = spd_router(x)` with
  `r` unused still trains (its loss is part of the module's loss) and keeps its parameters;
- `input` nodes always stay: they are the module's call signature, used or not;
- a live `linear(..., tie=E)` keeps the `embed` instance `E` alive, since it reads that weight.

`dead_instances` lists the op instances that own parameters and would be removed, so the front
end or the CLI can warn about them (a silently smaller `state_dict` would surprise a user).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph, Node
from .base import register

_ROOTS = ("output", "aux_sum", "input")


@dataclass(frozen=True)
class DeadInstance:
    """An op instance that `dce` removes although it owns parameters."""

    scope: str
    op: str
    params: tuple[str, ...]  # the state_dict keys that disappear


def live_nodes(graph: Graph) -> set[str]:
    """Ids of the nodes some root depends on (through inputs and `tie=` references)."""
    embeds = {n.scope: n.id for n in graph.nodes_of("embed")}
    live: set[str] = set()
    work = [n.id for n in graph.topo_order() if n.op in _ROOTS]
    while work:
        nid = work.pop()
        if nid in live:
            continue
        live.add(nid)
        node = graph.node(nid)
        work.extend(v.node for v in node.inputs)
        tie = node.attr("tie") if node.op == "linear" else None
        if tie and tie in embeds:
            work.append(embeds[tie])
    return live


def dead_instances(graph: Graph) -> list[DeadInstance]:
    """The parameter-owning op instances `dce` would remove, in topological order."""
    live = live_nodes(graph)
    out = []
    for node in graph.topo_order():
        if node.id in live:
            continue
        params = tuple(
            graph.node(v.node).attr("name") for v in node.inputs if graph.node(v.node).op == "param"
        )
        if params:
            out.append(DeadInstance(node.scope, node.op, params))
    return out


@register
class DeadCodeElimination:
    name = "dce"
    description = "remove nodes no output, loss or aux loss depends on (with their parameters)"

    def run(self, graph: Graph) -> bool:
        live = live_nodes(graph)
        dead: list[Node] = [n for n in graph.topo_order() if n.id not in live]
        for node in reversed(dead):  # readers before what they read
            graph.remove(node.id)
        return bool(dead)
