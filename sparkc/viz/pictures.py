"""PNG pictures of graph drawings, for the documentation (`python -m sparkc.viz.pictures DIR`).

Consumes example programs (`examples/NAME.spark`, found as by the demo) and a list of views
(`VIEWS`: which example, drawn after which stage, with which hyperparameter overrides);
produces one PNG per view in DIR: the `sparkc graph --format svg` drawing (`--after fuse` frames
the kernel groups) rasterised.

Rasterising: with cairosvg installed (`pip install -e ".[pictures]"`) the SVG is drawn as a
browser shows it (its fonts, its clipping), which is what a user sees and what the layout must
survive; without it, Graphviz's own PNG output (`-Tpng` of `dot` or graphviz-pure) is used, a
lower-fidelity picture (its own font) of the same layout. `README_PICTURE` is the view whose
PNG is committed as docs/tiny_gpt_fused.png and shown in README.md; regenerate it with

    python -m sparkc.viz.pictures docs --only tiny_gpt_fused
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..pipeline import CompileOptions, run_pipeline
from .dot import to_dot
from .render import GraphvizError, GraphvizNotFound, dot_to_svg, find_renderer


@dataclass(frozen=True)
class PictureView:
    name: str  # the PNG's stem
    example: str  # examples/<example>.spark
    after: str  # 'opt' (the plain drawing) or 'fuse' (kernel groups framed)
    overrides: tuple[tuple[str, int], ...] = ()
    width: int = 1400  # pixels, when rasterised from SVG


VIEWS: tuple[PictureView, ...] = (
    PictureView("spark_k", "spark_k", "opt"),
    PictureView("spark_k_fused", "spark_k", "fuse"),
    PictureView("procedural_fused", "procedural", "fuse"),
    PictureView("tiny_gpt_fused", "tiny_gpt", "fuse", (("layers", 1),), width=560),
)
README_PICTURE = "tiny_gpt_fused"


def view_dot(view: PictureView) -> str:
    from ..tools.demo import find_example

    path = find_example(view.example)
    options = CompileOptions(overrides=view.overrides)
    graph = run_pipeline(path.read_text(), path.name, options, stop_after=view.after).artefact
    plan = graph.meta.get("fusion")
    return to_dot(graph, groups=plan.group_of() if plan is not None else None)


def dot_to_png(dot: str, width: int = 1400, timeout: float = 120.0) -> bytes:
    """PNG bytes of a DOT drawing: through its SVG and cairosvg when installed, else `-Tpng`."""
    try:
        import cairosvg
    except ImportError:
        cairosvg = None
    if cairosvg is not None:
        png = cairosvg.svg2png(bytestring=dot_to_svg(dot, timeout=timeout), output_width=width)
        return _palette(png)
    exe = find_renderer()
    if exe is None:
        raise GraphvizNotFound()
    proc = subprocess.run(
        [exe, "-Tpng"], input=dot.encode(), capture_output=True, timeout=timeout, check=False
    )
    if proc.returncode != 0 or not proc.stdout.startswith(b"\x89PNG"):
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"{exe} -Tpng failed (exit {proc.returncode}): {detail}")
    return proc.stdout


def _palette(png: bytes, colours: int = 96) -> bytes:
    """The same picture with an adaptive palette (a third of the bytes; Pillow comes with
    cairosvg)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colours, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def write_pictures(out: Path, only: list[str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for view in VIEWS:
        if only and view.name not in only:
            continue
        path = out / f"{view.name}.png"
        path.write_bytes(dot_to_png(view_dot(view), view.width))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparkc.viz.pictures", description=__doc__)
    ap.add_argument("out", type=Path, help="folder for the PNG files")
    ap.add_argument("--only", action="append", choices=[v.name for v in VIEWS])
    args = ap.parse_args(argv)
    try:
        for path in write_pictures(args.out, args.only):
            print(f"wrote {path}")
    except (GraphvizNotFound, GraphvizError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
