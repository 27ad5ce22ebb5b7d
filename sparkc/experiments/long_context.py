"""Experiment `long_context`: language modelling with long-range dependencies at growing context
lengths: quality and cost of a tiny GPT, SplatFlow and HSPMN (20% of tokens routed) at equal
parameter counts.

Consumes `examples/experiments/long_context.spark` (models `GPT`, `Splat`, `HSPMN`) and a
`harness.Config`; for every context length N trains each variant for the same number of
steps on a copy corpus (`tasks.copy_batch`: a random segment, a separator, the segment again;
the same number of tokens per batch at every N), and measures the held-out loss at equal steps
(all positions, and the copied half alone), the training loss at equal wall-clock time (the
time the fastest variant needed for its steps), training tokens per second and, on CUDA, the
peak memory. Produces a `report.Report`.

The claims under test: SplatFlow's "7–10× faster training than standard attention" and
HSPMN's cheaper attention (its own measurement: 0.63× the dense throughput).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from . import harness, tasks
from .report import Column, Report

NAME = "long_context"
QUESTION = (
    "Next-token prediction on a long-range copy corpus at context lengths N: held-out loss at "
    "equal steps (all tokens and the copied half), training loss at equal wall-clock time, "
    "tokens per second and peak memory for a tiny GPT, SplatFlow and HSPMN (sparsity 0.2) of "
    "equal parameter count."
)

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "lengths": (16, 32), "vocab": 16, "d": 32, "heads": 2, "layers": 1, "splats": 4,
        "sparsity": 0.2, "tokens": 256, "steps": 15, "lr": 3e-3, "eval_tokens": 512,
    },
    "full": {
        "lengths": (1024, 4096, 16384), "vocab": 64, "d": 256, "heads": 4, "layers": 4,
        "splats": 64, "sparsity": 0.2, "tokens": 65536, "steps": 1000, "lr": 1e-3,
        "eval_tokens": 131072,
    },
}  # fmt: skip


def variants(size: dict[str, Any]) -> list[harness.Variant]:
    d = size["d"]
    return [
        harness.Variant("tiny_gpt", "GPT", {"hidden": 4 * d}, match=None),
        harness.Variant("splatflow", "Splat", {"hidden": 4 * d, "splats": size["splats"]}),
        harness.Variant(
            f"hspmn (sparsity {size['sparsity']})",
            "HSPMN",
            {"hidden": 2 * d, "sparsity": size["sparsity"]},
        ),
    ]


def columns(lengths: tuple[int, ...]) -> list[Column]:
    out = []
    for key, label, panel, digits, timing in (
        ("loss", "loss", "held-out loss at equal steps", 3, False),
        ("copy", "copy loss", "copy-half loss at equal steps", 3, False),
        ("loss_time", "loss @ equal time", "training loss at equal wall-clock", 3, True),
        ("tokens_per_s", "tokens/s", "training tokens per second", 0, True),
        ("peak_mb", "peak MB", "peak memory (MB, CUDA)", 0, True),
    ):
        out += [Column(f"{key} n={n}", f"{label} N={n}", panel, n, digits, timing) for n in lengths]
    return out


def run(cfg: harness.Config) -> Report:
    size = cfg.size(SIZES)
    lengths = tuple(size["lengths"])
    shared = {"vocab": size["vocab"], "d": size["d"], "heads": size["heads"],
              "layers": size["layers"]}  # fmt: skip
    prepared = harness.prepare(NAME, variants(size), shared)
    cols = columns(lengths)
    report = Report(
        NAME,
        QUESTION,
        cfg.describe(size),
        [p.describe() for p in prepared],
        cols,
        {c.panel: ("context length N", c.panel.split(" at ")[0]) for c in cols if c.panel},
    )
    merged: dict[tuple[str, int], dict[str, float]] = {}
    trains: dict[tuple[str, int], dict[str, Any]] = {}
    results: dict[tuple[int, str, int], harness.TrainResult] = {}

    def run_length(n: int, prep: harness.Prepared) -> None:
        label = prep.variant.label
        batch = max(1, size["tokens"] // n)
        rows = max(1, size["eval_tokens"] // n)

        def make(gen: torch.Generator) -> harness.Batch:
            return tasks.copy_batch(gen, batch, n, size["vocab"])[0]

        def measure(net, seed: int, result: harness.TrainResult) -> dict[str, float]:
            results[(n, label, seed)] = result
            gen = torch.Generator().manual_seed(harness.eval_seed(seed) + n)
            inputs, info = tasks.copy_batch(gen, rows, n, size["vocab"])
            out = harness.evaluate(net, inputs, cfg.device, chunk=max(1, 16384 // n))
            per = F.cross_entropy(
                out["logits"].flatten(0, 1), inputs["targets"].flatten(), reduction="none"
            ).view(rows, n)
            peak = result.peak_memory_mb
            return {
                f"loss n={n}": float(per.mean()),
                f"copy n={n}": float(per[info["copy"]].mean()),
                f"tokens_per_s n={n}": result.tokens_per_s,
                f"peak_mb n={n}": math.nan if peak is None else peak,
            }

        def keep(label: str, seed: int, metrics: dict, train: dict) -> None:
            merged.setdefault((label, seed), {}).update(metrics)
            trains.setdefault((label, seed), {})[f"n={n}"] = train

        harness.run_grid(
            cfg, f"{NAME} N={n}", [prep], make, size["steps"], size["lr"], measure, keep
        )

    for n in lengths:
        for prep in prepared:
            run_length(n, prep)

    for n in lengths:
        # Equal wall-clock: the training time of the fastest variant (mean over seeds).
        times = {
            p.variant.label: sum(
                results[(n, p.variant.label, s)].seconds - results[(n, p.variant.label, s)].warmup_s
                for s in cfg.seeds
            )
            / len(cfg.seeds)
            for p in prepared
        }
        budget = min(times.values())
        for p in prepared:
            for s in cfg.seeds:
                loss = results[(n, p.variant.label, s)].loss_at(budget)
                merged[(p.variant.label, s)][f"loss_time n={n}"] = loss
        report.notes.append(
            f"N={n}: batch of {max(1, size['tokens'] // n)} sequences; equal wall-clock budget "
            f"{budget:.1f} s (the fastest variant's mean training time after its warm-up steps)."
        )
    for (label, seed), metrics in merged.items():
        report.add_run(label, seed, metrics, trains[(label, seed)])
    report.notes.append(
        "The copied half is predictable only by looking N/2 positions back; the first half is "
        f"random (its loss cannot fall below ln({size['vocab'] - 1}) = "
        f"{math.log(size['vocab'] - 1):.2f})."
    )
    return report
