"""Every example model lowers to a graph the verifier accepts and prints reproducibly."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkc.ir.printer import print_graph
from sparkc.ir.verify import verify
from sparkc.pipeline import run_pipeline

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.spark"))


def lower(path: Path):
    return run_pipeline(path.read_text(), path.name, stop_after="lower").artefact


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_verifies_and_prints_reproducibly(path: Path) -> None:
    g = lower(path)
    verify(g)
    text = print_graph(g)
    assert text == print_graph(lower(path))  # a fresh compilation prints the same bytes
    assert text.startswith(f"graph {g.name}(") and text.endswith("}\n")
