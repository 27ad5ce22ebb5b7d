"""A drawing-neutral view of an IR graph, shared by the DOT and Mermaid writers.

Consumes a `Graph` (and optionally a fused-group map `node id -> group name`); produces a
`View`: the nodes to draw with stable ids `n0, n1, ...` (in canonical print order), their label
lines, the block cluster each belongs to, the edges, and the tree of block clusters.

What is drawn, and why (a picture for a user, not a dump):
- op instances as boxes "op / shape / instance name"; their parameters are folded into the
  label as a count ("4 params (65.5K)") instead of one box per weight;
- constants are folded into their reader's label (`b = 0.5`);
- inputs, outputs, loss terms and the aux-loss sum have their own kinds (shapes in DOT);
- block clusters come from instance paths: `h.0.h_attention` lies in block `h.0`, inside `h`;
- a fused group whose nodes lie in different blocks (a layer's last residual `add` fused with
  the next layer's norm) is drawn in the innermost block that holds all of them, so every group
  can be framed as one cluster; `group_labels` names each group with its kernel kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ir.graph import SPECIAL_OPS, Graph, Node
from ..ir.ops import OPS
from ..ir.printer import format_value, print_order


@dataclass
class VNode:
    vid: str  # n0, n1, ... in print order of the drawn nodes
    node_id: str  # the IR node id (for fused groups and tooltips)
    kind: str  # input | output | loss | aux | op
    title: str
    lines: list[str]  # secondary label lines (shapes, operands)
    note: str = ""  # the dimmest line: instance name, parameter count
    category: str = ""  # the op table's category, for colours
    cluster: str = ""  # block path, "" for the top level
    group: str = ""  # fused group name, "" when none


@dataclass(frozen=True)
class VEdge:
    src: str
    dst: str
    label: str = ""
    kind: str = "data"  # data | aux (an aux loss into aux_sum)


@dataclass
class Cluster:
    path: str
    label: str
    nodes: list[str] = field(default_factory=list)  # vids directly inside
    children: list[Cluster] = field(default_factory=list)


@dataclass
class View:
    title: str
    nodes: list[VNode]
    edges: list[VEdge]
    root: Cluster  # path "": the top level
    groups: list[str]  # fused group names in first-appearance order
    group_labels: dict[str, str] = field(default_factory=dict)  # group -> "k3 attention"


def _natural(path: str) -> list[tuple[int, int | str]]:
    """Sort key putting `layers.10` after `layers.9`."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.]", path)]


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def human_count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _block_of(scope: str, blocks: set[str]) -> str:
    if scope in blocks:  # a node scoped by its block itself (not an instance in it)
        return scope
    for p in reversed(_prefixes(scope)):
        if p in blocks:
            return p
    return ""


def _shape_lines(node: Node) -> list[str]:
    if len(node.types) == 1:
        return [_fmt_type(node.types[0])]
    names = OPS[node.op].output_names if node.op in OPS else ()
    return [
        f"{names[i] if i < len(names) else i}: {_fmt_type(t)}" for i, t in enumerate(node.types)
    ]


def _fmt_type(t) -> str:
    if not t.shape:
        return "scalar" if t.dtype.value == "float" else f"{t.dtype.value} scalar"
    shape = "[" + ",".join(str(d) for d in t.shape) + "]"
    return shape if t.dtype.value == "float" else f"{t.dtype.value}{shape}"


def build_view(
    graph: Graph, title: str | None = None, groups: dict[str, str] | None = None
) -> View:
    groups = groups or {}
    order = print_order(graph)
    instance_scopes = [n.scope for n in order if n.op in OPS and n.scope]
    blocks = {p for s in instance_scopes for p in _prefixes(s)}

    vid: dict[str, str] = {}
    vnodes: list[VNode] = []
    for node in order:
        if node.op in ("param", "const") or (node.op == "aux_sum" and not node.inputs):
            continue  # folded into their reader's label; an empty aux-loss sum says nothing
        v = _make_vnode(graph, node, f"n{len(vnodes)}", blocks)
        v.group = groups.get(node.id, "")
        vid[node.id] = v.vid
        vnodes.append(v)

    edges: list[VEdge] = []
    for node in order:
        if node.id not in vid:
            continue
        for v in node.inputs:
            src = graph.node(v.node)
            if src.id not in vid:
                continue
            label = ""
            if len(src.types) > 1 and src.op in OPS:
                label = OPS[src.op].output_names[v.index]
            kind = "aux" if node.op == "aux_sum" else "data"
            edges.append(VEdge(vid[src.id], vid[node.id], label, kind))

    _hoist_spanning_groups(vnodes)
    root = _cluster_tree(vnodes)
    seen: list[str] = []
    for v in vnodes:
        if v.group and v.group not in seen:
            seen.append(v.group)
    hyper = ", ".join(f"{k}={format_value(x)}" for k, x in graph.hyper)
    title = title if title is not None else f"{graph.name}({hyper})"
    return View(title, vnodes, edges, root, seen, _group_labels(graph, seen))


