"""The op table (`sparkc.ir.ops.OPS`) is complete and self-consistent, and docs/ops.md is its
current rendering.

Every op: a summary, a SPEC section that names a documented section, unique port and
hyperparameter names, defaults that pass their own range checks, shape and parameter rules that
run on a generic input, and an entry in every rule table keyed by op name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparkc.ir.ops import (
    CALLABLE,
    OPS,
    REQUIRED,
    Derived,
    Init,
    check_hyper_value,
    instantiate,
)
from sparkc.ir.types import TensorType
from sparkc.tools import docs_gen

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(OPS)
HYPER_TYPES = {"int", "float", "bool", "choice", "ref", "basis"}
PY_TYPES = {"int": int, "float": float, "bool": bool, "choice": str}
INIT_KINDS = set(docs_gen._INIT_TEXT)


@pytest.mark.parametrize("name", NAMES)
def test_op_is_described(name: str) -> None:
    op = OPS[name]
    assert op.name == name
    assert op.summary.strip(), f"{name} has no summary"
    assert re.fullmatch(r"[1-5](\.[0-9])?", op.section), f"{name}: bad SPEC section {op.section!r}"
    assert op.section.split(".")[0] in docs_gen.SECTION_TITLES
    ports = [p.name for p in op.inputs]
    hypers = [h.name for h in op.hypers]
    outputs = [o.name for o in op.outputs]
    for kind, names in (("port", ports), ("hyperparameter", hypers), ("output", outputs)):
        assert len(set(names)) == len(names), f"{name}: duplicate {kind} names {names}"
    # A keyword argument must name exactly one thing.
    assert not set(ports) & set(hypers), f"{name}: a port and a hyperparameter share a name"


@pytest.mark.parametrize("name", NAMES)
def test_defaults_pass_their_own_checks(name: str) -> None:
    for h in OPS[name].hypers:
        assert h.type in HYPER_TYPES, f"{name}.{h.name}: unknown type {h.type}"
        if h.type == "choice":
            assert h.choices, f"{name}.{h.name}: a choice without choices"
        if h.default is REQUIRED or isinstance(h.default, Derived):
            continue
        assert check_hyper_value(h, h.default) is None, f"{name}.{h.name}={h.default!r}"
        if h.default is not None:
            want = PY_TYPES.get(h.type)
            if want is not None:
                assert type(h.default) is want, (
                    f"{name}.{h.name}: default {h.default!r} is not {h.type}"
                )


@pytest.mark.parametrize("name", CALLABLE)
def test_instantiate_on_a_generic_input(name: str) -> None:
    spec = OPS[name]
    inputs = docs_gen.example_inputs(spec)
    inst = instantiate(name, inputs, docs_gen.example_hypers(spec))
    assert [n for n, _ in inst.hp] == [h.name for h in spec.hypers], "hyperparameters out of order"
    assert all(v is not REQUIRED for _, v in inst.hp)
    assert len(inst.outputs) == len(spec.outputs)
    assert all(isinstance(t, TensorType) for t in inst.outputs)
    for i in spec.loss_outputs:
        assert inst.outputs[i].shape == (), f"{name}: aux loss output {i} is not a scalar"
    names = [p.name for p in inst.params]
    assert len(set(names)) == len(names), f"{name}: duplicate parameter names {names}"
    for p in inst.params:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", p.name), p.name
        assert all(isinstance(d, int) and d > 0 for d in p.shape), f"{name}.{p.name}: {p.shape}"
        assert isinstance(p.init, Init) and p.init.kind in INIT_KINDS, f"{name}.{p.name}: {p.init}"
        if p.init.kind.startswith("linear_"):
            assert p.fan_in > 0, f"{name}.{p.name}: linear init without fan_in"


def test_every_callable_op_is_reachable_by_a_call_and_operators_map_to_ops() -> None:
    from sparkc.ir.ops import BINARY_OPERATORS

    for op in BINARY_OPERATORS.values():
        assert op in OPS and not OPS[op].callable
    assert set(CALLABLE) == {n for n, op in OPS.items() if op.callable}


def test_every_op_has_a_reference_implementation() -> None:
    # Rule-table completeness: the float64 reference path knows every op (basis is a config
    # value consumed by attention, not an op that computes anything).
    from sparkc.runtime.reference import REFERENCE

    missing = sorted(n for n in OPS if n != "basis" and n not in REFERENCE)
    assert not missing, f"ops without a reference implementation: {missing}"
    from sparkc.ir.graph import SPECIAL_OPS

    unknown = sorted(set(REFERENCE) - set(OPS) - set(SPECIAL_OPS))
    assert not unknown, f"reference entries for ops not in the table: {unknown}"


def test_docs_ops_md_is_current() -> None:
    checked_in = (ROOT / "docs" / "ops.md").read_text(encoding="utf-8")
    assert checked_in == docs_gen.render_ops_markdown(), (
        f"docs/ops.md is stale; regenerate it with `{docs_gen.UPDATE_COMMAND}`"
    )


def test_docs_list_every_op_and_its_parameters() -> None:
    text = docs_gen.render_ops_markdown()
    for name in NAMES:
        assert f"### `{name}` (§{OPS[name].section})" in text
        # Each op states its exact definition in the project's own words (`OpSpec.semantics`).
        section = text.split(f"### `{name}` (§")[1].split("\n### ")[0]
        semantics = OPS[name].semantics
        assert semantics in section and len(semantics) > 20, name
    for part in ("## 0. Conventions", "### 5.6 Cached decoding", "## 6. Verified properties"):
        assert part in text
    assert "SPEC" not in text  # the page stands alone
    # Shapes come from the op rules for D = 64: attention's projections are [64, 64] and the
    # basis gains exist only with basis=..., [heads, 2*freqs + legendre] = [4, 12].
    attention = text.split("### `attention`")[1].split("### ")[0]
    assert "| wq.weight | [64, 64] | parameter |" in attention
    assert "| basis.gains | [4, 12] | parameter | zeros | only with basis=" in attention
    spd = text.split("### `spd_router`")[1].split("### ")[0]
    assert "| loss | float[] | auxiliary loss" in spd
    assert "ops_decisions.md" in text
