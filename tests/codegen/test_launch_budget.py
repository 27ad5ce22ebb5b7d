"""Launch budget of a tiny_gpt training step on the Triton path (interpreter, launches recorded).

A step of ~70 launches is host-bound on the lent H200 at 80-140 µs of host time per launch
(docs/performance.md, 2026-12-02), so the launch count is a performance property: these tests
fail when a change splits a fused kernel again or stops fusing the attention projections.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from launch_record import recording

from sparkc import api

ROOT = Path(__file__).resolve().parents[2]
# Counted 2026-12-02 (third session), forward + backward under the interpreter: 40 launches with
# one layer, 26 more per layer (66 with the example's two layers; 80 before the q/k/v fusion and
# the pass-through backward of residual-only epilogues).
STEP_BUDGET = 66
LAYER_BUDGET = 26


def _step_launches(layers: int) -> list[dict]:
    # The kernels are recorded, not run: the step's host code never reads a kernel's result
    # (a test below checks that running them launches the same list), and interpreting them
    # took ~65 s of the suite.
    return _launches(layers, run_kernels=False)


def _launches(layers: int, run_kernels: bool) -> list[dict]:
    module = api.load(ROOT / "examples" / "tiny_gpt.spark")
    torch.manual_seed(0)
    net = module.Model(impl="triton", layers=layers).train()
    tokens = torch.randint(0, 64, (2, 5))
    with recording([], run_kernels=run_kernels):
        net(tokens, tokens).loss.backward()  # first call: tile choices, imports
    records: list[dict] = []
    with recording(records, run_kernels=run_kernels):
        net(tokens, tokens).loss.backward()
    return records


def test_recorded_launches_equal_the_run_ones():
    """Recording without running (what the budgets count) launches the same kernels with the same
    arguments as running them, for one layer."""
    assert _launches(1, run_kernels=False) == _launches(1, run_kernels=True)


def test_tiny_gpt_step_stays_within_its_launch_budget():
    records = _step_launches(layers=2)
    assert len(records) <= STEP_BUDGET, Counter(r["kernel"] for r in records).most_common(8)


def test_each_layer_stays_within_its_launch_budget():
    # Per layer: the q/k/v projections as one forward GEMM and two backward GEMMs (not three and
    # six), attention's output projection with its residual add (no epilogue backward kernel:
    # dy passes through), the MLP's two GEMMs, attention and two norms.
    one, three = _step_launches(layers=1), _step_launches(layers=3)
    added = Counter(r["kernel"] for r in three) - Counter(r["kernel"] for r in one)
    assert (len(three) - len(one)) / 2 <= LAYER_BUDGET, added
    gemm_forwards = sum(
        n for k, n in added.items() if k.startswith("mm") and k.endswith("_fwd_kernel")
    )
    assert gemm_forwards == 2 * 4, added
