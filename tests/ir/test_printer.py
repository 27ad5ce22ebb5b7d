"""The canonical IR text: exact form, determinism, independence from node ids."""

from __future__ import annotations

import math

from ir_samples import F, const, finish, inp, loss, op, output, tiny_gpt, zoo

from sparkc.ir.graph import Graph
from sparkc.ir.printer import format_value, print_graph, print_order
from sparkc.ir.types import DType, TensorType


def _small(pad: int = 0) -> Graph:
    """A small model; `pad` creates and deletes throwaway nodes first, shifting every node id."""
    g = Graph("Small", (("d", 8), ("scale", 0.5)))
    for i in range(pad):
        junk = g.add("const", (), {"value": 1.0}, (TensorType(F, ()),))
        g.remove(junk.id)
    x = inp(g, "x", F, ("B", "N", 8), "f16")
    y = inp(g, "y", DType.I64, ("B", "N"), "int")
    n = op(g, "rmsnorm", "n", x=x.out())
    half = const(g, 0.5)
    s = op(g, "mul", "s", a=n.out(), b=half.out())
    r = op(g, "token_router", "r", x=s.out())
    lg = op(g, "linear", "head", {"out": 5, "bias": False}, x=s.out())
    ce = op(g, "cross_entropy", "ce", logits=lg.out(), targets=y.out())
    output(g, lg.out(), "logits")
    loss(g, ce.out(), "ce", 0.25)
    output(g, r.out(1), "gate")
    return finish(g)


EXPECTED_SMALL = """\
graph Small(d=8, scale=0.5) {
  %0 : float[B,N,8] = input "x" f16
  %1 : i64[B,N] = input "y" int
  %2 : float[8] = param "n.weight" ones
  %3 : float[B,N,8] = rmsnorm(%0, %2) eps=1e-06   # n
  %4 : float[] = const 0.5
  %5 : float[B,N,8] = mul(%3, %4)   # s
  %6 : float[1,8] = param "r.w.weight" linear_weight
  %7 : float[1] = param "r.w.bias" linear_bias
  %8 : (bool[B,N], float[B,N], float[]) = token_router(%5, %6, %7) sparsity=0.2 mode=threshold noise=true aux_weight=0.1   # r
  %9 : float[5,8] = param "head.weight" linear_weight
  %10 : float[B,N,5] = linear(%5, %9) out=5 bias=false tie=none   # head
  %11 : float[] = cross_entropy(%10, %1) ignore_index=-100   # ce
  output "logits" = %10
  output "gate" = %8.1
  loss "ce" = %11 weight=0.25
  aux_loss = aux_sum(%8.2)
}
"""


def test_exact_text() -> None:
    assert print_graph(_small()) == EXPECTED_SMALL


def test_node_ids_do_not_matter() -> None:
    a, b = _small(), _small(pad=7)
    assert [n.id for n in a.topo_order()] != [n.id for n in b.topo_order()]
    assert print_graph(a) == print_graph(b)


def test_deterministic_and_complete() -> None:
    g = zoo()
    text = print_graph(g)
    assert text == print_graph(g) == print_graph(g.copy())
    # One line per node plus the header and the closing brace.
    assert len(text.splitlines()) == len(g) + 2
    assert len(print_order(g)) == len(g)


def test_late_constant_prints_beside_its_user() -> None:
    g = tiny_gpt(1)
    first_add = g.nodes_of("add")[0]
    late = const(g, 3.0)  # created last, read by an early node
    g.update(first_add.id, op="mul", inputs=(first_add.inputs[0], late.out()))
    lines = print_graph(g).splitlines()
    i = next(k for k, line in enumerate(lines) if "= const 3.0" in line)
    assert "= mul(" in lines[i + 1]


def test_attrs_follow_op_table_order_not_node_order() -> None:
    g = tiny_gpt(1)
    att = g.nodes_of("attention")[0]
    before = print_graph(g)
    g.update(att.id, attrs=tuple(reversed(att.attrs)))
    assert print_graph(g) == before


def test_dead_params_print_before_the_sinks() -> None:
    g = tiny_gpt(1)
    x = g.inputs()[0]
    emb = op(g, "embed", "unused", {"vocab": 3, "dim": 2}, tokens=x.out())
    g.remove(emb.id)  # leaves its weight without an owner (a state dce never leaves)
    lines = print_graph(g).splitlines()
    i = next(k for k, line in enumerate(lines) if '"unused.weight"' in line)
    assert lines[i + 1].lstrip().startswith("output ")


def test_value_spelling() -> None:
    assert format_value(0.1) == "0.1"
    assert format_value(1e-6) == "1e-06"
    assert format_value(10000.0) == "10000.0"
    assert format_value(math.inf) == "inf" and format_value(-math.inf) == "-inf"
    assert format_value(math.nan) == "nan"
    assert format_value(True) == "true" and format_value(3) == "3"
    assert format_value(None) == "none"
    assert format_value((("freqs", 2), ("over", "key"))) == "(freqs=2, over=key)"
    assert float(format_value(1 / 3)) == 1 / 3  # shortest round-trip spelling


def test_aux_sum_reader_is_named() -> None:
    g = _small()
    aux = g.nodes_of("aux_sum")[0]
    output(g, aux.out(), "aux")
    assert 'output "aux" = %aux_loss' in print_graph(g)
