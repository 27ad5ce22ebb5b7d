"""sparkc: a compiler from `.spark` model descriptions to Triton kernels and PyTorch modules.

    import sparkc
    m = sparkc.load("model.spark", d=256)   # compile (cached) and import the generated package
    net = m.Model().cuda()

`sparkc.load`, `sparkc.load_source` and `sparkc.compile_to` are imported lazily, so
`sparkc --version` and `sparkc ops` never pay for the compiler. `sparkc.frozen_weights()`
(a context manager, for decoding) lets generated modules keep derived copies of their weights
between calls (runtime/stacking.py). `sparkc.generate(model, prompt, max_new_tokens, ...)` samples
from a compiled model with cached decoding (sparkc/generation.py). `sparkc.graphed(model,
optimizer)` replays a whole training step from a CUDA graph (runtime/train_graph.py). The
version lives in
sparkc/version.py.
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = [
    "__version__",
    "compile_to",
    "frozen_weights",
    "generate",
    "graphed",
    "load",
    "load_source",
]


def __getattr__(name: str) -> Any:
    if name in ("load", "load_source", "compile_to"):
        from . import api

        return getattr(api, name)
    if name == "generate":
        from .generation import generate

        return generate
    if name == "graphed":
        from .runtime.train_graph import graphed

        return graphed
    if name == "frozen_weights":
        from .runtime import launch

        return launch.frozen_weights
    raise AttributeError(f"module 'sparkc' has no attribute {name!r}")
