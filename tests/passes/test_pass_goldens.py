"""Pass goldens: each `golden/NAME.spark` beside its IR text before and after each pass.

`NAME.ir` is the lowered graph; `NAME.after-PASS.ir` the graph after the pipeline prefix ending
with PASS (`canonicalize`, then `cse`, then `dce`), verified after every pass. Run
`pytest tests/passes --update-goldens` to rewrite the expected files, then review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkc.ir.printer import print_graph
from sparkc.passes import PassManager
from sparkc.pipeline import run_pipeline

GOLDEN = Path(__file__).parent / "golden"
PIPELINE = ["canonicalize", "cse", "dce"]
PROGRAMS = sorted(p.stem for p in GOLDEN.glob("*.spark"))


def _lowered(name: str):
    path = GOLDEN / f"{name}.spark"
    return run_pipeline(path.read_text(), f"{name}.spark", stop_after="lower").artefact


def _check(expected: Path, actual: str, update: bool) -> None:
    if update:
        expected.write_text(actual)
        return
    assert expected.exists(), f"{expected.name} is missing; run pytest --update-goldens"
    assert actual == expected.read_text(), f"{expected.name} differs; review, then --update-goldens"


def test_there_are_golden_programs() -> None:
    assert {"canonicalize", "cse", "dce"} <= set(PROGRAMS)


@pytest.mark.parametrize("name", PROGRAMS)
def test_lowered_ir(name: str, update_goldens: bool) -> None:
    _check(GOLDEN / f"{name}.ir", print_graph(_lowered(name)), update_goldens)


@pytest.mark.parametrize("upto", range(len(PIPELINE)), ids=PIPELINE)
@pytest.mark.parametrize("name", PROGRAMS)
def test_ir_after_pass(name: str, upto: int, update_goldens: bool) -> None:
    graph = _lowered(name)
    PassManager(PIPELINE[: upto + 1], verify_each=True).run(graph)
    _check(GOLDEN / f"{name}.after-{PIPELINE[upto]}.ir", print_graph(graph), update_goldens)
