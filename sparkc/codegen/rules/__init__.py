"""The code-generation rules of every op family, assembled into one table: `GROUP_RULES`.

Consumes the family modules of this package, each with one table mapping a fusion group kind
(`Group.kind`, see `sparkc/passes/fuse.py`) to the rule that writes the group's lines with the
`Emitter` of `codegen/emit.py`:

| family       | module          | table              |
|--------------|-----------------|--------------------|
| primitives   | `primitives.py` | `PRIMITIVE_RULES`  |
| attention    | `attention.py`  | `ATTENTION_RULES`  |
| SPaR-K       | `spark_k.py`    | `SPARK_K_RULES`    |
| SplatFlow    | `splat.py`      | `SPLAT_RULES`      |
| HSPMN        | `hspmn.py`      | `HSPMN_RULES`      |
| procedural   | `procedural.py` | `PROCEDURAL_RULES` |

Produces `GROUP_RULES` (kind → rule), the union of the family tables; `assemble` refuses a kind
that two tables claim, so a new family cannot silently replace another's rule. Adding a block
family's kernels is a module here with its table, and one entry in `FAMILY_TABLES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ...passes.fuse import Group
from ..emit import Emitter
from .attention import ATTENTION_RULES
from .hspmn import HSPMN_RULES
from .primitives import PRIMITIVE_RULES
from .procedural import PROCEDURAL_RULES
from .spark_k import SPARK_K_RULES
from .splat import SPLAT_RULES

Rule = Callable[[Emitter, Group], None]

# Family name → its table, in the order the tables were merged before the split (the order of
# GROUP_RULES' keys is not observable in generated code, but kept for readers of the table).
FAMILY_TABLES: dict[str, Mapping[str, Rule]] = {
    "primitives": PRIMITIVE_RULES,
    "attention": ATTENTION_RULES,
    "spark_k": SPARK_K_RULES,
    "hspmn": HSPMN_RULES,
    "splat": SPLAT_RULES,
    "procedural": PROCEDURAL_RULES,
}


def assemble(tables: Mapping[str, Mapping[str, Rule]]) -> dict[str, Rule]:
    """The union of the family tables; a kind claimed by two families is a ValueError naming
    both (raised at import time, so no compile ever sees a half-built table)."""
    merged: dict[str, Rule] = {}
    owner: dict[str, str] = {}
    for family, table in tables.items():
        for kind, rule in table.items():
            if kind in merged:
                raise ValueError(
                    f"code-generation rule for group kind {kind!r} defined by both "
                    f"{owner[kind]!r} and {family!r}"
                )
            merged[kind] = rule
            owner[kind] = family
    return merged


GROUP_RULES: dict[str, Rule] = assemble(FAMILY_TABLES)
