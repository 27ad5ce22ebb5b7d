"""`python -m sparkc.demo`: the project's main job until code generation lands.

Consumes `examples/tiny_gpt.spark`; compiles it through the optimisation passes and prints what
the compiler built: the model's op instances by kind and its parameters with their shapes. Writes
a drawing of the IR graph to `build/tiny_gpt.svg` (or `build/tiny_gpt.dot` where Graphviz is not
installed) and says where. Exit code 0 on success, 1 when the example does not compile.
"""

from __future__ import annotations

import sys
from math import prod
from pathlib import Path

from .diagnostics import SparkError
from .pipeline import CompileOptions, run_pipeline, summarize

EXAMPLE = "tiny_gpt"


def find_example(name: str = EXAMPLE) -> Path:
    """The example in the source checkout this package runs from, else under ./examples."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        path = base / "examples" / f"{name}.spark"
        if path.is_file():
            return path
    raise FileNotFoundError(f"examples/{name}.spark not found (run from the repository root)")


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def draw(graph, out_dir: Path, stem: str) -> Path:
    """Write the graph as SVG when a renderer is available, else as Graphviz dot text."""
    from . import viz

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        svg = viz.to_svg(graph)
    except viz.GraphvizNotFound:
        path = out_dir / f"{stem}.dot"
        path.write_text(viz.to_dot(graph), encoding="utf-8")
        return path
    path = out_dir / f"{stem}.svg"
    if isinstance(svg, bytes):
        path.write_bytes(svg)
    else:
        path.write_text(svg, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    path = find_example()
    shown = _rel(path)
    source = path.read_bytes()
    print(f"sparkc demo: compiling {shown}")
    try:
        result = run_pipeline(source, shown, CompileOptions(), stop_after="opt")
    except SparkError as err:
        print(err.render({shown: source.decode("utf-8", errors="replace")}), file=sys.stderr)
        return 1
    lowered = summarize(result.get("lower"))
    graph = result.artefact
    s = summarize(graph)
    print(f"model {s.model}: {s.params:,} trainable parameters, {s.buffers:,} buffer elements")
    print(f"IR after lowering: {lowered.ops} ops; after the pass pipeline: {s.ops} ops")
    width = max(len(op) for op, _ in s.op_counts)
    for op, n in s.op_counts:
        print(f"  {op:<{width}}  x{n}")
    params = graph.params()
    print(f"parameters ({len(params)} tensors):")
    width = max(len(p.attr("name")) for p in params)
    for p in params:
        shape = p.types[0].shape
        kind = "" if p.attr("trainable", True) else "  (buffer)"
        dims = "[" + ", ".join(str(d) for d in shape) + "]"
        print(f"  {p.attr('name'):<{width}}  {dims:<14} {prod(shape):>9,}{kind}")
    drawn = draw(graph, Path("build"), EXAMPLE)
    print(f"graph written to {_rel(drawn)}")
    if drawn.suffix == ".dot":
        print("  (Graphviz `dot` is not installed; render it with: dot -Tsvg "
              f"{_rel(drawn)} -o build/{EXAMPLE}.svg)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
