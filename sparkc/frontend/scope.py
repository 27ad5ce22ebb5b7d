"""Scopes of the elaboration and the instance-naming rule.

A `Scope` is one body being elaborated: the model, or one inlined instance of a block (each
`repeat` layer is its own scope). It maps names to checker values and owns the instance names
given out in it. `Stmt` is the naming state of the statement being checked.

Naming (docs/architecture.md): a call that is the whole right-hand side takes the binding name;
a nested call is named `<binding>_<op>`, then `<binding>_<op>_1`, `_2`, ...; statements without a
binding name (`return`, `_ = ...`) name nested calls after the op alone. Generated names skip
every name bound anywhere in the body, so that a later `h_mlp = ...` keeps its own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Span
from . import ast


@dataclass
class Stmt:
    binding: str  # '' when the statement binds no single name


@dataclass
class Scope:
    defn: ast.Definition
    prefix: str  # instance path prefix: '' for the model, 'h.0.' inside a repeated block
    hypers: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)
    instances: dict[str, int] = field(default_factory=dict)  # op instance name → ops index
    # Inside a block instance: the actual arguments, where they were written, and how the
    # block's symbolic dims were bound to the caller's dims.
    block_args: dict[str, Any] = field(default_factory=dict)
    block_arg_spans: dict[str, Span] = field(default_factory=dict)
    dim_bindings: dict[str, Any] = field(default_factory=dict)
    returned: list[Any] | None = None

    @property
    def is_block(self) -> bool:
        return isinstance(self.defn, ast.BlockDef)

    @property
    def path(self) -> str:
        """The scope's own path (prefix without the trailing dot): where arithmetic nodes live."""
        return self.prefix.removesuffix(".")

    def lookup(self, name: str) -> tuple[bool, Any]:
        if name in self.values:
            return True, self.values[name]
        if name in self.hypers:
            return True, self.hypers[name]
        return False, None

    def names(self) -> list[str]:
        return sorted({*self.values, *self.hypers})

    def bind(self, name: str, value: Any) -> None:
        # A second binding of a name was reported by the structure pass; keep the first.
        if name != "_" and name not in self.values and name not in self.hypers:
            self.values[name] = value

    def instance_name(self, stmt: Stmt, op: str, whole: bool) -> str:
        if whole and stmt.binding and stmt.binding not in self.used:
            name = stmt.binding
        else:
            base = f"{stmt.binding}_{op}" if stmt.binding else op
            name, k = base, 0
            while name in self.used or name in self.reserved:
                k += 1
                name = f"{base}_{k}"
        self.used.add(name)
        return name


def reserved_names(defn: ast.Definition) -> set[str]:
    """Every name a body binds (instance names generated in it avoid these)."""
    out = {p.name for p in defn.params}
    for s in defn.body:
        if isinstance(s, ast.InputDecl):
            out.add(s.name)
        elif isinstance(s, ast.Let):
            out.update(t.name for t in s.targets if not t.is_discard)
        elif isinstance(s, ast.Output | ast.Loss):
            out.add(s.name)
    return out
