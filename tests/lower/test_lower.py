"""Lowering: Program → IR graph, checked node by node against the op table."""

from __future__ import annotations

import math
import pathlib

import pytest

from sparkc.frontend.check import check
from sparkc.frontend.parser import parse
from sparkc.ir.graph import Graph
from sparkc.ir.ops import OPS, instantiate, tied_embed_init
from sparkc.ir.types import DType, TensorType
from sparkc.lower import lower

F = "t.spark"
ROOT = pathlib.Path(__file__).resolve().parents[2]

SRC = """\
block Layer(d, heads) {
  input x: float[B, N, d]
  h = x + attention(rmsnorm(x), heads=heads, basis=basis(max_len=64, freqs=2))
  return h + mlp(rmsnorm(h), hidden=4 * d)
}
model M(vocab = 32, d = 16, heads = 2, layers = 2) {
  input tokens: i64[B, N]
  input targets: i64[B, N]
  tok = embed(tokens, vocab=vocab, dim=d)
  h = repeat(layers) Layer(tok * 0.5, d=d, heads=heads)
  r = token_router(h, noise=false)
  logits = linear(h, out=vocab, tie=tok)
  output logits
  output gate = r.gate
  loss ce = cross_entropy(logits, targets) weight 2
}
"""


def _lower(src: str = SRC) -> tuple[Graph, object]:
    prog = check(parse(src, F))
    return lower(prog), prog


def test_every_op_node_type_checks_against_the_op_table() -> None:
    g, _ = _lower()
    for node in g.topo_order():
        if node.op not in OPS:
            continue
        spec = OPS[node.op]
        ports = [p.name for p in spec.inputs]
        n_ports = sum(1 for name in node.port_names if name in ports)
        types = {name: g.type_of(v) for name, v in zip(node.port_names[:n_ports], node.inputs)}
        inst = instantiate(node.op, types, dict(node.attrs))
        assert inst.outputs == node.types, node
        assert [k for k, _ in node.attrs] == [h.name for h in spec.hypers]
        tied = ["weight"] if node.attr("tie") else []  # a tied linear reads the embed's weight last
        assert list(node.port_names[n_ports:]) == [p.name for p in inst.params] + tied
        for ps, v in zip(inst.params, node.inputs[n_ports:]):
            param = g.node(v.node)
            assert param.op == "param"
            assert param.attr("name") == f"{node.scope}.{ps.name}"
            assert param.types == (TensorType(ps.dtype, ps.shape),)
            init = ps.init
            if node.op == "embed" and any(
                n.attr("tie") == node.scope for n in g.nodes_of("linear")
            ):
                init = tied_embed_init(ps.shape[1])  # the weight of a tied LM head too
            assert param.attr("init") == init and param.attr("trainable") == ps.trainable


def test_parameters_exist_once_and_match_the_param_specs() -> None:
    g, prog = _lower()
    params = g.params()
    names = [p.attr("name") for p in params]
    assert len(names) == len(set(names))
    assert names == prog.param_names()
    total = sum(math.prod(p.types[0].shape) for p in params)
    specs = sum(ps.numel for op in prog.ops for ps in op.spec.params)
    assert total == specs
    d, vocab, layers = 16, 32, 2
    per_layer = (2 * d) + 4 * d * d + 2 * (2 + 2 + 4)  # two norms, wq wk wv wo, basis gains
    per_layer += d * 4 * d + 4 * d + 4 * d * d + d  # mlp fc1, fc2
    expected = vocab * d + layers * per_layer + (d + 1) + vocab  # embed, layers, router, head bias
    assert total == expected
    # Every param has one reader, except the tied embedding weight (the embed and the head).
    readers = {p.attr("name"): len(g.users(p.id)) for p in params}
    assert readers.pop("tok.weight") == 2
    assert all(n == 1 for n in readers.values())


def test_tied_head_reuses_the_embedding() -> None:
    g, _ = _lower()
    head = next(n for n in g.nodes_of("linear") if n.scope == "logits")
    assert head.attr("tie") == "tok"
    assert head.port_names == ("x", "bias", "weight")
    assert g.node(head.inputs[-1].node).attr("name") == "tok.weight"
    assert "logits.weight" not in [p.attr("name") for p in g.params()]
    assert "tok.weight" in [p.attr("name") for p in g.params()]


def test_inputs_consts_outputs_and_aux_sum() -> None:
    g, _ = _lower()
    assert [(n.attr("name"), n.attr("source_dtype"), n.types[0]) for n in g.inputs()] == [
        ("tokens", "i64", TensorType(DType.I64, ("B", "N"))),
        ("targets", "i64", TensorType(DType.I64, ("B", "N"))),
    ]
    consts = g.nodes_of("const")
    assert [c.attr("value") for c in consts] == [0.5]
    assert consts[0].types == (TensorType(DType.FLOAT, ()),)
    outs = g.outputs()
    assert [(o.attr("name"), o.attr("kind"), o.attr("weight")) for o in outs] == [
        ("logits", "output", None),
        ("gate", "output", None),
        ("ce", "loss", 2.0),
    ]
    (aux,) = g.nodes_of("aux_sum")
    router = next(n for n in g.nodes_of("token_router"))
    assert aux.inputs == (router.out(2),)
    assert aux.types == (TensorType(DType.FLOAT, ()),)


def test_aux_sum_exists_without_aux_losses() -> None:
    g, _ = _lower("model M(d = 4) {\n  input x: float[B, d]\n  output y = relu(x)\n}\n")
    (aux,) = g.nodes_of("aux_sum")
    assert aux.inputs == ()


def test_hyperparameters_become_attributes() -> None:
    g, _ = _lower()
    attn = next(n for n in g.nodes_of("attention"))
    assert attn.scope == "h.0.h_attention"
    assert attn.attr("basis") == (
        ("freqs", 2),
        ("legendre", 4),
        ("over", "distance"),
        ("max_len", 64),
    )
    assert attn.attr("kv_heads") == 2 and attn.attr("causal") is True
    assert g.hyper == (("vocab", 32), ("d", 16), ("heads", 2), ("layers", 2))
    assert g.name == "M"


def test_lowering_is_deterministic() -> None:
    def text(g: Graph) -> list[tuple]:
        return [
            (n.id, n.op, n.inputs, n.attrs, n.types, n.scope, n.port_names) for n in g.topo_order()
        ]

    assert text(_lower()[0]) == text(_lower()[0])


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.spark")), ids=lambda p: p.stem)
def test_examples_lower_and_verify(path: pathlib.Path) -> None:
    from sparkc.ir.verify import verify

    g = lower(check(parse(path.read_text(), str(path))))
    verify(g, "lower")
    assert g.is_acyclic() and len(g.nodes_of("aux_sum")) == 1
