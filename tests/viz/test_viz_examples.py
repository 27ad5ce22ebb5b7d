"""Drawings of every example: valid DOT, one cluster per block instance, Mermaid balanced."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pydot
import pytest

from sparkc.pipeline import run_pipeline
from sparkc.viz import to_dot, to_mermaid

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.spark"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_drawings(path: Path) -> None:
    g = run_pipeline(path.read_text(), path.name, stop_after="opt").artefact
    dot = to_dot(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        (parsed,) = pydot.graph_from_dot_data(dot)
    assert parsed.get_name() == "sparkc"
    # Every repeated layer `name.i.` of the model gets its own cluster.
    layers = sorted(
        {m.group(1) for n in g.topo_order() if (m := re.match(r"^([A-Za-z_]\w*\.\d+)\.", n.scope))}
    )
    for layer in layers:
        assert f'label="{layer}"' in dot
    mer = to_mermaid(g)
    lines = [x.strip() for x in mer.splitlines()]
    assert sum(x.startswith("subgraph ") for x in lines) == lines.count("end")
