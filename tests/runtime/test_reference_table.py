"""The reference table is assembled from one module per op family (runtime/reference/__init__.py):
every family's rules end up in REFERENCE, and an op defined by two families is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sparkc.runtime.reference import FAMILIES, REFERENCE, assemble


def _family(name: str, *ops: str) -> SimpleNamespace:
    return SimpleNamespace(__name__=name, RULES={op: (lambda *a: ()) for op in ops})


def test_the_table_is_the_union_of_the_families():
    stems = [m.__name__.rpartition(".")[2] for m in FAMILIES]
    assert stems == ["primitives", "attention", "spark_k", "splat", "hspmn", "procedural"]
    owned = [op for m in FAMILIES for op in m.RULES]
    assert sorted(owned) == list(REFERENCE)  # each op in exactly one family, table sorted
    assert REFERENCE["spd_router"] is FAMILIES[2].RULES["spd_router"]


def test_an_op_in_two_families_is_refused():
    with pytest.raises(RuntimeError, match=r"'linear' defined twice: in fam_a and fam_b"):
        assemble([_family("fam_a", "add", "linear"), _family("fam_b", "linear")])


def test_assemble_sorts_by_op_name():
    table = assemble([_family("fam_a", "zeta", "alpha"), _family("fam_b", "mid")])
    assert list(table) == ["alpha", "mid", "zeta"]
