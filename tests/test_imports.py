"""The project's import graph: no import cycles among its modules, no module using another's
private names, a runtime that does not reach into the compiler, and a core that imports no tool
(docs/architecture.md, "Layers" and "Rules a reviewer checks").

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

A private import is a module using another module's `_underscore` name: `from m import _x`,
`m._x` where `m` names a project module it imported, or any import from a `_private` module
outside that module's package. Dunder names (`__version__`) are public. The ones that exist
today are listed in KNOWN_PRIVATE, which only shrinks the same way: a helper another module
needs is public (no underscore) in its owning module.

Tools (sparkc/tools/, sparkc/fuzz/, sparkc/viz/, the `python -m sparkc.demo` entry point and the
CLI) drive the compiler from outside; only the CLI's runner `sparkc/__main__.py` imports one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import tomllib

ROOT = Path(__file__).resolve().parents[1]

# Import cycles present when this test was written, in the form `cycles` gives them; issue 16
# ("one op family, one file per layer") removes them. Never add an entry: break the cycle.
KNOWN_CYCLES: list[tuple[str, ...]] = []

# Private imports present when the test was written, as (importer, imported module, name); issue 16
# makes the helpers public (codegen/emit.py for the rule modules). Never add an entry.
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()

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


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(
    source: str, name: str, is_init: bool, modules: dict
) -> set[tuple[str, str, str]]:
    """(importer, imported module, name) for each private name module `name` (its `source`)
    takes from another project module."""
    package = name if is_init else name.rpartition(".")[0]
    found: set[tuple[str, str, str]] = set()
    bound: dict[str, str] = {}  # local name -> the project module it is bound to
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    bound[alias.asname] = alias.name
                elif not alias.asname and alias.name.split(".")[0] in modules:
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                base = ".".join(up[: len(up) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # a module
                    bound[alias.asname or alias.name] = sub
                    target, attr = sub, alias.name
                elif base in modules:  # a name of a module
                    target, attr = base, alias.name
                else:
                    continue
                if target == name:
                    continue
                if _private(attr) and base != name:
                    found.add((name, base, attr))
                # A `_private` module is private to its package.
                parts = target.split(".")
                for depth, part in enumerate(parts):
                    owner = ".".join(parts[:depth])
                    inside = name == owner or name.startswith(owner + ".")
                    if _private(part) and not inside:
                        found.add((name, target, alias.name))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and bound[node.value.id] != name
            and _private(node.attr)
        ):
            found.add((name, bound[node.value.id], node.attr))
    return found


def all_private_imports() -> set[tuple[str, str, str]]:
    modules = _modules()
    found: set[tuple[str, str, str]] = set()
    for name, (path, is_init) in modules.items():
        found |= private_imports(path.read_text(), name, is_init, modules)
    return found


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
    assert graph.has_edge("sparkc.codegen.rules.spark_k", "sparkc.passes.fuse")  # typing
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


def test_private_imports_are_seen():
    names = ("p", "p.a", "p.b", "p.d", "p._impl", "p._impl.x", "p.sub", "p.sub.c")
    modules = dict.fromkeys(names)
    source = """
from .a import _hidden, public, __version__
from . import b
from ._impl import helper
import p.sub.c as c

def f():
    return b._inner() + c._deep + b.fine
"""
    assert private_imports(source, "p.d", False, modules) == {
        ("p.d", "p.a", "_hidden"),
        ("p.d", "p.b", "_inner"),
        ("p.d", "p.sub.c", "_deep"),
    }
    # A package's own private modules are its business; another package's are not.
    inside = "from ._impl import helper\nfrom ._impl.x import y\n"
    assert private_imports(inside, "p", True, modules) == set()
    assert private_imports(inside, "p.a", False, modules) == set()
    outside = "from p._impl import helper\n"
    assert private_imports(outside, "q", True, {**modules, "q": None}) == {
        ("q", "p._impl", "helper")
    }


def test_no_module_imports_another_modules_private_names():
    found = all_private_imports()
    new = sorted(found - KNOWN_PRIVATE)
    gone = sorted(KNOWN_PRIVATE - found)
    assert not new, (
        "private imports (make the name public in its owning module; KNOWN_PRIVATE only "
        f"shrinks): {new}"
    )
    assert not gone, f"these KNOWN_PRIVATE entries no longer exist, delete them: {gone}"


# Tools drive the compiler from outside; the core pipeline never imports them. The command line
# (`sparkc.cli`, and `sparkc.__main__` that runs it) is the front door to both.
TOOLS = ("sparkc.tools", "sparkc.fuzz", "sparkc.viz", "sparkc.demo", "sparkc.cli")
FRONT_DOOR = {("sparkc.__main__", "sparkc.cli")}


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_core_imports_no_tool():
    graph = import_graph()
    assert graph.has_edge("sparkc.cli", "sparkc.tools.bench")  # in a function
    reaching = {(a, b) for a, b in graph.edges if _in(b, TOOLS) and not _in(a, TOOLS)}
    lines = {e: graph.edges[e]["line"] for e in reaching - FRONT_DOOR}
    assert not lines, f"core modules import a tool (module, tool: line): {lines}"
