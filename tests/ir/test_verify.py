"""The IR verifier accepts well-formed graphs and names every broken invariant."""

from __future__ import annotations

import dataclasses

import pytest
from ir_samples import F, const, finish, inp, op, output, tiny_gpt, zoo

from sparkc.diagnostics import CompilerBug
from sparkc.ir.graph import Graph, Value
from sparkc.ir.ops import Init
from sparkc.ir.types import DType, TensorType
from sparkc.ir.verify import verify


def _fails(g: Graph, *needles: str, stage: str = "verify") -> CompilerBug:
    with pytest.raises(CompilerBug) as info:
        verify(g, stage)
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    assert info.value.stage == stage
    return info.value


def _first(g: Graph, op_name: str):
    return g.nodes_of(op_name)[0]


@pytest.mark.parametrize("build", [tiny_gpt, zoo, lambda: tiny_gpt(layers=0)])
def test_well_formed_graphs_verify(build) -> None:
    verify(build())


def test_stage_name_is_carried() -> None:
    g = tiny_gpt(1)
    g.add("aux_sum", (), types=(TensorType(F, ()),))
    err = _fails(g, "exactly one aux_sum", stage="pass cse")
    assert "(in pass cse)" in str(err)


def test_cycle_is_reported() -> None:
    g = tiny_gpt(1)
    first_add, last_add = g.nodes_of("add")[0], g.nodes_of("add")[-1]
    # Make the first residual add read the last one: a cycle through the whole layer.
    g.update(first_add.id, inputs=(last_add.out(), first_add.inputs[1]))
    _fails(g, "cycle")


def test_dangling_output_index() -> None:
    g = tiny_gpt(1)
    add = _first(g, "add")
    g.update(add.id, inputs=(Value(add.inputs[0].node, 2), add.inputs[1]))
    _fails(g, "reads output 2", "1 output(s)")


def test_unknown_op() -> None:
    g = tiny_gpt(1)
    x = _first(g, "input")
    g.add("frobnicate", (x.out(),), types=(x.types[0],))
    _fails(g, "unknown op 'frobnicate'")


def test_arity_missing_parameter() -> None:
    g = tiny_gpt(1)
    norm = _first(g, "rmsnorm")
    g.update(norm.id, inputs=norm.inputs[:1], port_names=norm.port_names[:1])
    _fails(g, "parameters [] differ", "['weight']")


def test_port_names_must_name_inputs() -> None:
    g = tiny_gpt(1)
    norm = _first(g, "rmsnorm")
    g.update(norm.id, port_names=())
    _fails(g, "port_names")


def test_types_are_recomputed() -> None:
    g = tiny_gpt(1)
    att = _first(g, "attention")
    g.update(att.id, types=(TensorType(F, ("B", "N", 99)),))
    _fails(g, "differ from the shape rule")


def test_attrs_must_be_complete_and_ordered() -> None:
    g = tiny_gpt(1)
    att = _first(g, "attention")
    g.update(att.id, attrs=tuple(reversed(att.attrs)))
    _fails(g, "op-table order")
    g = tiny_gpt(1)
    att = _first(g, "attention")
    g.update(att.id, attrs=att.attrs[:-1])
    _fails(g, "op-table order")


def test_shape_rule_rejection_is_a_bug() -> None:
    g = tiny_gpt(1)
    att = _first(g, "attention")
    attrs = tuple((k, 5 if k in ("heads", "kv_heads") else v) for k, v in att.attrs)
    g.update(att.id, attrs=attrs)
    _fails(g, "shape rule rejects", "heads=5")


def test_port_dtype_is_checked() -> None:
    g = tiny_gpt(1)
    emb = _first(g, "embed")
    x = inp(g, "floaty", F, ("B", "N"))
    g.update(emb.id, inputs=(x.out(), *emb.inputs[1:]))
    _fails(g, "port 'tokens' wants int")


def test_param_naming_type_and_init() -> None:
    g = tiny_gpt(1)
    p = _first(g, "param")
    g.update(p.id, attrs=(("name", "wrong.weight"), *p.attrs[1:]))
    _fails(g, "named 'wrong.weight'", "expected 'tok.weight'")
    g = tiny_gpt(1)
    p = _first(g, "param")
    g.update(p.id, types=(TensorType(F, (3, 3)),))
    _fails(g, "has type (float[3,3])")
    g = tiny_gpt(1)
    p = _first(g, "param")
    g.update(p.id, attrs=tuple((k, Init("zeros") if k == "init" else v) for k, v in p.attrs))
    _fails(g, "has init zeros")


