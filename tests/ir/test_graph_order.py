"""`Graph.topo_order` is networkx's lexicographic topological sort (keyed by creation index),
computed once and kept while nodes are only added, recomputed after any rewiring or removal."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkc.ir.graph import Graph
from sparkc.ir.types import DType, TensorType

T = TensorType(DType.FLOAT, ("B",))


def _nx_order(g: Graph) -> list[str]:
    return list(nx.lexicographical_topological_sort(g._g, key=g._order))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "rewire", "remove", "order"]),
            st.integers(0, 99),
            st.integers(0, 99),
        ),
        max_size=60,
    )
)
def test_kept_order_is_the_lexicographic_topological_order(steps) -> None:
    g = Graph("G")
    ids = [g.add("input", attrs=(("name", "x"),), types=(T,)).id]
    for kind, i, j in steps:
        if kind == "add":
            a, b = ids[i % len(ids)], ids[j % len(ids)]
            ins = [g.node(n).out() for n in sorted({a, b})]
            ids.append(g.add("relu" if a == b else "add", inputs=ins, types=(T,)).id)
        elif kind == "rewire" and len(ids) > 2:
            # Point a node at an older one only (no cycles): a pass replacing a use.
            k = 1 + i % (len(ids) - 1)
            src = ids[j % k]
            g.update(ids[k], inputs=(g.node(src).out(),))
        elif kind == "remove":
            sinks = [n for n in ids[1:] if not list(g._g.successors(n))]
            if sinks:
                victim = sinks[i % len(sinks)]
                g.remove(victim)
                ids.remove(victim)
        order = g.topo_order()
        assert [n.id for n in order] == _nx_order(g)
        assert order == [g.node(n.id) for n in order]  # the kept payloads are the current ones


def test_the_order_is_computed_once_while_nodes_are_added(monkeypatch) -> None:
    calls = []
    real = Graph._lex_topo

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(Graph, "_lex_topo", counting)
    g = Graph("G")
    x = g.add("input", attrs=(("name", "x"),), types=(T,))
    for _ in range(50):
        x = g.add("relu", inputs=(x.out(),), types=(T,))
        g.topo_order()
    assert len(calls) == 1
    g.update(x.id, inputs=x.inputs)  # a rewiring drops the kept order
    g.topo_order()
    assert len(calls) == 2


def _pipeline_counts(monkeypatch, layers: int) -> tuple[int, int]:
    from pathlib import Path

    from sparkc.ir import verify as verify_mod
    from sparkc.pipeline import CompileOptions, run_pipeline

    sorts, walks = [], []
    real_sort, real_walk = Graph._lex_topo, verify_mod._verify
    with monkeypatch.context() as m:
        m.setattr(Graph, "_lex_topo", lambda self: sorts.append(1) or real_sort(self))
        m.setattr(verify_mod, "_verify", lambda g, s: walks.append(1) or real_walk(g, s))
        src = (Path(__file__).parents[2] / "examples" / "tiny_gpt.spark").read_text()
        opts = CompileOptions(overrides={"layers": layers})
        run_pipeline(src, "tiny_gpt.spark", stop_after="fuse", options=opts)
    return len(sorts), len(walks)


def test_pipeline_sorts_and_verifies_a_bounded_number_of_times(monkeypatch) -> None:
    # Each full sort or verifier walk is linear in the graph; how many there are must not grow
    # with the program (it did: 35 sorts for tiny_gpt, one per `topo_order` call, and a verifier
    # walk after every pass even when the pass changed nothing).
    small = _pipeline_counts(monkeypatch, 2)
    assert small == _pipeline_counts(monkeypatch, 6)
    sorts, walks = small
    assert sorts <= 8 and walks <= 2, small
    assert small != (0, 0)


def test_stages_run_with_the_cyclic_collector_paused(monkeypatch) -> None:
    import gc

    from sparkc import pipeline

    seen = []
    stages = [
        pipeline.replace(s, run=lambda a, ctx, f=s.run: seen.append(gc.isenabled()) or f(a, ctx))
        for s in pipeline.STAGES
    ]
    monkeypatch.setattr(pipeline, "STAGES", stages)
    assert gc.isenabled()
    pipeline.run_pipeline(
        "model M() { input x: float[B]  output y = -x }", "m.spark", None, "lower"
    )
    assert seen == [False, False, False] and gc.isenabled()