def _group_labels(graph: Graph, groups: list[str]) -> dict[str, str]:
    """`k3 attention` for a group of the graph's fusion plan, else the group name itself."""
    plan = graph.meta.get("fusion") if hasattr(graph, "meta") else None
    kinds = {g.id: g.kind for g in getattr(plan, "groups", ())}
    return {g: f"{g} {kinds[g]}" if g in kinds else g for g in groups}


def _common_block(paths: list[str]) -> str:
    """The innermost block path that contains every path ("" for the top level)."""
    parts = [p.split(".") if p else [] for p in paths]
    common: list[str] = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return ".".join(common)


def _hoist_spanning_groups(vnodes: list[VNode]) -> None:
    """Move the nodes of a group that spans blocks into the innermost block holding them all."""
    members: dict[str, list[VNode]] = {}
    for v in vnodes:
        if v.group:
            members.setdefault(v.group, []).append(v)
    for vs in members.values():
        clusters = sorted({v.cluster for v in vs})
        if len(clusters) > 1:
            common = _common_block(clusters)
            for v in vs:
                v.cluster = common


def _make_vnode(graph: Graph, node: Node, vid: str, blocks: set[str]) -> VNode:
    if node.op == "input":
        return VNode(vid, node.id, "input", node.attr("name"), [_fmt_type(node.types[0])])
    if node.op == "output":
        kind = node.attr("kind", "output")
        lines = []
        if kind == "loss" and node.attr("weight") != 1.0:
            lines.append(f"weight {format_value(node.attr('weight'))}")
        title = f"loss {node.attr('name')}" if kind == "loss" else node.attr("name")
        return VNode(vid, node.id, kind, title, lines)
    if node.op == "aux_sum":
        return VNode(vid, node.id, "aux", "aux_loss", [f"sum of {len(node.inputs)}"])
    assert node.op not in SPECIAL_OPS
    lines = _shape_lines(node)
    operands = []
    for port, v in zip(node.port_names, node.inputs):
        src = graph.node(v.node)
        if src.op == "const":
            operands.append(f"{port} = {format_value(src.attr('value'))}")
    lines += operands
    if node.attr("tie"):  # a label line, not an edge: a tie edge would cross the whole picture
        lines.append(f"weight tied to {node.attr('tie')}")
    params = [graph.node(v.node) for v in node.inputs if graph.node(v.node).op == "param"]
    note_parts = []
    cluster = _block_of(node.scope, blocks)
    # A node scoped by its block itself (a block's `return a + b`) has no instance name.
    name = node.scope.rsplit(".", 1)[-1] if node.scope and node.scope != cluster else ""
    if name and name != node.op:
        note_parts.append(name)
    if params:
        numel = sum(_numel(p) for p in params)
        plural = "s" if len(params) > 1 else ""
        note_parts.append(f"{len(params)} param{plural} ({human_count(numel)})")
    spec = OPS.get(node.op)
    return VNode(
        vid,
        node.id,
        "op",
        node.op,
        lines,
        ", ".join(note_parts),
        spec.category if spec else "",
        cluster,
    )


def _numel(param: Node) -> int:
    n = 1
    for d in param.types[0].shape:
        n *= d if isinstance(d, int) else 1
    return n


def _cluster_tree(vnodes: list[VNode]) -> Cluster:
    paths = {v.cluster for v in vnodes if v.cluster}
    paths |= {p for c in list(paths) for p in _prefixes(c)}
    by_path = {"": Cluster("", "")}
    for p in sorted(paths, key=_natural):
        by_path[p] = Cluster(p, p)
    for p in sorted(paths, key=_natural):
        by_path[_parent(p)].children.append(by_path[p])
    for v in vnodes:
        by_path[v.cluster].nodes.append(v.vid)
    for c in by_path.values():
        if len(c.children) > 1 and all(ch.path.rsplit(".", 1)[-1].isdigit() for ch in c.children):
            c.label = f"{c.path} (repeat x{len(c.children)})"
    _collapse(by_path[""])
    return by_path[""]


def _collapse(c: Cluster) -> None:
    """A cluster holding nothing but one sub-cluster adds a frame and no information: drop it."""
    for i, child in enumerate(c.children):
        while not child.nodes and len(child.children) == 1:
            child = child.children[0]
        c.children[i] = child
        _collapse(child)
