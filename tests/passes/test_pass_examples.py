"""The default pipeline on every example: verified after each pass, idempotent, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkc.ir.printer import print_graph
from sparkc.passes import PassManager, dead_instances
from sparkc.pipeline import run_pipeline

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.spark"))
PIPELINE = ["canonicalize", "cse", "dce"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_pipeline_on_example(path: Path) -> None:
    g = run_pipeline(path.read_text(), path.name, stop_after="lower").artefact
    params_before = [p.attr("name") for p in g.params()]
    doomed = {name for d in dead_instances(g) for name in d.params}
    PassManager(PIPELINE, verify_each=True).run(g)
    once = print_graph(g)
    # The parameters that disappear are exactly those dead_instances announced.
    assert [p.attr("name") for p in g.params()] == [n for n in params_before if n not in doomed]
    m = PassManager(PIPELINE, verify_each=True)
    m.run(g)
    assert print_graph(g) == once
    assert all(s.changed == 0 for s in m.stats)
