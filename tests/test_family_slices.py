"""The op families are cut the same way in every layer.

Each family has one module stem in the op table (`sparkc/ir/ops/`), the code generator's rules
(`sparkc/codegen/rules/`) and the reference path (`runtime/reference/`), and an op's family is
the same in all three: the op table's family module defines it, the reference family of the
same stem implements it, and the codegen rules of that stem (or the primitives' generic GEMM and
pointwise rules, keyed by kernel kind) generate it.
"""

from __future__ import annotations

from sparkc.runtime import reference

import sparkc.codegen.rules as codegen_rules
from sparkc.ir import ops


def _stem(module) -> str:
    return module.__name__.rsplit(".", 1)[1]


def test_every_layer_has_the_same_family_stems():
    op_families = [_stem(m) for m in ops.FAMILIES]
    ref_families = [_stem(m) for m in reference.FAMILIES]
    assert sorted(op_families) == sorted(ref_families) == sorted(codegen_rules.FAMILY_TABLES)


def test_an_op_s_reference_rule_lives_in_the_family_that_defines_it():
    ref_family = {name: _stem(m) for m in reference.FAMILIES for name in m.RULES}
    misplaced = []
    for module in ops.FAMILIES:
        for spec in module.SPECS:
            if spec.name in ref_family and ref_family[spec.name] != _stem(module):
                misplaced.append((spec.name, _stem(module), ref_family[spec.name]))
    assert not misplaced, f"(op, op-table family, reference family): {misplaced}"
    # Every op with a reference rule is in the op table.
    assert set(ref_family) <= set(ops.OPS)
