"""The IR verifier: checks every structural and typing invariant of a `Graph`.

Consumes a `Graph`; produces nothing, or raises `CompilerBug` naming the stage and listing every
broken invariant it found (a pass that breaks the graph is a compiler bug, never a user error).
It runs after lowering and after every pass in tests, so it stays linear in the graph size: one
walk over the nodes, one structural check (and shape-rule call) per distinct op-instance shape.

Invariants (docs/architecture.md, "IR conventions"):
- the graph is acyclic and its edges are exactly the nodes' input references;
- every input `Value` names an existing node and one of its outputs;
- an op is one of `SPECIAL_OPS` or in the op table `OPS`;
- an op instance's inputs are its ports (op-table order, `port_names` naming each) followed by
  its parameters in ParamSpec order; its attrs are every hyperparameter in op-table order; its
  types equal what `instantiate` computes from its input types and attrs;
- each parameter node has exactly one owner, is named `<owner scope>.<spec name>`, and has the
  spec's type, initialiser and trainable flag; parameter and input names are unique;
- output names are unique; there is exactly one `aux_sum`, and it reads every aux-loss output of
  every op (and nothing else); `const` nodes are 0-d scalars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import networkx as nx

from ..diagnostics import CompilerBug
from .graph import SPECIAL_OPS, Graph, Node, qualified, rule_hparams
from .ops import OPS, ShapeFailure, exact_key, instantiate, tied_embed_init
from .types import DType, TensorType

_MAX_REPORTED = 25


class _Report:
    """Collects problems so that one failure lists everything that is wrong, not just the first."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.problems: list[str] = []

    def add(self, node: Node | None, message: str) -> None:
        where = ""
        if node is not None:
            where = f"{node.id} ({node.op}{' ' + repr(node.scope) if node.scope else ''}): "
        self.problems.append(where + message)


def verify(graph: Graph, stage: str = "verify") -> None:
    """Raise `CompilerBug(stage=stage)` if `graph` breaks any IR invariant.

    A graph verified before and not changed since (same `graph.version`) is not walked again:
    the pipeline verifies after lowering, before the passes and after every pass."""
    if graph.meta.get("verified_version") == (id(graph), graph.version):
        return
    _verify(graph, stage)
    graph.meta["verified_version"] = (id(graph), graph.version)


def _verify(graph: Graph, stage: str) -> None:
    report = _Report(graph)
    if not graph.is_acyclic():
        cycle = nx.find_cycle(graph.nx)
        report.add(None, "the graph has a cycle: " + " -> ".join(u for u, _ in cycle))
        _raise(report, stage)
    nodes = graph.topo_order(fresh=True)
    owners: dict[str, list[str]] = {}
    memo: dict[tuple, Any] = {}
    for node in nodes:
        if not _check_inputs(report, node):
            continue
        if node.op in _SPECIAL_RULES:
            _SPECIAL_RULES[node.op](report, node)
        elif node.op in OPS:
            _check_instance(report, node, owners, memo)
        else:
            report.add(node, f"unknown op '{node.op}'")
    _check_unique(report, nodes, "input", "input name")
    _check_unique(report, nodes, "param", "parameter name")
    _check_unique(report, nodes, "output", "output name")
    _check_owners(report, nodes, owners)
    _check_aux(report, nodes)
    _raise(report, stage)


def _raise(report: _Report, stage: str) -> None:
    if not report.problems:
        return
    shown = report.problems[:_MAX_REPORTED]
    more = len(report.problems) - len(shown)
    lines = [f"IR verification failed for graph '{report.graph.name}':", *("  " + p for p in shown)]
    if more:
        lines.append(f"  ... and {more} more")
    raise CompilerBug("\n".join(lines), stage)


# -- generic node checks -----------------------------------------------------------------------


