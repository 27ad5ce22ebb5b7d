"""Graphviz DOT for an IR graph (`sparkc graph --format dot`).

Consumes a `Graph`, an optional title and an optional fused-group map (`node id -> group name`);
produces DOT text that is byte-identical for the same graph: node ids `n0, n1, ...` follow the
canonical print order, clusters and attributes are emitted in a fixed order.

Look: top-to-bottom flow; op boxes coloured by category (sequence mixers violet, blocks amber,
reductions blue, elementwise grey) with the op name in bold, the shape below and the instance
name and parameter count in small grey; inputs and outputs as house shapes; loss terms and the
aux-loss sum in orange with dashed aux-loss edges; one rounded cluster per block instance.
Fused groups get a coloured border and, when all their nodes share a block, a dashed frame.
"""

from __future__ import annotations

import html

from ..ir.graph import Graph
from .view import Cluster, View, VNode, build_view

FONT = "Arial"  # metric-compatible fonts everywhere (Liberation Sans, Arimo), so labels fit

# Fill colours by op-table category.
CATEGORY_FILL: dict[str, str] = {
    "mixing": "#ede9fe",
    "block": "#fef3c7",
    "reduction": "#e0f2fe",
    "elementwise": "#f3f4f6",
    "arith": "#f3f4f6",
    "primitive": "#ffffff",
    "config": "#ffffff",
}

# Node attributes by view kind.
KIND_STYLE: dict[str, str] = {
    "input": 'shape=invhouse, fillcolor="#dbeafe", color="#3b82f6"',
    "output": 'shape=house, fillcolor="#dcfce7", color="#16a34a"',
    "loss": 'shape=house, fillcolor="#ffedd5", color="#ea580c"',
    "aux": 'shape=ellipse, style="filled", fillcolor="#ffedd5", color="#ea580c"',
    "op": "",
}

GROUP_COLORS = (
    "#dc2626",
    "#2563eb",
    "#059669",
    "#d97706",
    "#7c3aed",
    "#db2777",
    "#0891b2",
    "#65a30d",
)

EDGE_STYLE: dict[str, list[str]] = {
    "data": [],
    "aux": ["style=dashed", 'color="#ea580c"', 'fontcolor="#ea580c"'],
}

CLUSTER_FILLS = ("#f8fafc", "#f1f5f9")  # alternate by depth so nested blocks stay visible


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(v: VNode) -> str:
    e = html.escape
    parts = [f"<B>{e(v.title)}</B>"]
    parts += [f'<FONT POINT-SIZE="10">{e(line)}</FONT>' for line in v.lines]
    if v.note:
        parts.append(f'<FONT POINT-SIZE="9" COLOR="#6b7280">{e(v.note)}</FONT>')
    if v.group:
        parts.append(f'<FONT POINT-SIZE="9" COLOR="#374151">fused: {e(v.group)}</FONT>')
    return "<" + "<BR/>".join(parts) + ">"


def _node_line(v: VNode, group_color: dict[str, str]) -> str:
    attrs = [f"label={_label(v)}"]
    style = KIND_STYLE[v.kind]
    if style:
        attrs.append(style)
    else:
        attrs.append(f'fillcolor="{CATEGORY_FILL.get(v.category, "#ffffff")}"')
    if v.group:
        attrs.append(f'color="{group_color[v.group]}", penwidth=2')
    attrs.append(f"tooltip={_q(v.node_id)}")
    return f"{v.vid} [{', '.join(attrs)}];"


def _group_frames(view: View, cluster: Cluster, nodes: dict[str, VNode]) -> dict[str, list[str]]:
    """Fused groups whose every node lies directly in `cluster`: drawn as a frame inside it."""
    frames: dict[str, list[str]] = {}
    members: dict[str, list[VNode]] = {}
    for v in view.nodes:
        if v.group:
            members.setdefault(v.group, []).append(v)
    inside = set(cluster.nodes)
    for g in view.groups:
        vs = members[g]
        if len(vs) > 1 and all(v.vid in inside for v in vs):
            frames[g] = [v.vid for v in vs]
    return frames


def _emit_cluster(
    out: list[str],
    view: View,
    c: Cluster,
    nodes: dict[str, VNode],
    group_color: dict[str, str],
    depth: int,
    counter: list[int],
) -> None:
    pad = "  " * (depth + 1)
    frames = _group_frames(view, c, nodes)
    framed = {vid for vids in frames.values() for vid in vids}
    for vid in c.nodes:
        if vid not in framed:
            out.append(pad + _node_line(nodes[vid], group_color))
    for g, vids in frames.items():
        out.append(f"{pad}subgraph cluster_{counter[0]} {{")
        counter[0] += 1
        out.append(
            f'{pad}  label={_q("fused: " + g)}; style="rounded,dashed"; '
            f'color="{group_color[g]}"; fontcolor="{group_color[g]}"; fontsize=9;'
        )
        out += [pad + "  " + _node_line(nodes[vid], group_color) for vid in vids]
        out.append(pad + "}")
    for child in c.children:
        out.append(f"{pad}subgraph cluster_{counter[0]} {{")
        counter[0] += 1
        fill = CLUSTER_FILLS[depth % len(CLUSTER_FILLS)]
        out.append(
            f'{pad}  label={_q(child.label)}; style="rounded,filled"; fillcolor="{fill}"; '
            f'color="#94a3b8"; fontcolor="#334155"; labeljust=l; fontsize=11;'
        )
        _emit_cluster(out, view, child, nodes, group_color, depth + 1, counter)
        out.append(pad + "}")


def view_to_dot(view: View) -> str:
    nodes = {v.vid: v for v in view.nodes}
    group_color = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(view.groups)}
    out = [
        "digraph sparkc {",
        (
            f"  graph [rankdir=TB, fontname={_q(FONT)}, fontsize=13, nodesep=0.3, ranksep=0.32, "
            f"labelloc=t, label={_q(view.title)}, newrank=true];"
        ),
        (
            f'  node [shape=box, style="rounded,filled", fontname={_q(FONT)}, fontsize=11, '
            f'fillcolor="#ffffff", color="#64748b", margin="0.14,0.05", height=0.3];'
        ),
        (
            f'  edge [color="#64748b", arrowsize=0.6, fontname={_q(FONT)}, fontsize=9, '
            f'fontcolor="#475569"];'
        ),
    ]
    _emit_cluster(out, view, view.root, nodes, group_color, 0, [0])
    for e in view.edges:
        attrs = []
        if e.label:
            attrs.append(f"label={_q(' ' + e.label)}")
        attrs += EDGE_STYLE[e.kind]
        out.append(f"  {e.src} -> {e.dst}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    out.append("}")
    return "\n".join(out) + "\n"


def to_dot(graph: Graph, title: str | None = None, groups: dict[str, str] | None = None) -> str:
    """DOT text for `graph`; `groups` maps IR node ids to fused-group names (drawn framed)."""
    return view_to_dot(build_view(graph, title, groups))
