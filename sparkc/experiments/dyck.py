"""Experiment `dyck`: does a model with the differentiable verifier stack (verifier_stack)
recognise balanced brackets better, and keep doing so on longer strings than it was trained on?

Consumes `examples/experiments/dyck.spark` (models `Baseline` and `Verifier`) and a
`harness.Config`; trains each variant at one length on bracket strings of bounded depth, half
corrupted by one edit (`tasks.dyck_batch`), with the label "the prefix so far is balanced" at
every position, then evaluates on held-out strings at the training length and longer ones: the
accuracy of the whole-string label (last position) and the per-position accuracy. Produces a
`report.Report`.

The SPaR-K claim under test: "the verifier generalises to longer contexts" (its own later
benchmark found the verifier below the baseline).
"""

from __future__ import annotations

from typing import Any

import torch

from . import harness, tasks
from .metrics import accuracy
from .report import Column, Report

NAME = "dyck"
QUESTION = (
    "Is a bracket string (several bracket types, bounded nesting depth) balanced? Trained at "
    "one length, evaluated at that length and longer ones: verifier_stack model against a "
    "plain transformer of the same parameter count (RoPE, no learned positions)."
)

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "train_length": 16, "eval_lengths": (16, 32), "types": 2, "max_depth": 4, "d": 16,
        "heads": 2, "layers": 1, "stack": 8, "batch": 16, "steps": 20, "lr": 3e-3, "eval": 64,
    },
    "full": {
        "train_length": 64, "eval_lengths": (64, 128, 256, 512), "types": 3, "max_depth": 8,
        "d": 128, "heads": 4, "layers": 3, "stack": 16, "batch": 64, "steps": 3000,
        "lr": 1e-3, "eval": 1024,
    },
}  # fmt: skip

VARIANTS = [
    harness.Variant("verifier_stack", "Verifier", match=None),
    harness.Variant("baseline", "Baseline"),
]


def run(cfg: harness.Config) -> Report:
    size = cfg.size(SIZES)
    types, depth, lengths = size["types"], size["max_depth"], tuple(size["eval_lengths"])
    shared = {
        "vocab": 2 * types,
        "d": size["d"],
        "heads": size["heads"],
        "layers": size["layers"],
        "hidden": 4 * size["d"],
    }
    variants = [
        harness.Variant(v.label, v.model, {"stack": size["stack"]} if v.match is None else {},
                        v.match)
        for v in VARIANTS
    ]  # fmt: skip
    prepared = harness.prepare(NAME, variants, shared)
    columns = [
        Column(f"acc n={n}", f"string acc N={n}", "whole-string accuracy", n) for n in lengths
    ]
    columns += [
        Column(f"pos n={n}", f"prefix acc N={n}", "per-position accuracy", n) for n in lengths
    ]
    report = Report(
        NAME,
        QUESTION,
        cfg.describe(size),
        [p.describe() for p in prepared],
        columns,
        {
            "whole-string accuracy": ("evaluation length", "accuracy (chance 0.5)"),
            "per-position accuracy": ("evaluation length", "accuracy"),
        },
    )

    def make(gen: torch.Generator) -> harness.Batch:
        return tasks.dyck_batch(gen, size["batch"], size["train_length"], depth, types)[0]

    def measure(net, seed: int, _result) -> dict[str, float]:
        gen = torch.Generator().manual_seed(harness.eval_seed(seed))
        metrics: dict[str, float] = {}
        for n in lengths:
            inputs, info = tasks.dyck_batch(gen, size["eval"], n, depth, types)
            chunk = max(1, 16384 // n)
            out = harness.evaluate(net, inputs, cfg.device, chunk=chunk)
            pred = out["logits"].argmax(-1)
            metrics[f"acc n={n}"] = accuracy(pred[:, -1], info["label"].long())
            metrics[f"pos n={n}"] = accuracy(pred, inputs["targets"])
        return metrics

    harness.run_grid(cfg, NAME, prepared, make, size["steps"], size["lr"], measure, report.add_run)
    report.notes.append(
        f"Training length {size['train_length']}; nesting depth at most {depth} at every "
        "length, so longer strings are longer, not deeper. Half of the strings are corrupted "
        "by one edit (a bracket's type or direction changed), so chance is 0.5."
    )
    return report