def _check_inputs(report: _Report, node: Node) -> bool:
    """Input references and edges; False when they are too broken to check anything else."""
    g = report.graph
    ok = True
    for i, v in enumerate(node.inputs):
        if v.node not in g:
            report.add(node, f"input {i} reads {v.node}, which does not exist")
            ok = False
            continue
        producer = g.node(v.node)
        if not 0 <= v.index < len(producer.types):
            report.add(
                node,
                f"input {i} reads output {v.index} of {v.node}, which has "
                f"{len(producer.types)} output(s)",
            )
            ok = False
    if ok:
        edges = g.producer_ids(node.id)
        if edges != {v.node for v in node.inputs}:
            report.add(node, f"edges from {sorted(edges)} do not match its inputs")
            ok = False
    for t in node.types:
        if not isinstance(t, TensorType) or not all(
            (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
            or (isinstance(d, str) and d)
            for d in t.shape
        ):
            report.add(node, f"malformed type {t!r}")
            ok = False
    return ok


def _check_unique(report: _Report, nodes: list[Node], op: str, what: str) -> None:
    seen: dict[str, str] = {}
    for n in nodes:
        if n.op != op:
            continue
        name = n.attr("name")
        if name in seen:
            report.add(n, f"duplicate {what} '{name}' (also {seen[name]})")
        else:
            seen[name] = n.id


def _shape(report: _Report, node: Node, n_inputs: int, n_types: int) -> bool:
    if len(node.inputs) != n_inputs:
        report.add(node, f"has {len(node.inputs)} input(s), expected {n_inputs}")
        return False
    if len(node.types) != n_types:
        report.add(node, f"has {len(node.types)} type(s), expected {n_types}")
        return False
    return True


def _named(report: _Report, node: Node) -> None:
    name = node.attr("name")
    if not isinstance(name, str) or not name:
        report.add(node, f"needs a non-empty 'name' attr, got {name!r}")


# -- special ops -------------------------------------------------------------------------------


def _check_input(report: _Report, node: Node) -> None:
    if _shape(report, node, 0, 1):
        _named(report, node)


def _check_param(report: _Report, node: Node) -> None:
    if not _shape(report, node, 0, 1):
        return
    _named(report, node)
    if not isinstance(node.attr("trainable"), bool):
        report.add(node, "needs a boolean 'trainable' attr")
    if node.attr("init") is None:
        report.add(node, "needs an 'init' attr")


def _check_const(report: _Report, node: Node) -> None:
    if not _shape(report, node, 0, 1):
        return
    t, value = node.types[0], node.attr("value")
    if t.shape != ():
        report.add(node, f"a const must be 0-d, got {t}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        report.add(node, f"const value must be an int or a float, got {value!r}")
    elif t.dtype is DType.FLOAT and not isinstance(value, float):
        report.add(node, f"a float const holds the int {value!r}")
    elif t.dtype.is_int and not isinstance(value, int):
        report.add(node, f"an {t.dtype} const holds the float {value!r}")
    elif not (t.dtype is DType.FLOAT or t.dtype.is_int):
        report.add(node, f"a const must be float or integer, got {t.dtype}")


def _check_output(report: _Report, node: Node) -> None:
    if not _shape(report, node, 1, 0):
        return
    _named(report, node)
    kind = node.attr("kind")
    if kind not in ("output", "loss"):
        report.add(node, f"kind must be 'output' or 'loss', got {kind!r}")
    elif kind == "loss":
        w = node.attr("weight")
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            report.add(node, f"a loss needs a numeric 'weight' attr, got {w!r}")
        if report.graph.type_of(node.inputs[0]).shape != ():
            report.add(node, "a loss must read a 0-d value")


def _check_aux_node(report: _Report, node: Node) -> None:
    if node.types != (TensorType(DType.FLOAT, ()),):
        report.add(node, f"aux_sum must have the type float[], got {node.types}")


_SPECIAL_RULES: dict[str, Callable[[_Report, Node], None]] = {
    "input": _check_input,
    "param": _check_param,
    "const": _check_const,
    "output": _check_output,
    "aux_sum": _check_aux_node,
}
assert set(_SPECIAL_RULES) == set(SPECIAL_OPS)


# -- op instances ------------------------------------------------------------------------------

_PORT_DTYPES: dict[str, Callable[[DType], bool]] = {
    "float": lambda d: d is DType.FLOAT,
    "int": lambda d: d.is_int,
    "bool": lambda d: d is DType.BOOL,
    "any": lambda d: True,
}


def _check_structure(report: _Report, node: Node) -> tuple[Any, int, bool] | None:
    """The structural checks of `_check_instance`; (instance spec, number of ports, tied) when
    the parameters can be checked, else None."""
    g, spec = report.graph, OPS[node.op]
    if len(node.port_names) != len(node.inputs):
        report.add(node, f"port_names {node.port_names} do not name its {len(node.inputs)} inputs")
        return None
    port_order = [p.name for p in spec.inputs]
    n_ports = 0
    while n_ports < len(node.port_names) and node.port_names[n_ports] in port_order:
        n_ports += 1
    given = list(node.port_names[:n_ports])
    if given != [p for p in port_order if p in given] or len(set(given)) != len(given):
        report.add(node, f"ports {given} are not in op-table order {port_order}")
        return None
    missing = [p.name for p in spec.inputs if not p.optional and p.name not in given]
    if missing:
        report.add(node, f"missing port(s) {missing}")
        return None
    hyper_order = [h.name for h in spec.hypers]
    if [k for k, _ in node.attrs] != hyper_order:
        report.add(
            node,
            f"attrs {[k for k, _ in node.attrs]} must be the hyperparameters "
            f"{hyper_order} in op-table order",
        )
        return None
    types: dict[str, TensorType] = {}
    for port_name, v in zip(given, node.inputs):
        producer, t = g.node(v.node), g.type_of(v)
        port = spec.port(port_name)
        types[port_name] = t
        if producer.op == "param":
            report.add(node, f"port '{port_name}' reads the parameter {v.node}")
        elif not _PORT_DTYPES[port.dtype](t.dtype):
            report.add(node, f"port '{port_name}' wants {port.dtype}, got {t}")
        elif (port.rank is not None and t.rank != port.rank) or t.rank < port.min_rank:
            report.add(node, f"port '{port_name}' has the wrong rank: {t}")
    hp = rule_hparams(node)
    try:
        inst = instantiate(node.op, types, hp)
    except ShapeFailure as e:
        report.add(node, f"its shape rule rejects the inputs: {e.message}")
        return None
    if tuple(inst.outputs) != node.types:
        report.add(
            node, f"types {_fmt(node.types)} differ from the shape rule's {_fmt(inst.outputs)}"
        )
    param_names = [p.name for p in inst.params]
    tied = bool(hp.get("tie"))
    if tied:
        param_names.append("weight")  # the tied embed's weight, read (not owned) last
    if list(node.port_names[n_ports:]) != param_names:
        report.add(
            node,
            f"parameters {list(node.port_names[n_ports:])} differ from the op "
            f"table's {param_names}",
        )
        return None
    return inst, n_ports, tied


def _check_instance(
    report: _Report, node: Node, owners: dict[str, list[str]], memo: dict | None = None
) -> None:
    """An op instance: its structure (ports, attrs, types, parameter names), which depends only
    on its op, port names, attrs and the types it reads and writes, so it is checked once per
    distinct instance shape (`memo`: a model of 10,000 identical layers checks one layer's);
    then what is its own: its parameters' names, types and initialisers, and their owners."""
    g = report.graph
    key = _instance_key(g, node) if memo is not None else None
    found = memo.get(key) if key is not None else None
    if found is None:
        before = len(report.problems)
        found = _check_structure(report, node)
        if found is None:
            return
        if key is not None and len(report.problems) == before:
            memo[key] = found  # only a clean result is shared (messages name the node's inputs)
    inst, n_ports, tied = found
    for ps, v in zip(inst.params, node.inputs[n_ports:]):
        _check_owned_param(report, node, ps, g.node(v.node), v.index)
        owners.setdefault(v.node, []).append(node.id)
    if tied:
        hp = rule_hparams(node)
        _check_tie(report, node, hp)
        weight = g.node(node.inputs[-1].node)
        if weight.op != "param" or weight.attr("name") != f"{hp['tie']}.weight":
            report.add(
                node,
                f"a linear tied to {hp['tie']!r} must read the param "
                f"'{hp['tie']}.weight' last, reads {weight.id} ({weight.op})",
            )
        else:
            owners.setdefault("tied:" + weight.id, []).append(node.id)


def _instance_key(g: Graph, node: Node) -> tuple | None:
    """What the structural checks of an op instance read; None when an attr is unhashable."""
    try:
        key = (
            node.op,
            node.port_names,
            tuple((k, exact_key(v)) for k, v in node.attrs),
            tuple((g.type_of(v), g.node(v.node).op == "param") for v in node.inputs),
            node.types,
        )
        hash(key)
    except TypeError:
        return None
    return key


def _check_owned_param(report: _Report, node: Node, ps: Any, param: Node, index: int) -> None:
    if param.op != "param" or index != 0:
        report.add(node, f"parameter '{ps.name}' reads {param.id} ({param.op}), not a param node")
        return
    expected = qualified(node.scope, ps.name)
    if param.attr("name") != expected:
        report.add(
            node, f"parameter '{ps.name}' is named {param.attr('name')!r}, expected {expected!r}"
        )
    if param.types != (TensorType(ps.dtype, ps.shape),):
        report.add(
            node,
            f"parameter '{ps.name}' has type {_fmt(param.types)}, expected "
            f"{TensorType(ps.dtype, ps.shape)}",
        )
    init = ps.init
    if node.op == "embed" and ps.name == "weight" and _is_tied(report.graph, node.scope):
        init = tied_embed_init(ps.shape[1])  # the lowering's rule for a weight shared with a head
    if param.attr("init") != init or param.attr("trainable") != ps.trainable:
        report.add(
            node,
            f"parameter '{ps.name}' has init {param.attr('init')} trainable="
            f"{param.attr('trainable')}, expected {init} trainable={ps.trainable}",
        )


def _is_tied(g: Graph, embed_scope: str) -> bool:
    return any(n.attr("tie") == embed_scope for n in g.nodes_of("linear"))


def _check_tie(report: _Report, node: Node, hp: dict[str, Any]) -> None:
    """A tied linear reuses the weight of the `embed` instance named by `tie`."""
    target = [n for n in report.graph.nodes_of("embed") if n.scope == hp["tie"]]
    if len(target) != 1:
        report.add(node, f"tie={hp['tie']!r} names {len(target)} embed instances, expected one")
        return
    emb = target[0].attr_dict
    d_in = report.graph.type_of(node.inputs[0]).shape[-1]
    if (emb["vocab"], emb["dim"]) != (hp["out"], d_in):
        report.add(
            node,
            f"tied to an embedding [{emb['vocab']}, {emb['dim']}] but maps {d_in} -> {hp['out']}",
        )


def _check_owners(report: _Report, nodes: list[Node], owners: dict[str, list[str]]) -> None:
    for n in nodes:
        if n.op != "param":
            continue
        own = owners.get(n.id, [])
        if len(own) != 1:
            report.add(n, f"a parameter must have exactly one owning op, has {own or 'none'}")
        readers = report.graph.user_ids(n.id) - set(owners.get("tied:" + n.id, []))
        if readers - set(own):
            report.add(n, f"read by {sorted(readers - set(own))}, which do not own it")


def _check_aux(report: _Report, nodes: list[Node]) -> None:
    aux = [n for n in nodes if n.op == "aux_sum"]
    if len(aux) != 1:
        report.add(None, f"expected exactly one aux_sum node, found {len(aux)}")
        return
    losses = {
        n.out(i) for n in nodes if n.op in OPS for i in OPS[n.op].loss_outputs if i < len(n.types)
    }
    fed = set(aux[0].inputs)
    for v in sorted(fed - losses, key=str):
        report.add(aux[0], f"reads {v.node}.{v.index}, which is not an aux-loss output")
    for v in sorted(losses - fed, key=lambda v: (v.node, v.index)):
        report.add(aux[0], f"does not read the aux loss {v.node}.{v.index}")


def _fmt(types: Any) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"
