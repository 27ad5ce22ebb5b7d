"""Experiment `recall`: multi-query associative recall, the standard probe for sub-quadratic
sequence mixers (Zoology, Based): how does accuracy fall with the number of key-value pairs
for attention, splat_attention (K = 16 and 64 splats) and fk_attention?

Consumes `examples/experiments/recall.spark` (models `Attention`, `Splat`, `FK`) and a
`harness.Config`; trains each variant on sequences with a number of pairs drawn per batch from
the evaluated counts (`tasks.recall_batch`), scored on the answers only, then evaluates
held-out sequences at each pair count: the accuracy of the greedy answer at every queried key.
Produces a `report.Report`.
"""

from __future__ import annotations

from typing import Any

import torch

from . import harness, tasks
from .metrics import accuracy
from .report import Column, Report

NAME = "recall"
QUESTION = (
    "Multi-query associative recall: after a list of key-value pairs, recall the value of "
    "queried keys. Held-out answer accuracy by the number of pairs: attention, splat_attention "
    "(K = 16, 64) and fk_attention at the same parameter count."
)

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "pairs": (2, 4), "queries": 4, "keys": 16, "values": 16, "d": 32, "heads": 2,
        "layers": 1, "splats": (4,), "hops": 2, "batch": 16, "steps": 20, "lr": 3e-3,
        "eval": 64,
    },
    "full": {
        "pairs": (8, 16, 32, 64, 128), "queries": 32, "keys": 256, "values": 256, "d": 128,
        "heads": 4, "layers": 2, "splats": (16, 64), "hops": 4, "batch": 64, "steps": 4000,
        "lr": 1e-3, "eval": 1024,
    },
}  # fmt: skip


def variants(size: dict[str, Any]) -> list[harness.Variant]:
    out = [harness.Variant("attention", "Attention", match=None)]
    for k in size["splats"]:
        out.append(harness.Variant(f"splat K={k}", "Splat", {"splats": k}))
    out.append(harness.Variant(f"fk_attention hops={size['hops']}", "FK", {"hops": size["hops"]}))
    return out


def run(cfg: harness.Config) -> Report:
    size = cfg.size(SIZES)
    counts = tuple(size["pairs"])
    lay = tasks.recall_layout(size["keys"], size["values"])
    shared = {
        "vocab": lay["vocab"],
        "d": size["d"],
        "heads": size["heads"],
        "layers": size["layers"],
        "hidden": 4 * size["d"],
    }
    prepared = harness.prepare(NAME, variants(size), shared)
    columns = [Column(f"acc p={p}", f"acc {p} pairs", "accuracy", p) for p in counts]
    report = Report(
        NAME,
        QUESTION,
        cfg.describe(size),
        [p.describe() for p in prepared],
        columns,
        {"accuracy": ("key-value pairs", "answer accuracy")},
    )
    draw = {
        "max_pairs": max(counts), "queries": size["queries"], "n_keys": size["keys"],
        "n_values": size["values"],
    }  # fmt: skip

    def make(gen: torch.Generator) -> harness.Batch:
        # One pair count per batch, drawn from the generator (so the stream is reproducible).
        pairs = counts[int(torch.randint(len(counts), (), generator=gen))]
        return tasks.recall_batch(gen, size["batch"], pairs, **draw)[0]

    def measure(net, seed: int, _result) -> dict[str, float]:
        gen = torch.Generator().manual_seed(harness.eval_seed(seed))
        metrics: dict[str, float] = {}
        for p in counts:
            inputs, info = tasks.recall_batch(gen, size["eval"], p, **draw)
            out = harness.evaluate(net, inputs, cfg.device, chunk=256)
            mask = info["mask"]
            pred = out["logits"].argmax(-1)
            metrics[f"acc p={p}"] = accuracy(pred[mask], inputs["targets"][mask])
        return metrics

    harness.run_grid(cfg, NAME, prepared, make, size["steps"], size["lr"], measure, report.add_run)
    chance = 1 / size["values"]
    report.notes.append(
        f"{size['queries']} queries per sequence, keys drawn from {size['keys']} and values "
        f"from {size['values']} symbols (chance {chance:.3f}); every sequence has the length "
        f"of the largest pair count (left padding)."
    )
    return report
