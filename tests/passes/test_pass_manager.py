"""The pass registry and the pass manager: names, printing, timing, verification."""

from __future__ import annotations

import pytest
from ir_samples import tiny_gpt

from sparkc.diagnostics import CompilerBug, SparkError
from sparkc.ir.graph import Graph
from sparkc.ir.printer import print_graph
from sparkc.passes import DEFAULT_PIPELINE, PASSES, Pass, PassManager, register


def test_registry_holds_the_default_pipeline() -> None:
    assert DEFAULT_PIPELINE[:3] == ["canonicalize", "cse", "dce"]
    for name in DEFAULT_PIPELINE:
        p = PASSES[name]
        assert isinstance(p, Pass)
        assert p.name == name and p.description


def test_unknown_pass_is_a_user_error_with_a_suggestion() -> None:
    with pytest.raises(SparkError) as info:
        PassManager(["canonicalize", "csee", "nonsense_pass"])
    diags = info.value.diagnostics
    assert [d.code for d in diags] == ["E0901", "E0901"]
    assert "unknown pass 'csee'" in diags[0].message
    assert "did you mean 'cse'?" in diags[0].help
    assert "known passes:" in diags[1].help and "did you mean" not in diags[1].help


def test_unknown_print_after_is_a_user_error() -> None:
    with pytest.raises(SparkError) as info:
        PassManager(["cse"], print_after=["dec"])
    assert info.value.diagnostics[0].code == "E0901"
    assert "did you mean 'dce'?" in info.value.diagnostics[0].help


def test_print_after_one_pass() -> None:
    out: list[str] = []
    g = tiny_gpt(1)
    PassManager(["canonicalize", "cse", "dce"], print_after={"cse"}, sink=out.append).run(g)
    assert len(out) == 1
    head, _, body = out[0].partition("\n")
    assert head == "// ----- IR after cse (unchanged) -----"
    assert body == print_graph(g)


def test_print_after_all_and_changed_flag() -> None:
    out: list[str] = []
    g = tiny_gpt(1)
    relu_in = g.nodes_of("add")[0]
    g.add_instance("relu", {"x": relu_in.out()}, {}, "dead")  # unused: dce removes it
    PassManager(["cse", "dce"], print_after="all", sink=out.append).run(g)
    assert [s.partition("\n")[0] for s in out] == [
        "// ----- IR after cse (unchanged) -----",
        "// ----- IR after dce (changed) -----",
    ]
    assert "relu" in out[0] and "relu" not in out[1]


def test_time_passes_table() -> None:
    out: list[str] = []
    g = tiny_gpt(1)
    g.add_instance("relu", {"x": g.nodes_of("add")[0].out()}, {}, "dead")
    m = PassManager(["dce", "cse", "dce"], verify_each=True, time_passes=True, sink=out.append)
    m.run(g)
    table = out[-1].splitlines()
    assert table[0] == "===== pass timings ====="
    assert table[1].split() == ["pass", "runs", "ms", "changed"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert rows["dce"][1] == "2" and rows["dce"][3] == "1"  # ran twice, changed once
    assert rows["cse"][1] == "1" and rows["cse"][3] == "0"
    assert rows["(verify)"][1] == "4"  # the input, then after each of the three passes
    assert "total" in rows
    stats = {s.name: s for s in m.stats}
    assert stats["dce"].runs == 2 and stats["dce"].seconds >= 0


class _Breaker:
    name = "test_breaker"
    description = "removes the aux_sum (a broken invariant)"

    def run(self, graph: Graph) -> bool:
        graph.remove(graph.nodes_of("aux_sum")[0].id)
        return True


class _NotBool:
    name = "test_not_bool"
    description = "returns None"

    def run(self, graph: Graph):
        return None


def test_verify_each_names_the_guilty_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PASSES, "test_breaker", _Breaker())
    with pytest.raises(CompilerBug) as info:
        PassManager(["cse", "test_breaker", "dce"], verify_each=True).run(tiny_gpt(1))
    assert info.value.stage == "pass test_breaker"
    assert "aux_sum" in str(info.value)
    # Without verification the broken graph goes through (the verifier is what catches it).
    PassManager(["test_breaker"], verify_each=False).run(tiny_gpt(1))


def test_verify_each_checks_the_input_first() -> None:
    g = tiny_gpt(1)
    g.remove(g.nodes_of("aux_sum")[0].id)
    with pytest.raises(CompilerBug) as info:
        PassManager(["cse"], verify_each=True).run(g)
    assert info.value.stage == "input to the pass pipeline"


def test_a_pass_must_return_a_bool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PASSES, "test_not_bool", _NotBool())
    with pytest.raises(CompilerBug, match="not a bool"):
        PassManager(["test_not_bool"]).run(tiny_gpt(1))


def test_register_rejects_duplicates_and_non_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sparkc.passes.base.PASSES", dict(PASSES))
    with pytest.raises(CompilerBug, match="registered twice"):
        register(PASSES["cse"])
    with pytest.raises(CompilerBug, match="not a pass"):
        register(object())


def test_default_pipeline_and_return_value() -> None:
    g = tiny_gpt(1)
    assert PassManager().run(g) is g
    assert PassManager().names == DEFAULT_PIPELINE
