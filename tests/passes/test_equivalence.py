"""Property: the default pipeline preserves what a graph computes.

Random DAGs of arithmetic and elementwise ops over inputs and constants (including the
identities canonicalize removes and the duplicates cse merges) are evaluated with numpy in
float64 before and after `canonicalize, cse, dce`; the outputs must agree, the verifier must
accept every intermediate graph, and a second run of the pipeline must change nothing.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ir_samples import F, const, finish, inp, op, output

from sparkc.ir.graph import Graph
from sparkc.ir.printer import print_graph
from sparkc.passes import PassManager

_NUMPY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": np.negative,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
}
_BINARY = ("add", "sub", "mul", "div")
_UNARY = ("neg", "relu", "sigmoid", "tanh")
_CONSTS = (0.0, -0.0, 1.0, 2.0, 0.5, -3.0, 0, 1, 2)


def evaluate(g: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    values: dict[tuple[str, int], np.ndarray] = {}
    results = {}
    with np.errstate(all="ignore"):
        for n in g.topo_order():
            args = [values[(v.node, v.index)] for v in n.inputs]
            if n.op == "input":
                values[(n.id, 0)] = feeds[n.attr("name")]
            elif n.op == "const":
                values[(n.id, 0)] = np.float64(n.attr("value"))
            elif n.op == "output":
                results[n.attr("name")] = np.broadcast_to(args[0], (3, 4))
            elif n.op == "aux_sum":
                continue
            else:
                values[(n.id, 0)] = _NUMPY[n.op](*args)
    return results


@st.composite
def graphs(draw) -> Graph:
    g = Graph("Random")
    pool = [inp(g, "x", F, ("B", 4)), inp(g, "y", F, (4,))]
    for i in range(draw(st.integers(1, 14))):
        action = draw(st.sampled_from(("binary", "binary", "unary", "copy")))
        ops_so_far = [n for n in pool if n.op != "input"]
        if action == "copy" and ops_so_far:
            # A duplicate (operands maybe swapped) for cse to find, or not to find.
            src = draw(st.sampled_from(ops_so_far))
            ins = dict(zip(src.port_names, src.inputs))
            if len(ins) == 2 and draw(st.booleans()):
                ins = {"a": ins["b"], "b": ins["a"]}
            pool.append(op(g, src.op, f"v{i}", **ins))
        elif action == "binary":
            name = draw(st.sampled_from(_BINARY))
            a, b = (
                draw(st.sampled_from(pool))
                if draw(st.integers(0, 2))
                else const(g, draw(st.sampled_from(_CONSTS)))
                for _ in range(2)
            )
            pool.append(op(g, name, f"v{i}", a=a.out(), b=b.out()))
        else:
            name = draw(st.sampled_from(_UNARY))
            x = draw(st.sampled_from(pool))
            if g.type_of(x.out()).dtype is not F:
                continue
            pool.append(op(g, name, f"v{i}", x=x.out()))
    # Most unread values become outputs (so rewrites are observable); the rest are dead code.
    k = 0
    for node in pool[2:]:
        if not g.users(node.id) and g.type_of(node.out()).dtype is F and draw(st.integers(0, 3)):
            output(g, node.out(), f"out{k}")
            k += 1
    if not g.outputs():
        output(g, pool[0].out(), "out")
    return finish(g)


@settings(max_examples=80, deadline=None)
@given(graphs(), st.integers(0, 2**31 - 1))
def test_pipeline_preserves_values(g: Graph, seed: int) -> None:
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=(4,))}
    feeds["x"][0, 0] = 0.0  # exercise x/0 and signed zeros
    before = evaluate(g, feeds)
    PassManager(verify_each=True).run(g)
    after = evaluate(g, feeds)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-12, atol=0, equal_nan=True)
    text = print_graph(g)
    PassManager().run(g)
    assert print_graph(g) == text
