"""Graphviz DOT for an IR graph (`sparkc graph --format dot`).

Consumes a `Graph`, an optional title and an optional fused-group map (`node id -> group name`);
produces DOT text that is byte-identical for the same graph: node ids `n0, n1, ...` follow the
canonical print order, clusters and attributes are emitted in a fixed order.

Look: top-to-bottom flow; the model's name and hyperparameters as a title node above the
inputs (a node, so the layout makes room for it: a graph label wider than the drawing was
clipped); op boxes coloured by category (sequence mixers violet, blocks amber, reductions blue,
elementwise grey) with the op name in bold, the shape below and the instance name and
parameter count in small grey, each label a one-column table so lines never overlap; inputs and
outputs as house shapes; loss terms and the aux-loss sum in orange with dashed aux-loss edges;
one rounded cluster per block instance. Every fused group, a single op included, is a dashed
frame labelled with its name and kernel kind, in a colour of its own (`group_colors`), and its
nodes get a border of that colour.

Text is laid out with the metrics of DejaVu Sans (`FONT`), the widest of the common sans fonts
that Graphviz and graphviz-pure both measure, so labels also fit when a viewer substitutes a
narrower font (Arial, Helvetica); `render.py` lists those as fallbacks in the SVG.
"""

from __future__ import annotations

import colorsys
import html

from ..ir.graph import Graph
from .view import Cluster, View, VNode, build_view

FONT = "DejaVu Sans"  # see the module docstring
TITLE_WIDTH = 60  # characters per line of the title's hyperparameter list

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


def group_colors(n: int) -> list[str]:
    """`n` distinct border colours: hues a golden angle apart (no two groups share one, however
    many there are), dark enough for a 2-pixel border on white."""
    out = []
    for i in range(n):
        hue = (i * 0.381966) % 1.0
        light = (0.38, 0.30, 0.45)[i % 3]
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return out


EDGE_STYLE: dict[str, list[str]] = {
    "data": [],
    "aux": ["style=dashed", 'color="#ea580c"', 'fontcolor="#ea580c"'],
}

CLUSTER_FILLS = ("#f8fafc", "#f1f5f9")  # alternate by depth so nested blocks stay visible


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(v: VNode) -> str:
    e = html.escape
    rows = [f"<B>{e(v.title)}</B>"]
    rows += [f'<FONT POINT-SIZE="10">{e(line)}</FONT>' for line in v.lines]
    if v.note:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="#6b7280">{e(v.note)}</FONT>')
    cells = "".join(f"<TR><TD>{r}</TD></TR>" for r in rows)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{cells}</TABLE>>'


def _title_label(title: str) -> str:
    """The model name in bold over its hyperparameters, wrapped at `TITLE_WIDTH` characters."""
    e = html.escape
    name, sep, rest = title.partition("(")
    if not (sep and rest.endswith(")")):
        return f"<<B>{e(title)}</B>>"
    lines: list[str] = []
    for item in rest[:-1].split(", "):
        if lines and len(lines[-1]) + len(item) + 2 <= TITLE_WIDTH:
            lines[-1] += ", " + item
        else:
            lines.append(item)
    rows = [f"<B>{e(name)}</B>"]
    rows += [
        f'<FONT POINT-SIZE="11">{e(line)}{"," if i < len(lines) - 1 else ""}</FONT>'
        for i, line in enumerate(lines)
    ]
    cells = "".join(f"<TR><TD>{r}</TD></TR>" for r in rows)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{cells}</TABLE>>'


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


def _group_frames(view: View, cluster: Cluster) -> dict[str, list[str]]:
    """Fused groups whose every node lies directly in `cluster`: drawn as a frame inside it.
    (`build_view` moves a group that spans blocks into one block, so every group has a frame.)"""
    frames: dict[str, list[str]] = {}
    inside = set(cluster.nodes)
    for g in view.groups:
        vids = [v.vid for v in view.nodes if v.group == g]
        if vids and all(vid in inside for vid in vids):
            frames[g] = vids
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
    frames = _group_frames(view, c)
    framed = {vid for vids in frames.values() for vid in vids}
    for vid in c.nodes:
        if vid not in framed:
            out.append(pad + _node_line(nodes[vid], group_color))
    for g, vids in frames.items():
        out.append(f"{pad}subgraph cluster_{counter[0]} {{")
        counter[0] += 1
        out.append(
            f'{pad}  label={_q(view.group_labels.get(g, g))}; style="rounded,dashed"; '
            f'color="{group_color[g]}"; fontcolor="{group_color[g]}"; fontsize=9; penwidth=1.5; '
            "labeljust=l;"  # left: a vertical edge through the frame's middle misses it
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
    group_color = dict(zip(view.groups, group_colors(len(view.groups))))
    out = [
        "digraph sparkc {",
        (
            f"  graph [rankdir=TB, fontname={_q(FONT)}, fontsize=13, nodesep=0.3, ranksep=0.32, "
            f"newrank=true, pad=0.2];"
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
    # The title: a plain node above the first input (an invisible edge holds it there; the other
    # inputs stay free to sit beside their readers, `targets` near the loss).
    out.append(
        f'  title [shape=plaintext, style="", fontsize=13, label={_title_label(view.title)}];'
    )
    _emit_cluster(out, view, view.root, nodes, group_color, 0, [0])
    first = next((v for v in view.nodes if v.kind == "input"), None)
    if first is not None:
        out.append(f"  title -> {first.vid} [style=invis];")
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
