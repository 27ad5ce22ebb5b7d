"""How generated host code calls its autograd Functions, and its host-side id check.

Consumes: a generated `torch.autograd.Function` and its arguments (`apply`), or a tensor of token
ids and an embedding's row count (`validate_ids`). Produces: the Function's outputs, through
`Function.apply` only when autograd would record something (else its forward called with a
`NoGradCtx`), and an IndexError for an id out of range. Both are opaque to `torch.compile` (a
graph break each), as `_opaque_to_dynamo` explains.

torch is imported with this module (`apply` is wrapped for `torch.compile` at import).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import device


class NoGradCtx:
    """The `ctx` a generated autograd.Function's forward gets when no gradient can flow: it saves
    nothing and reports that no input needs a gradient (so forwards skip what only the backward
    reads, e.g. saved pre-activations)."""

    def __init__(self, n_inputs: int) -> None:
        self.needs_input_grad = (False,) * n_inputs

    def save_for_backward(self, *tensors: Any) -> None:
        pass

    def mark_non_differentiable(self, *tensors: Any) -> None:
        pass

    def mark_dirty(self, *tensors: Any) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        pass


def _apply_eager(function: Any, *args: Any) -> Any:
    """`function.apply(*args)` for a generated torch.autograd.Function, or, when autograd would
    record nothing (grad mode off, or no tensor argument requires a gradient), its forward called
    directly: `Function.apply` costs ~10 µs of host time per call even then (measured on the H200
    machine: 11.2 µs), a sizeable share of a small model's per-call host time. The outputs have
    the same values either way and do not require gradients."""
    import torch

    if torch.is_grad_enabled():
        for a in args:
            if isinstance(a, torch.Tensor) and a.requires_grad:
                return function.apply(*args)
    return function.forward(NoGradCtx(len(args)), *args)


def _opaque_to_dynamo(fn: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    return torch.compiler.disable(fn, recursive=True)


# Under `torch.compile` every generated Function runs as one opaque call (a graph break), exactly
# as it runs eagerly; dynamo traces only the glue between such calls. Tracing into the Functions
# is not safe: dynamo wraps each Triton launch in a higher-order op whose written tensors it
# infers from the kernel's IR, and on the H200 (torch 2.11, Triton 3.6) the traced backward of
# tiny_gpt returned a token-embedding gradient of zeros. The wrapper costs ~0.25 µs per call
# eagerly (docs/architecture.md, "torch.compile").
apply = _opaque_to_dynamo(_apply_eager)


def _validate_ids(tokens: Any, rows: int) -> None:
    if tokens.numel() == 0 or device.capturing(tokens):
        return
    bad = (tokens < 0) | (tokens >= rows)
    if bool(bad.any()):
        first = int(tokens[bad].reshape(-1)[0])
        raise IndexError(f"token id {first} is out of range for an embedding of {rows} rows")


# Raise IndexError when an id of `tokens` is outside [0, rows), on the host (one synchronisation),
# except while a CUDA graph is being captured (a capture cannot synchronise). Opaque to
# `torch.compile`, like `apply`: a graph break there, not a data-dependent branch in its graph.
validate_ids = _opaque_to_dynamo(_validate_ids)
