"""Mermaid flowchart for an IR graph (`sparkc graph --format mermaid`, for Markdown pages).

Consumes a `Graph` and optional fused groups; produces `flowchart TD` text with the same node
ids (`n0, n1, ...`), labels and block subgraphs as the DOT drawing, deterministic byte for byte.
Inputs are stadiums, outputs subroutine boxes, losses hexagons, the aux-loss sum a circle;
aux-loss edges are dotted; classes colour ops by category and fused groups by a stroke.
"""

from __future__ import annotations

from ..ir.graph import Graph
from .dot import CATEGORY_FILL, group_colors
from .view import Cluster, View, VNode, build_view

SHAPES: dict[str, tuple[str, str]] = {
    "input": ('(["', '"])'),
    "output": ('[["', '"]]'),
    "loss": ('{{"', '"}}'),
    "aux": ('(("', '"))'),
    "op": ('["', '"]'),
}

ARROWS: dict[str, str] = {"data": "-->", "aux": "-.->"}

KIND_CLASSES: dict[str, str] = {
    "input": "fill:#dbeafe,stroke:#3b82f6",
    "output": "fill:#dcfce7,stroke:#16a34a",
    "loss": "fill:#ffedd5,stroke:#ea580c",
    "aux": "fill:#ffedd5,stroke:#ea580c",
}


def _esc(s: str) -> str:
    # Mermaid entity codes: quotes end the label, angle brackets would be read as HTML.
    return s.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _label(v: VNode) -> str:
    parts = [f"<b>{_esc(v.title)}</b>", *(_esc(line) for line in v.lines)]
    if v.note:
        parts.append(f"<small>{_esc(v.note)}</small>")
    if v.group:
        parts.append(f"<small>fused: {_esc(v.group)}</small>")
    return "<br/>".join(parts)


def _emit(
    out: list[str], c: Cluster, nodes: dict[str, VNode], depth: int, counter: list[int]
) -> None:
    pad = "  " * (depth + 1)
    for vid in c.nodes:
        v = nodes[vid]
        left, right = SHAPES[v.kind]
        out.append(f"{pad}{vid}{left}{_label(v)}{right}")
    for child in c.children:
        out.append(f'{pad}subgraph c{counter[0]}["{_esc(child.label)}"]')
        counter[0] += 1
        out.append(f"{pad}  direction TB")
        _emit(out, child, nodes, depth + 1, counter)
        out.append(f"{pad}end")


def view_to_mermaid(view: View) -> str:
    nodes = {v.vid: v for v in view.nodes}
    out = ["---", f"title: {_esc(view.title)}", "---", "flowchart TD"]
    _emit(out, view.root, nodes, 0, [0])
    for e in view.edges:
        arrow = ARROWS[e.kind]
        label = f'|"{_esc(e.label)}"|' if e.label else ""
        out.append(f"  {e.src} {arrow}{label} {e.dst}")
    classes: dict[str, list[str]] = {}
    for v in view.nodes:
        cls = v.kind if v.kind != "op" else f"cat_{v.category or 'primitive'}"
        classes.setdefault(cls, []).append(v.vid)
    for cls in sorted(classes):
        style = (
            KIND_CLASSES.get(cls) or f"fill:{CATEGORY_FILL.get(cls[4:], '#ffffff')},stroke:#64748b"
        )
        out.append(f"  classDef {cls} {style}")
        out.append(f"  class {','.join(classes[cls])} {cls}")
    for i, (g, color) in enumerate(zip(view.groups, group_colors(len(view.groups)))):
        members = [v.vid for v in view.nodes if v.group == g]
        out.append(f"  classDef fused{i} stroke:{color},stroke-width:3px")
        out.append(f"  class {','.join(members)} fused{i}")
    return "\n".join(out) + "\n"


def to_mermaid(graph: Graph, title: str | None = None, groups: dict[str, str] | None = None) -> str:
    """Mermaid `flowchart TD` text for `graph`."""
    return view_to_mermaid(build_view(graph, title, groups))
