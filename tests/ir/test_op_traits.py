"""Every op carries the traits its category needs, on its spec (issue 16).

The passes, the cost model and the code generators read an op's traits from its `OpSpec`
(kernel kind, GEMM tail, epilogue role, pair rules, FLOP rule, backward factor, fold rule,
commutativity, identities, Triton expression and gradient, exact definition, documented
variants); no table
elsewhere is keyed by op name. A missing trait is a failure here, not a KeyError at compile
time. `sparkc.ir.ops` assembles the table from its family modules and refuses an op defined
twice.
"""

from __future__ import annotations

import dataclasses
import types

import pytest

from sparkc.ir.ops import FAMILIES, OPS, OpSpec, assemble
from sparkc.ir.ops.primitives_elementwise import ACTS

ELEMENTWISE = ("elementwise", "arith")


def _group_rules() -> set[str]:
    """The group kinds the code generator has a rule for."""
    try:
        from sparkc.codegen.rules import GROUP_RULES  # the family-sliced layout
    except ImportError:
        from sparkc.codegen.triton_plan import GROUP_RULES
    return set(GROUP_RULES)


def missing_traits(spec: OpSpec) -> list[str]:
    """What `spec` lacks for its category (empty when complete)."""
    missing = []
    if not callable(spec.flops):
        missing.append("flops")
    if not spec.backward_factor > 0:
        missing.append("backward_factor")
    if len(spec.semantics) <= 20:
        missing.append("semantics")
    if spec.category == "config":  # a value for another op's hyperparameter, never a node
        return missing
    if not spec.kernel:
        missing.append("kernel")
    ports = tuple(p.name for p in spec.inputs)
    if spec.category in ELEMENTWISE:
        if spec.kernel != "pointwise":
            missing.append("kernel=pointwise")
        if not spec.triton:
            missing.append("triton")
        else:
            try:
                spec.triton.format(**{p: p for p in ports})
            except (KeyError, IndexError):
                missing.append("triton (names a port the op does not have)")
        grads = dict(spec.triton_grad)
        if set(grads) != set(ports):
            missing.append(f"triton_grad for ports {ports}")
        for rule in grads.values():
            try:
                rule.format(g="g", y="y", **{p: p for p in ports})
            except (KeyError, IndexError):
                missing.append("triton_grad (names an unknown value)")
        if not callable(spec.fold):
            missing.append("fold")
    elif spec.kernel == "pointwise":
        missing.append(f"category for a pointwise kernel (one of {ELEMENTWISE})")
    if spec.category == "elementwise" and spec.epilogue != "act":
        missing.append("epilogue=act")
    if (spec.commutative or spec.right_identity is not None) and len(ports) != 2:
        missing.append("two operands (commutative / right_identity)")
    if spec.involution and len(ports) != 1:
        missing.append("one operand (involution)")
    return missing


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_the_traits_of_its_category(name):
    assert missing_traits(OPS[name]) == []


def test_a_missing_trait_is_reported():
    relu = OPS["relu"]
    assert "triton" in missing_traits(dataclasses.replace(relu, triton=""))
    assert "fold" in missing_traits(dataclasses.replace(relu, fold=None))
    assert "kernel" in missing_traits(dataclasses.replace(OPS["attention"], kernel=""))
    assert "flops" in missing_traits(dataclasses.replace(OPS["basis"], flops=None))
    assert "semantics" in missing_traits(dataclasses.replace(OPS["basis"], semantics=""))
    broken = dataclasses.replace(OPS["add"], triton_grad=(("a", "{g}"),))
    assert any(m.startswith("triton_grad") for m in missing_traits(broken))


def test_every_kernel_kind_has_a_code_generator_rule():
    rules = _group_rules()
    kinds = {s.kernel for s in OPS.values() if s.kernel}
    kinds |= {r.group for s in OPS.values() for r in s.pairs}
    assert kinds <= rules, sorted(kinds - rules)


def test_pair_rules_name_kernel_kinds_that_exist():
    kinds = {s.kernel for s in OPS.values()}
    for spec in OPS.values():
        for rule in spec.pairs:
            assert rule.reader in kinds, (spec.name, rule)


def test_gemm_tails_and_epilogues():
    for spec in OPS.values():
        if spec.gemm_tail:
            assert spec.kernel not in ("", "pointwise", "reference"), spec.name
        assert spec.epilogue in ("", "act", "scale", "residual"), spec.name
        if spec.epilogue:
            assert spec.kernel == "pointwise", spec.name


def test_the_activation_list_is_the_ops_with_the_act_role():
    assert ACTS == tuple(n for n, s in OPS.items() if s.epilogue == "act")
    for spec in OPS.values():
        act = spec.hyper("act")
        if act is not None:
            assert act.choices == ACTS, spec.name


def test_documented_variants_name_real_hyperparameters_and_ports():
    for spec in OPS.values():
        for variant in spec.doc_variants:
            for hp, _ in variant.hp:
                assert spec.hyper(hp) is not None, (spec.name, hp)
            for port in variant.inputs:
                assert spec.port(port) is not None and spec.port(port).optional, (spec.name, port)


def test_table_order_is_the_family_order():
    names = [s.name for family in FAMILIES for s in family.SPECS]
    assert list(OPS) == names


def test_an_op_defined_twice_is_refused():
    twice = types.SimpleNamespace(__name__="twice", SPECS=(OPS["relu"],))
    with pytest.raises(ValueError, match="'relu' is defined twice"):
        assemble([*FAMILIES, twice])
