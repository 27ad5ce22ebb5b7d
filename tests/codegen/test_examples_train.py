"""Every example model trains as a causal next-token model on the CPU (the generated reference
path): on the arithmetic-progression task of the main job, the task loss falls well below
ln(vocab) within a short run. Small widths keep this to seconds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from training import task_losses

import sparkc

ROOT = Path(__file__).resolve().parents[2]

# (example, hyperparameter overrides, name of its task-loss output, steps, learning rate).
# spark_k's tied head starts near ln(vocab) like the others (its embedding is initialised
# N(0, 1/dim), docs/ops_decisions.md), so it gets the same budget.
CASES = [
    ("tiny_gpt", {"d": 32, "layers": 1}, "ce", 80, 3e-3),
    ("spark_k", {"d": 32, "layers": 1}, "ce", 80, 3e-3),
    ("splatflow", {}, "ce", 80, 3e-3),
    ("hspmn", {}, "ce", 80, 3e-3),
]


@pytest.mark.parametrize("name, hyper, loss_name, steps, lr", CASES, ids=[c[0] for c in CASES])
def test_example_learns_next_token_task(name, hyper, loss_name, steps, lr):
    module = sparkc.load(ROOT / "examples" / f"{name}.spark", **hyper)
    torch.manual_seed(0)
    net = module.Model(impl="reference")
    vocab = int(net.HYPER["vocab"])
    losses = task_losses(net, vocab, steps, lr, loss_name=loss_name)
    first = sum(losses[:5]) / 5
    last = sum(losses[-5:]) / 5
    assert last < 0.5 * math.log(vocab) and last < 0.5 * first, (name, first, last)
