"""Pictures of IR graphs: Graphviz DOT, SVG (through Graphviz) and Mermaid.

`to_dot(graph, title=None, groups=None) -> str`, `to_mermaid(graph, ...) -> str` and
`to_svg(graph, ...) -> bytes`; `groups` maps IR node ids to fused-group names. All output is
deterministic: node ids `n0, n1, ...` follow the canonical IR print order.
"""

from .dot import to_dot
from .mermaid import to_mermaid
from .render import GraphvizError, GraphvizNotFound, dot_to_svg, find_renderer, to_svg

__all__ = [
    "GraphvizError",
    "GraphvizNotFound",
    "dot_to_svg",
    "find_renderer",
    "to_dot",
    "to_mermaid",
    "to_svg",
]
