"""The experiments harness (issue 23): the research seeds' claims, measured.

`python -m sparkc.experiments NAME` compiles the model family `examples/experiments/NAME.spark`
into size-matched variants, trains each with fixed seeds on a generated task, evaluates on
held-out data and writes `NAME.json`, `NAME.md` and `NAME.png` (docs/experiments.md). This
package holds the harness (`harness`: compile, match, train, time), the task generators
(`tasks`), the measures (`metrics`), the result writer (`report`) and one module per
experiment, each with `NAME`, `QUESTION`, `SIZES` and `run(config) -> Report`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Experiment name -> its module (imported on demand).
EXPERIMENTS = {
    "reachability": "reachability",
    "structure_noise": "structure_noise",
    "dyck": "dyck",
    "long_context": "long_context",
    "recall": "recall",
}


def experiment(name: str) -> ModuleType:
    """The module of experiment `name` (KeyError for an unknown name)."""
    return importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")
