"""`GROUP_RULES` is assembled from one table per op family and refuses a kind two families claim
(sparkc/codegen/rules/__init__.py)."""

from __future__ import annotations

import pytest

from sparkc.codegen import rules
from sparkc.codegen.rules import FAMILY_TABLES, GROUP_RULES, assemble


def test_group_rules_is_the_union_of_the_family_tables():
    # The family stems of sparkc/ir/ops/ and runtime/reference/ (a new family adds its own).
    assert {"primitives", "attention", "spark_k", "splat", "hspmn", "procedural"} <= set(
        FAMILY_TABLES
    )
    union = {kind: rule for table in FAMILY_TABLES.values() for kind, rule in table.items()}
    assert GROUP_RULES == union
    assert len(GROUP_RULES) == sum(len(t) for t in FAMILY_TABLES.values())


def test_each_rule_lives_in_its_family_module():
    for family, table in FAMILY_TABLES.items():
        for kind, rule in table.items():
            assert rule.__module__ == f"{rules.__name__}.{family}", (kind, rule.__module__)


def test_a_kind_claimed_by_two_families_is_refused():
    def a(e, group):
        return None

    def b(e, group):
        return None

    assert assemble({"one": {"x": a}, "two": {"y": b}}) == {"x": a, "y": b}
    with pytest.raises(ValueError, match="'x' defined by both 'one' and 'two'"):
        assemble({"one": {"x": a}, "two": {"x": b}})
