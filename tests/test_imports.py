"""The project's import graph: no import cycles among its modules, and a runtime that does not
reach into the compiler.

Every module of the packages pyproject.toml installs (`[tool.setuptools]`: `packages` and
`package-dir`, so runtime/ is `sparkc.runtime`) is parsed with `ast`, and every import statement
in it counts: top level, inside functions and classes, and under `if TYPE_CHECKING:` (a cycle of
type-only imports is still a cycle between layers). `import sparkc.a.b`, `from sparkc.a import b`
and relative imports (`from . import x`, `from ..ir import ops`) are resolved to the module they
name: `from P import n` is an import of module `P.n` when that is a module, else of `P`.

A cycle is an elementary cycle of that graph: modules each importing the next, the last the
first. The cycles that exist today outside the runtime are listed in KNOWN_CYCLES;
issue 16 removes them, so the list can only shrink: the test fails on any cycle not listed and
on a listed one that no longer exists (delete its entry then).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import tomllib

ROOT = Path(__file__).resolve().parents[1]

# Import cycles present when this test was written, in the form `cycles` gives them; issue 16
# ("one op family, one file per layer") removes them. Never add an entry: break the cycle.
KNOWN_CYCLES: list[tuple[str, ...]] = [
    # triton_plan <-> rules_* (the rules import triton_plan under TYPE_CHECKING).
    ("sparkc.codegen.rules_hspmn", "sparkc.codegen.triton_plan"),
    ("sparkc.codegen.rules_procedural", "sparkc.codegen.triton_plan"),
    ("sparkc.codegen.rules_spark_k", "sparkc.codegen.triton_plan"),
    ("sparkc.codegen.rules_spd", "sparkc.codegen.triton_plan"),
    ("sparkc.codegen.rules_splat", "sparkc.codegen.triton_plan"),
]

# The runtime imports nothing from the compiler (`sparkc.*` outside `sparkc.runtime`) except
# here: a generated module asked for another variant (`Model(d=...)`) compiles it
# (module_support's build_variant, through `sparkc.api.load_variant`).
RUNTIME_COMPILER_IMPORTS = {("sparkc.runtime.module_support", "sparkc.api")}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's __init__) for every installed
    module of the project."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots: dict[str, str] = setup["package-dir"]
    found: dict[str, tuple[Path, bool]] = {}
    for package in setup["packages"]:
        base = max((r for r in roots if package == r or package.startswith(r + ".")), key=len)
        folder = ROOT / roots[base] / Path(*package[len(base) :].strip(".").split(".") or [""])
        for path in sorted(folder.glob("*.py")):
            is_init = path.stem == "__init__"
            found[package if is_init else f"{package}.{path.stem}"] = (path, is_init)
    return found


def _owner(name: str, modules: dict) -> str | None:
    """The longest prefix of dotted `name` that is a project module (None: not the project's)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> nx.DiGraph:
    """Module -> module edges, each labelled with the line of the import statement."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, (path, is_init) in modules.items():
        package = name if is_init else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_owner(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = package.split(".")
                    base = ".".join(up[: len(up) - (node.level - 1)])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else _owner(base, modules))
            for target in targets:
                if target is not None and target != name:  # a package's own names: no edge
                    graph.add_edge(name, target, line=node.lineno)
    return graph


def cycles(graph: nx.DiGraph) -> set[tuple[str, ...]]:
    """Every elementary cycle, as the tuple of its modules in import order, starting at the
    alphabetically first one."""
    found = set()
    for cycle in nx.simple_cycles(graph):
        start = cycle.index(min(cycle))
        found.add(tuple(cycle[start:] + cycle[:start]))
    return found


def _describe(graph: nx.DiGraph, cycle: tuple[str, ...]) -> str:
    steps = [
        f"{a} (line {graph.edges[a, b]['line']})" for a, b in zip(cycle, cycle[1:] + cycle[:1])
    ]
    return " -> ".join(steps) + f" -> {cycle[0]}"


def test_the_graph_sees_the_imports_that_matter():
    # The resolution rules on imports known to exist: a relative `from . import module`, a
    # relative `from .module import name`, imports inside a function body and under
    # `if TYPE_CHECKING:`.
    graph = import_graph()
    assert graph.has_edge("sparkc.runtime.gemm", "sparkc.runtime.autotune")
    assert graph.has_edge("sparkc.runtime.gemm", "sparkc.runtime.tiles")
    assert graph.has_edge("sparkc.runtime.launch", "sparkc.runtime.launcher")  # in a function
    assert graph.has_edge("sparkc.runtime.module_support", "sparkc.api")  # in a function
    assert graph.has_edge("sparkc.codegen.rules_spd", "sparkc.codegen.triton_plan")  # typing
    assert not graph.has_edge("sparkc.runtime.launcher", "sparkc.runtime.launch")


def test_no_import_cycles_beyond_the_known_ones():
    graph = import_graph()
    found = cycles(graph)
    new = [_describe(graph, c) for c in sorted(found - set(KNOWN_CYCLES))]
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert not new, "import cycles (break them; KNOWN_CYCLES only shrinks):\n" + "\n".join(new)
    assert not gone, f"these KNOWN_CYCLES no longer exist, delete their entries: {gone}"


def test_the_runtime_imports_nothing_from_the_compiler():
    graph = import_graph()
    reaching = {
        (a, b)
        for a, b in graph.edges
        if a.startswith("sparkc.runtime") and not b.startswith("sparkc.runtime")
    }
    lines = {e: graph.edges[e]["line"] for e in reaching - RUNTIME_COMPILER_IMPORTS}
    assert not lines, f"runtime modules import the compiler (module, target: line): {lines}"
    assert reaching == RUNTIME_COMPILER_IMPORTS, "an allowed import is gone: shrink the list"
