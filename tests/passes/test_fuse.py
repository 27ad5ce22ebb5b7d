"""Fusion (sparkc/passes/fuse.py): the named `fuse` stage, its rules read from op traits.

The pair rules (`OpSpec.pairs`, keyed by the reader's kernel kind), GEMM tails (`gemm_tail`,
`epilogue`) and pointwise chains group the nodes of small programs as documented; the plan is
produced only by the pipeline's stage (code generation never computes one), and fusion is not
also a registered pass.
"""

from __future__ import annotations

import dataclasses

import pytest

from sparkc import api
from sparkc.diagnostics import CompilerBug
from sparkc.ir.ops import OPS
from sparkc.passes import PASSES
from sparkc.passes.fuse import fusion_plan, plan_fusion
from sparkc.pipeline import stage_names

PROGRAM = """
model M(vocab = 16, d = 8) {
  input tokens: i64[B, N]
  input targets: i64[B, N]
  input r: float[B, N, d]
  tok = embed(tokens, vocab=vocab, dim=d)
  pos = pos_embed(tok, max_len=32)
  h = pos + r
  n = rmsnorm(h)
  u = gelu(linear(n, out=d)) * r + h
  v = sigmoid(u) * 2.0 - u
  w = rmsnorm(v)
  output h
  loss ce = cross_entropy(linear(w, out=vocab), targets)
}
"""


def _kinds(graph) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    plan = fusion_plan(graph)
    return [
        (g.kind, tuple(graph.node(n).op for n in g.nodes), tuple(s for _, s in g.epilogue))
        for g in plan.groups
    ]


def test_groups_follow_the_documented_rules():
    graph = api.compile_graph(PROGRAM, "m.spark")
    assert _kinds(graph) == [
        ("embed_pos", ("embed", "pos_embed"), ()),  # pair rule: sole reader of kind pos_embed
        ("rownorm_residual", ("add", "rmsnorm"), ()),  # residual pair rule: h is also read
        ("gemm", ("linear", "gelu", "mul", "add"), ("act:gelu", "mul", "add")),  # GEMM tail
        ("pointwise", ("sigmoid", "mul", "sub"), ()),  # a pointwise chain
        ("rownorm", ("rmsnorm",), ()),
        ("linear_ce", ("linear", "cross_entropy"), ()),  # pair rule at port 0
    ]


def test_a_sum_read_by_an_output_is_not_a_residual_pair():
    """Readers of a residual `add` include special nodes (`output`), which have no kernel."""
    src = "model R(d = 8) {\n  input x: float[B, N, d]\n  v1 = x + x\n  output v1\n}\n"
    graph = api.compile_graph(src, "r.spark")
    assert _kinds(graph) == [("pointwise", ("add",), ())]


def test_unfused_plan_has_one_group_per_op():
    graph = api.compile_graph(PROGRAM, "m.spark")
    plan = plan_fusion(graph, enabled=False)
    assert all(len(g.nodes) == 1 for g in plan.groups)
    assert [g.kind for g in plan.groups][:2] == ["embed", "pos_embed"]


def test_pair_rules_are_read_from_the_spec(monkeypatch):
    """Without embed's pair rule, embed and pos_embed are two groups: the rule is the trait."""
    graph = api.compile_graph(PROGRAM, "m.spark")
    monkeypatch.setitem(OPS, "embed", dataclasses.replace(OPS["embed"], pairs=()))
    kinds = [g.kind for g in plan_fusion(graph).groups]
    assert kinds[:2] == ["embed", "pos_embed"]


def test_fusion_is_a_stage_and_not_a_pass():
    assert "fuse" in stage_names()
    assert "fuse" not in PASSES


def test_code_generation_never_computes_a_plan():
    graph = api.compile_graph(PROGRAM, "m.spark")
    del graph.meta["fusion"]
    with pytest.raises(CompilerBug, match="fuse stage"):
        fusion_plan(graph)
