"""cse: what merges, what never merges, and the printed result."""

from __future__ import annotations

import dataclasses

import pytest
from ir_samples import F, const, finish, inp, op, output, tiny_gpt

from sparkc.ir import ops as ops_mod
from sparkc.ir.graph import Graph
from sparkc.ir.printer import print_graph
from sparkc.ir.verify import verify
from sparkc.passes import PASSES


def _cse(g: Graph) -> bool:
    verify(g)
    changed = PASSES["cse"].run(g)
    verify(g, "after cse")
    return changed


def test_merges_pure_duplicates_in_one_sweep() -> None:
    g = Graph("G")
    x = inp(g, "x", F, ("B", 4))
    r1 = op(g, "relu", "r1", x=x.out())
    r2 = op(g, "relu", "r2", x=x.out())
    t1 = op(g, "tanh", "t1", x=r1.out())
    t2 = op(g, "tanh", "t2", x=r2.out())  # equal only once r2 has become r1
    s = op(g, "add", "s", a=t1.out(), b=t2.out())
    output(g, s.out(), "y")
    finish(g)
    assert _cse(g)
    assert (
        print_graph(g)
        == """\
graph G() {
  %0 : float[B,4] = input "x"
  %1 : float[B,4] = relu(%0)   # r1
  %2 : float[B,4] = tanh(%1)   # t1
  %3 : float[B,4] = add(%2, %2)   # s
  output "y" = %3
  aux_loss = aux_sum()
}
"""
    )
    assert not PASSES["cse"].run(g)


def test_commutative_operands_merge() -> None:
    g = Graph("G")
    x, y = inp(g, "x", F, ("B", 4)), inp(g, "y", F, (4,))
    a = op(g, "mul", "a", a=x.out(), b=y.out())
    b = op(g, "mul", "b", a=y.out(), b=x.out())
    c = op(g, "sub", "c", a=x.out(), b=y.out())
    d = op(g, "sub", "d", a=y.out(), b=x.out())  # not commutative
    for n, name in ((a, "a"), (b, "b"), (c, "c"), (d, "d")):
        output(g, n.out(), name)
    finish(g)
    assert _cse(g)
    assert len(g.nodes_of("mul")) == 1 and len(g.nodes_of("sub")) == 2
    assert g.outputs()[0].inputs == g.outputs()[1].inputs


def test_constants_merge_by_exact_value() -> None:
    g = Graph("G")
    x = inp(g, "x", F, ("B",))
    values = [0.5, 0.5, 0.0, -0.0, 1, 1.0]
    for i, v in enumerate(values):
        m = op(g, "mul", f"m{i}", a=x.out(), b=const(g, v).out())
        output(g, m.out(), f"y{i}")
    finish(g)
    assert _cse(g)
    kept = sorted(repr(n.attr("value")) for n in g.nodes_of("const"))
    assert kept == ["-0.0", "0.0", "0.5", "1", "1.0"]


def test_parameter_owners_never_merge() -> None:
    g = tiny_gpt(1)
    x = g.nodes_of("pos_embed")[0]
    # A second norm of the same input: same op, attrs and types, but its own weight.
    extra = op(g, "rmsnorm", "extra", x=x.out())
    output(g, extra.out(), "extra")
    n_before = len(g)
    assert not _cse(g)
    assert len(g) == n_before


def test_inputs_outputs_and_params_never_merge() -> None:
    g = Graph("G")
    a, b = inp(g, "a", F, ("B",)), inp(g, "b", F, ("B",))
    output(g, a.out(), "y1")
    output(g, a.out(), "y2")
    output(g, b.out(), "y3")
    finish(g)
    assert not _cse(g)
    assert len(g.inputs()) == 2 and len(g.outputs()) == 3


def test_noisy_ops_never_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every noisy op of the table owns parameters; make a parameter-free one noisy to test the
    # noise rule on its own.
    noisy = dataclasses.replace(ops_mod.OPS["relu"], noise=lambda hp: True)
    monkeypatch.setitem(ops_mod.OPS, "relu", noisy)
    g = Graph("G")
    x = inp(g, "x", F, ("B",))
    r1, r2 = op(g, "relu", "r1", x=x.out()), op(g, "relu", "r2", x=x.out())
    t1, t2 = op(g, "tanh", "t1", x=x.out()), op(g, "tanh", "t2", x=x.out())
    for n in (r1, r2, t1, t2):
        output(g, n.out(), n.scope)
    finish(g)
    assert _cse(g)
    assert len(g.nodes_of("relu")) == 2 and len(g.nodes_of("tanh")) == 1


def test_different_attrs_do_not_merge() -> None:
    g = Graph("G")
    x = inp(g, "x", F, ("B", 3, 4))
    s1 = op(g, "softmax", "s1", {"dim": -1}, x=x.out())
    s2 = op(g, "softmax", "s2", {"dim": 1}, x=x.out())
    s3 = op(g, "softmax", "s3", {"dim": -1}, x=x.out())
    for n in (s1, s2, s3):
        output(g, n.out(), n.scope)
    finish(g)
    assert _cse(g)
    assert [n.scope for n in g.nodes_of("softmax")] == ["s1", "s2"]
