"""canonicalize: constant folding, identities, operand order; what it must not touch."""

from __future__ import annotations

import math

from ir_samples import F, const, finish, inp, op, output

from sparkc.ir.graph import Graph, Node
from sparkc.ir.printer import print_graph
from sparkc.ir.types import DType, TensorType
from sparkc.ir.verify import verify
from sparkc.passes import PASSES, PassManager


def _run(g: Graph, names=("canonicalize",)) -> bool:
    verify(g)
    changed = PASSES[names[0]].run(g)
    for name in names[1:]:
        PASSES[name].run(g)
    verify(g, "after canonicalize")
    return changed


def _new(name: str = "G") -> tuple[Graph, Node]:
    g = Graph(name)
    x = inp(g, "x", F, ("B", "N", 4))
    return g, x


def _arith(g: Graph, opname: str, a, b=None, scope: str = "") -> Node:
    ports = {"x": a.out()} if b is None else {"a": a.out(), "b": b.out()}
    return op(g, opname, scope or opname, **ports)


def test_folds_constants_and_moves_them_right() -> None:
    g, x = _new()
    two, three = const(g, 2.0), const(g, 3.0)
    six = _arith(g, "mul", two, three, "six")
    y = _arith(g, "add", six, x, "y")
    output(g, y.out(), "y")
    finish(g)
    assert _run(g)
    assert (
        print_graph(g)
        == """\
graph G() {
  %0 : float[B,N,4] = input "x"
  %1 : float[] = const 6.0   # six
  %2 : float[B,N,4] = add(%0, %1)   # y
  output "y" = %2
  aux_loss = aux_sum()
}
"""
    )
    assert not PASSES["canonicalize"].run(g)  # a fixed point


def test_identities_disappear() -> None:
    g, x = _new()
    one, zero = const(g, 1.0), const(g, 0.0)
    a = _arith(g, "mul", x, one, "a")
    b = _arith(g, "div", a, one, "b")
    c = _arith(g, "add", zero, b, "c")  # constant on the left: commuted, then dropped
    d = _arith(g, "sub", c, zero, "d")
    e = _arith(g, "neg", _arith(g, "neg", d, scope="n1"), scope="n2")
    output(g, e.out(), "y")
    finish(g)
    assert _run(g)
    assert (
        print_graph(g)
        == """\
graph G() {
  %0 : float[B,N,4] = input "x"
  output "y" = %0
  aux_loss = aux_sum()
}
"""
    )


def test_identity_needs_an_unchanged_type() -> None:
    g = Graph("G")
    ids = inp(g, "ids", DType.I64, ("B",))
    one = const(g, 1.0)
    y = _arith(g, "mul", ids, one, "y")  # i64 * 1.0 is a float: not an identity
    output(g, y.out(), "y")
    finish(g)
    before = print_graph(g)
    assert not _run(g)
    assert print_graph(g) == before


def test_times_zero_is_kept() -> None:
    g, x = _new()
    zero = const(g, 0.0)
    y = _arith(g, "mul", x, zero, "y")  # NaN/inf/-0.0 semantics: never replaced by zeros
    z = _arith(g, "sub", zero, x, "z")  # 0 - x is not neg(x) for x = 0 (signed zero)
    output(g, y.out(), "y")
    output(g, z.out(), "z")
    finish(g)
    before = print_graph(g)
    assert not _run(g)
    assert print_graph(g) == before


def _fold_one(opname: str, *values) -> float | int | None:
    g = Graph("F")
    cs = [const(g, v) for v in values]
    y = _arith(g, opname, *cs, scope="y")
    output(g, y.out(), "y")
    finish(g)
    _run(g)
    src = g.node(g.outputs()[0].inputs[0].node)
    return src.attr("value") if src.op == "const" else None


def test_fold_values() -> None:
    assert _fold_one("add", 1.5, 2.25) == 3.75
    assert _fold_one("sub", 1, 3) == -2 and isinstance(_fold_one("sub", 1, 3), int)
    assert _fold_one("div", 7, 2) is None  # inexact integer division stays
    assert _fold_one("div", 8, 2) == 4
    assert _fold_one("div", 1.0, 0.0) is None  # inf is left to the run time
    assert _fold_one("mul", 1e308, 10.0) is None  # overflow
    assert _fold_one("mul", 2**62, 4) is None  # outside int64
    assert _fold_one("add", 2, 0.5) == 2.5  # int + float is a float
    assert _fold_one("neg", 2.0) == -2.0
    assert _fold_one("sigmoid", 0.0) == 0.5
    assert _fold_one("relu", -3.0) == 0.0
    assert math.isclose(_fold_one("gelu", 1.0), 0.8413447460685429)
    assert math.isclose(_fold_one("silu", -800.0), 0.0, abs_tol=1e-300)
    assert _fold_one("tanh", 0.0) == 0.0


def test_folded_constant_keeps_the_result_dtype() -> None:
    g = Graph("F")
    y = _arith(g, "add", const(g, 2), const(g, 0.5), "y")
    output(g, y.out(), "y")
    finish(g)
    _run(g)
    (c,) = g.nodes_of("const")
    assert c.types == (TensorType(F, ()),) and c.attr("value") == 2.5


def test_commute_keeps_the_promoted_type() -> None:
    # 2 + mask is i64 (an int beside a bool, as in PyTorch) in either order, so it commutes.
    g = Graph("G")
    mask = inp(g, "mask", DType.BOOL, ("B",))
    two = const(g, 2)
    y = _arith(g, "add", two, mask, "y")
    output(g, y.out(), "y")
    finish(g)
    assert _run(g)
    node = g.node(g.outputs()[0].inputs[0].node)
    assert node.inputs[1].node == two.id and node.types[0].dtype is DType.I64


def test_int32_folding_stays_in_range() -> None:
    g = Graph("F")
    big = g.add("const", attrs=(("value", 2**30),), types=(TensorType(DType.I32, ()),))
    y = _arith(g, "add", big, big, "y")
    output(g, y.out(), "y")
    finish(g)
    _run(g)
    assert not any(c.attr("value") == 2**31 for c in g.nodes_of("const"))


def test_commuted_duplicates_then_merge_in_cse() -> None:
    g, x = _new()
    a = _arith(g, "mul", const(g, 2.0), x, "a")
    b = _arith(g, "mul", x, const(g, 2.0), "b")
    y = _arith(g, "add", a, b, "y")
    output(g, y.out(), "y")
    finish(g)
    PassManager(["canonicalize", "cse", "dce"], verify_each=True).run(g)
    assert len(g.nodes_of("mul")) == 1 and len(g.nodes_of("const")) == 1
    add = g.nodes_of("add")[0]
    assert add.inputs[0] == add.inputs[1]


def test_rewrite_keeps_other_readers_of_the_constant() -> None:
    g, x = _new()
    one = const(g, 1.0)
    a = _arith(g, "mul", x, one, "a")  # dropped
    b = _arith(g, "sub", x, one, "b")  # still reads the 1.0
    output(g, a.out(), "a")
    output(g, b.out(), "b")
    finish(g)
    assert _run(g)
    assert [n.attr("value") for n in g.nodes_of("const")] == [1.0]
    assert g.outputs()[0].inputs[0] == x.out()
