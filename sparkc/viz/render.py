"""Render DOT to SVG through a Graphviz executable (`sparkc graph --format svg`).

Consumes a `Graph` (or DOT text); produces SVG bytes. The renderer is the system Graphviz `dot`
when it is on PATH, otherwise `graphviz-pure` (a self-contained Rust port of Graphviz installed
by `pip install graphviz-pure`) from PATH or from the running interpreter's bin/ directory (a
virtualenv that is not activated). Neither found: `GraphvizNotFound`, a usage error whose
message tells the user what to install or to use `--format dot`; the CLI reports it (exit 2).
A renderer that fails or hangs raises `GraphvizError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..ir.graph import Graph
from ..pipeline import UsageError
from .dot import to_dot

# Tried in order: the reference implementation first, the pure port as the fallback.
RENDERERS = ("dot", "graphviz-pure")

NOT_FOUND = (
    "Graphviz 'dot' not found; install graphviz (apt-get install graphviz) or use --format dot"
)


class GraphvizNotFound(UsageError):
    """No Graphviz executable could be found."""

    def __init__(self, message: str = NOT_FOUND):
        super().__init__(message)


class GraphvizError(RuntimeError):
    """The Graphviz executable failed or timed out on our DOT text."""


def find_renderer(program: str | None = None) -> str | None:
    """Path of the executable to use: `program` if given, else the first of `RENDERERS`."""
    names = [program] if program else list(RENDERERS)
    bindir = Path(sys.executable).parent
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        local = bindir / name
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
    return None


def dot_to_svg(dot: str, program: str | None = None, timeout: float = 60.0) -> bytes:
    exe = find_renderer(program)
    if exe is None:
        raise GraphvizNotFound()
    try:
        proc = subprocess.run(
            [exe, "-Tsvg"],
            input=dot.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"{exe} did not finish within {timeout:g} s") from None
    except OSError as err:
        raise GraphvizError(f"could not run {exe}: {err}") from None
    if proc.returncode != 0 or not proc.stdout.lstrip().startswith(b"<"):
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"{exe} failed (exit {proc.returncode}): {detail}")
    return with_font_fallbacks(proc.stdout)


# Labels are measured with DejaVu Sans (dot.FONT); a viewer without it should pick a font no
# wider, never its default serif font.
FONT_FALLBACKS = "DejaVu Sans,Arial,Helvetica,sans-serif"


def with_font_fallbacks(svg: bytes) -> bytes:
    """`font-family="DejaVu Sans"` attributes of an SVG also name the fallback fonts."""
    return svg.replace(b'font-family="DejaVu Sans"', f'font-family="{FONT_FALLBACKS}"'.encode())


def to_svg(
    graph: Graph,
    title: str | None = None,
    groups: dict[str, str] | None = None,
    program: str | None = None,
    timeout: float = 60.0,
) -> bytes:
    """SVG bytes of `to_dot(graph, title, groups)` rendered by Graphviz."""
    return dot_to_svg(to_dot(graph, title, groups), program, timeout)
