"""dce: reachability from outputs, losses and aux_sum; dead instances lose their parameters."""

from __future__ import annotations

from ir_samples import F, finish, inp, op, output, tiny_gpt

from sparkc.ir.graph import Graph
from sparkc.ir.printer import print_graph
from sparkc.ir.types import DType
from sparkc.ir.verify import verify
from sparkc.passes import PASSES, dead_instances


def _dce(g: Graph) -> bool:
    verify(g)
    changed = PASSES["dce"].run(g)
    verify(g, "after dce")
    return changed


def _param_names(g: Graph) -> list[str]:
    return [p.attr("name") for p in g.params()]


def test_unused_instance_goes_with_its_parameters() -> None:
    g = tiny_gpt(1)
    h = g.nodes_of("add")[-1]
    dead = op(g, "attention", "a", {"heads": 4}, x=h.out())  # `a = attention(h)`, never used
    op(g, "relu", "a_relu", x=dead.out())
    before = _param_names(g)
    found = dead_instances(g)
    assert [(d.scope, d.op) for d in found] == [("a", "attention")]
    assert found[0].params == ("a.wq.weight", "a.wk.weight", "a.wv.weight", "a.wo.weight")
    assert _dce(g)
    assert _param_names(g) == [p for p in before if not p.startswith("a.")]
    assert not g.nodes_of("attention")[1:] and not g.nodes_of("relu")
    assert print_graph(g) == print_graph(tiny_gpt(1))
    assert not PASSES["dce"].run(g) and dead_instances(g) == []


def test_aux_loss_keeps_an_unused_op_alive() -> None:
    g = tiny_gpt(1)
    aux = g.nodes_of("aux_sum")[0]
    h = g.nodes_of("add")[-1]
    r = op(g, "spd_router", "r", x=h.out())  # `r = spd_router(h)`: y unused, loss trains
    g.update(aux.id, inputs=(*aux.inputs, r.out(3)))
    assert dead_instances(g) == []
    assert not _dce(g)
    assert g.nodes_of("spd_router")


def test_unused_inputs_stay() -> None:
    g = Graph("G")
    x = inp(g, "x", F, ("B",))
    inp(g, "unused", F, ("B",))
    r = op(g, "relu", "r", x=x.out())
    op(g, "tanh", "t", x=r.out())  # dead
    output(g, r.out(), "y")
    finish(g)
    assert _dce(g)
    assert (
        print_graph(g)
        == """\
graph G() {
  %0 : float[B] = input "x"
  %1 : float[B] = input "unused"
  %2 : float[B] = relu(%0)   # r
  output "y" = %2
  aux_loss = aux_sum()
}
"""
    )


def test_tied_embedding_stays_alive() -> None:
    g = Graph("G")
    tokens = inp(g, "tokens", DType.I64, ("B", "N"))
    x = inp(g, "x", F, ("B", "N", 8))
    op(g, "embed", "tok", {"vocab": 10, "dim": 8}, tokens=tokens.out())  # output unused
    head = op(g, "linear", "head", {"out": 10, "tie": "tok"}, x=x.out())
    output(g, head.out(), "logits")
    finish(g)
    assert dead_instances(g) == []
    assert not _dce(g)
    assert "tok.weight" in _param_names(g)


def test_dead_chain_is_removed_readers_first() -> None:
    g = Graph("G")
    x = inp(g, "x", F, ("B",))
    cur = x
    for i in range(5):
        cur = op(g, "sigmoid", f"s{i}", x=cur.out())
    output(g, x.out(), "y")
    finish(g)
    assert _dce(g)
    assert len(g) == 3  # input, output, aux_sum