def test_param_names_unique_and_single_owner() -> None:
    g = tiny_gpt(1)
    norms = g.nodes_of("rmsnorm")
    # The second norm reads the first norm's weight: shared parameter, and one orphan.
    orphan = norms[1].inputs[1]
    g.update(norms[1].id, inputs=(norms[1].inputs[0], norms[0].inputs[1]))
    err = str(_fails(g, "exactly one owning op"))
    assert orphan.node in err


def test_duplicate_param_name() -> None:
    g = tiny_gpt(1)
    p = g.params()[1]
    g.update(p.id, attrs=(("name", "tok.weight"), *p.attrs[1:]))
    _fails(g, "duplicate parameter name 'tok.weight'")


def test_port_reading_a_param() -> None:
    g = tiny_gpt(1)
    add = _first(g, "add")
    p = g.params()[1]  # pos_embed weight, float[128, 32]
    g.update(add.id, inputs=(p.out(), add.inputs[1]))
    _fails(g, "reads the parameter")


def test_output_names_unique() -> None:
    g = tiny_gpt(1)
    logits = _first(g, "linear")
    output(g, logits.out(), "logits")
    _fails(g, "duplicate output name 'logits'")


def test_aux_sum_must_read_every_aux_loss() -> None:
    g = zoo()
    aux = _first(g, "aux_sum")
    g.update(aux.id, inputs=aux.inputs[1:])
    _fails(g, "does not read the aux loss")
    g = zoo()
    aux = _first(g, "aux_sum")
    router = _first(g, "token_router")
    g.update(aux.id, inputs=(*aux.inputs, router.out(1)))
    _fails(g, "not an aux-loss output")


def test_exactly_one_aux_sum() -> None:
    g = Graph("NoAux")
    x = inp(g, "x", F, ("B",))
    output(g, x.out(), "x")
    _fails(g, "found 0")
    finish(g)
    verify(g)


def test_const_must_be_0d_and_typed() -> None:
    g = tiny_gpt(1)
    c = const(g, 2.0)
    g.update(c.id, types=(TensorType(F, (2,)),))
    _fails(g, "must be 0-d")
    g = tiny_gpt(1)
    c = const(g, 2.0)
    g.update(c.id, attrs=(("value", 2),))
    _fails(g, "float const holds the int")


def test_loss_must_be_scalar_with_weight() -> None:
    g = tiny_gpt(1)
    ce = next(n for n in g.outputs() if n.attr("kind") == "loss")
    g.update(ce.id, attrs=(("name", "ce"), ("kind", "loss")))
    _fails(g, "numeric 'weight'")


def test_tie_must_name_a_matching_embed() -> None:
    g = zoo()
    head = next(n for n in g.nodes_of("linear") if n.attr("tie"))
    g.update(head.id, attrs=tuple((k, "nope" if k == "tie" else v) for k, v in head.attrs))
    _fails(g, "tie='nope' names 0 embed")


def test_all_problems_are_listed() -> None:
    g = tiny_gpt(1)
    for n in g.nodes_of("rmsnorm"):
        g.update(n.id, types=(TensorType(F, (1,)),))
    err = str(_fails(g))
    for n in g.nodes_of("rmsnorm"):  # every broken node is named, not just the first
        assert f"{n.id} (rmsnorm" in err


def test_verify_is_fast_on_a_deep_model() -> None:
    import time

    g = tiny_gpt(layers=24)
    start = time.perf_counter()
    verify(g)
    # A generous bound: the verifier runs after every pass in every test.
    assert time.perf_counter() - start < 2.0


def test_manual_node_dataclass_edit_breaks_edges() -> None:
    # Replacing a payload behind the API's back (no edge rewiring) is caught.
    g = tiny_gpt(1)
    add = _first(g, "add")
    other = _first(g, "embed")
    g._g.nodes[add.id]["node"] = dataclasses.replace(add, inputs=(other.out(), add.inputs[1]))
    _fails(g, "do not match its inputs")


def test_op_helper_builds_instances_like_lowering() -> None:
    g = Graph("One")
    x = inp(g, "x", F, ("B", "N", 8))
    lin = op(g, "linear", "proj", {"out": 4, "bias": False}, x=x.out())
    assert lin.port_names == ("x", "weight")
    assert [p.attr("name") for p in g.params()] == ["proj.weight"]
    output(g, lin.out(), "y")
    verify(finish(g))
    assert g.type_of(lin.out()) == TensorType(F, ("B", "N", 4))
    assert g.node(lin.inputs[1].node).types[0].dtype is DType.FLOAT
