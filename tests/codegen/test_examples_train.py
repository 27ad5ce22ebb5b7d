"""Every example model trains as a causal next-token model on the CPU (the generated reference
path): on the arithmetic-progression task of the main job, the task loss falls well below
ln(vocab) within a short run. Small widths keep this to seconds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import sparkc
from sparkc.demo import progressions

ROOT = Path(__file__).resolve().parents[2]

# (example, hyperparameter overrides, name of its task-loss output, steps, learning rate).
# spark_k's tied head starts at a cross-entropy near 30 (unit-variance embeddings, no logit
# scale), so it gets more steps.
CASES = [
    ("tiny_gpt", {"d": 32, "layers": 1}, "ce", 80, 3e-3),
    ("spark_k", {"d": 32, "layers": 1}, "ce", 200, 1e-2),
    ("splatflow", {}, "ce", 80, 3e-3),
    ("hspmn", {}, "ce", 80, 3e-3),
]


@pytest.mark.parametrize("name, hyper, loss_name, steps, lr", CASES, ids=[c[0] for c in CASES])
def test_example_learns_next_token_task(name, hyper, loss_name, steps, lr):
    module = sparkc.load(ROOT / "examples" / f"{name}.spark", **hyper)
    torch.manual_seed(0)
    net = module.Model(impl="reference")
    vocab = int(net.HYPER["vocab"])
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        tokens, targets = progressions(16, 24, vocab, gen)
        out = net(tokens, targets)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        task = out[loss_name]
        losses.append(task.item())
    first = sum(losses[:5]) / 5
    last = sum(losses[-5:]) / 5
    assert last < 0.5 * math.log(vocab) and last < 0.5 * first, (name, first, last)
