"""Fusion plan → the Triton path of the generated module and its kernels file (the hub).

Consumes the graph and its `FusionPlan` (sparkc/passes/fuse.py); produces
- the lines of `_forward_triton` (straight-line calls of kernel fragments, in a topological
  order of the groups), with the prefill fills the rules record (`Emitter.fill`), and
- the `KernelSet` (codegen/emit.py) whose `render` writes `kernels.py`: the prelude plus one
  rendered fragment per distinct (template, context); two groups that need the same
  specialisation share one fragment.

This module only plans and dispatches: each group goes to `GROUP_RULES[group.kind]`, assembled
by `codegen/rules/` from one module per op family; the helpers the rules share are
`codegen/emit.py`. Every fragment entry point is differentiable (an autograd.Function with
Triton backward kernels), so `loss.backward()` runs generated kernels. Kinds whose kernels do not
exist yet (`reference`) call the op's reference rule inside the Triton path;
`KernelSet.reference_ops` lists them and the module reports them in `TRITON_COVERAGE`.
"""

from __future__ import annotations

import networkx as nx

from ..ir.graph import Graph, Value
from ..passes.fuse import FusionPlan, Group, fusion_plan
from .emit import Emitter, KernelSet
from .module import ValueNames, param_comment
from .render import pyrepr
from .rules import GROUP_RULES


def group_order(graph: Graph, plan: FusionPlan) -> list[Group]:
    """Groups in a topological order of the contracted graph (ties: anchor order)."""
    of = plan.group_of()
    dag = nx.DiGraph()
    order = {g.id: i for i, g in enumerate(plan.groups)}
    dag.add_nodes_from(order)
    for u, v in graph.nx.edges():
        gu, gv = of.get(u), of.get(v)
        if gu and gv and gu != gv:
            dag.add_edge(gu, gv)
    by_id = {g.id: g for g in plan.groups}
    return [by_id[g] for g in nx.lexicographical_topological_sort(dag, key=order.__getitem__)]


def used_outside(graph: Graph, plan: FusionPlan) -> dict[str, set[Value]]:
    of = plan.group_of()
    out: dict[str, set[Value]] = {g.id: set() for g in plan.groups}
    for node in graph.topo_order():
        for v in node.inputs:
            gid = of.get(v.node)
            if gid is not None and of.get(node.id) != gid:
                out[gid].add(v)
    return out


def triton_units(graph: Graph, names: ValueNames) -> tuple[list, KernelSet, FusionPlan, Emitter]:
    """(compute units of the Triton path, its kernels, the fusion plan, the emitter: what the
    rules recorded for the prefill body, `Emitter.fills` and `Emitter.prefill_lines`)."""
    plan = fusion_plan(graph)
    kernels = KernelSet()
    e = Emitter(
        graph,
        names,
        kernels,
        {n.id: i for i, n in enumerate(graph.params())},
        used_outside(graph, plan),
    )
    for node in graph.topo_order():
        if node.op == "param":
            e.unit((node.id,))
            e.emit(f"{e.out(node)} = _p[{e.param_index[node.id]}]  # {param_comment(node)}")
        elif node.op == "const":
            e.unit((node.id,))
            e.emit(f"{e.out(node)} = {pyrepr(node.attr('value'))}")
    for group in group_order(graph, plan):
        e.unit(group.nodes)
        GROUP_RULES[group.kind](e, group)
    return e.units, kernels, plan, e
