"""The pass protocol, the pass registry and the default pipeline.

Consumes nothing at run time; produces `PASSES` (name -> pass object) and `DEFAULT_PIPELINE`.
A pass is any object with a `name`, a one-line `description` and `run(graph) -> bool` that
rewrites the graph in place and says whether it changed anything. Registration is explicit and
eager: a pass module calls `register(...)` at import, and `sparkc.passes` imports every pass
module, so the registry is complete as soon as the package is imported.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from ..diagnostics import CompilerBug
from ..ir.graph import Graph


@runtime_checkable
class Pass(Protocol):
    name: str
    description: str

    def run(self, graph: Graph) -> bool:
        """Rewrite `graph` in place; True when anything changed."""
        ...


PASSES: dict[str, Pass] = {}

# The optimisation pipeline run by `sparkc compile` (ordered). Fusion is not a pass: it is the
# pipeline's `fuse` stage after this one (sparkc/passes/fuse.py), which annotates the graph with
# kernel groups; each kernel's backward is generated with it (sparkc/codegen), not by a pass.
DEFAULT_PIPELINE: list[str] = ["canonicalize", "cse", "dce"]

T = TypeVar("T")


def register(p: T) -> T:
    """Add a pass to `PASSES`; usable as a class decorator (the class is instantiated once)."""
    obj = p() if isinstance(p, type) else p
    if not isinstance(obj, Pass):
        raise CompilerBug(f"{obj!r} is not a pass (needs name, description, run)", "passes")
    if obj.name in PASSES:
        raise CompilerBug(f"pass '{obj.name}' is registered twice", "passes")
    PASSES[obj.name] = obj
    return p
