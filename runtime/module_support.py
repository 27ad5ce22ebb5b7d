"""Support code imported by every generated model module.

A generated module defines one `SparkModule` subclass with straight-line `_forward_reference` and
`_forward_triton` methods. This module provides what they share: the parameter tree (so that
`state_dict()` keys are exactly the SPEC names under each instance path), the choice between the
reference path and the Triton path, and the `ModelOutput` returned by `forward`. The run-time
input checks live in `runtime/checks.py` (re-exported here under the names generated code uses:
`prepare_inputs`, `check_positions`, `InputError`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from . import launch
from .checks import (  # noqa: F401  (the generated modules' names for them)
    DTYPE_SPELLING,
    InputError,
    InputSpec,
    check_index_table,
    check_inputs,
    check_positions,
    prepare_call,
    prepare_inputs,
)
from .init import init_tensor


class ModelOutput(dict):
    """The result of `forward`: the named outputs, `aux_loss`, and `loss` (when declared).

    A dict with attribute access, so `out.loss.backward()` and `out["logits"]` both work."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"the model has no output '{name}'; outputs: {', '.join(self)}"
            ) from None


def _register_model_output() -> None:
    # A pytree node, like `dict` (its keys are the context): torch.cuda.make_graphed_callables,
    # torch.export and other pytree-based tools then see the output tensors inside.
    from torch.utils import _pytree

    try:
        _pytree.register_pytree_node(
            ModelOutput,
            lambda out: (list(out.values()), list(out.keys())),
            lambda values, keys: ModelOutput(zip(keys, values)),
            serialized_type_name="sparkc.runtime.module_support.ModelOutput",
        )
    except ValueError:  # already registered (this module imported under a second name)
        pass


_register_model_output()


@dataclass(frozen=True)
class ParamDecl:
    """A parameter or buffer of the generated model (mirrors sparkc.ir.ops.ParamSpec)."""

    name: str  # full state_dict key
    shape: tuple[int, ...]
    init: tuple[str, tuple[float | int, ...]]
    trainable: bool = True
    dtype: str = "float"
    fan_in: int = 0


class _InitSpec:
    """Adapter giving `init_tensor` the ParamSpec-like view it expects."""

    def __init__(self, d: ParamDecl):
        from types import SimpleNamespace

        self.name = d.name
        self.shape = d.shape
        self.init = SimpleNamespace(kind=d.init[0], args=d.init[1])
        self.trainable = d.trainable
        self.dtype = d.dtype
        self.fan_in = d.fan_in


def _child(root: nn.Module, path: Iterable[str]) -> nn.Module:
    """The submodule at `path`, created on first use. Instance names are the program's binding
    names, which may equal attributes of nn.Module or of the generated class (`forward`,
    `training`, `cuda`, `impl`): `add_module` refuses those, so the child goes straight into
    `_modules`, which is all that `state_dict`, `parameters()` and `_tensors` read (the
    attribute `net.forward` stays the method; `get_submodule` cannot reach such a child)."""
    mod = root
    for part in path:
        sub = mod._modules.get(part)
        if sub is None:
            sub = nn.Module()
            mod._modules[part] = sub
        mod = sub
    return mod


IMPLS = ("auto", "reference", "triton")


class SparkModule(nn.Module):
    """Base class of generated models. Subclasses set PARAMS, INPUTS and the forward paths."""

    PARAMS: tuple[ParamDecl, ...] = ()
    INPUTS: tuple[InputSpec, ...] = ()
    HYPER: ClassVar[dict[str, Any]] = {}

    def __init__(self, impl: str = "auto"):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        self.impl = impl
        for decl in self.PARAMS:
            *path, leaf = decl.name.split(".")
            owner = _child(self, path)
            tensor = init_tensor(_InitSpec(decl))
            if decl.trainable:
                owner.register_parameter(leaf, nn.Parameter(tensor))
            else:
                owner.register_buffer(leaf, tensor, persistent=True)

    def _tensors(self) -> list[torch.Tensor]:
        """Parameters and buffers in declaration order (what the forward paths index).

        Runs on every forward, so it walks the `_modules` / `_parameters` / `_buffers` dicts
        directly (`get_submodule` and `nn.Module.__getattr__` cost microseconds per level, which
        a host-bound forward pays dozens of times); the walk is fresh each call, so replaced
        parameters and submodules are seen."""
        paths = type(self).__dict__.get("_PARAM_PATHS")
        if paths is None:
            paths = tuple(
                (tuple(decl.name.split(".")[:-1]), decl.name.split(".")[-1]) for decl in self.PARAMS
            )
            type(self)._PARAM_PATHS = paths
        out = []
        for path, leaf in paths:
            mod = self
            for part in path:
                mod = mod._modules[part]
            t = mod._parameters.get(leaf)
            if t is None:
                t = mod._buffers.get(leaf)
                if t is None:
                    t = getattr(mod, leaf)  # a plain attribute (not a registered tensor)
            out.append(t)
        return out

    def _run(self, values: Sequence[Any]) -> ModelOutput:
        """A forward without a cache: the inputs checked and cast, then the Triton path or the
        reference path. On the Triton path the value rules' check is read after the kernels are
        queued (`checks.prepare_call`): it waits for its own reductions, not for the call's
        work, and its InputError (also when the kernels failed on the bad values) is raised
        before anything is returned. The reference path, and any call under `torch.compile`,
        checks every rule before it runs."""
        cls = type(self)
        if torch.compiler.is_compiling():
            values, pending = prepare_inputs(self, cls.INPUTS, cls.RULES, values), None
        else:
            values, pending = prepare_call(self, cls.INPUTS, cls.RULES, values)
        if not self._use_triton(values[0]):
            if pending is not None:
                pending.finish()
            return self._forward_reference(*values)
        if pending is None:
            return self._forward_triton(*values)
        try:
            out = self._forward_triton(*values)
        except Exception:
            bad = pending.error()
            if bad is None:
                raise
            raise bad from None
        pending.finish()
        return out

    def _use_triton(self, first: torch.Tensor) -> bool:
        if self.impl == "reference":
            return False
        if self.impl == "triton":
            return True
        return first.is_cuda and os.environ.get("SPARKC_IMPL", "") != "reference"

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


MISSING = object()


def sum_losses(terms: Sequence[torch.Tensor], like: Sequence[torch.Tensor]) -> torch.Tensor:
    """The module's `aux_loss`: the sum of the ops' aux losses (each already weighted).

    With no aux loss it is a 0-d zero on the parameters' device and dtype, so that
    `out.loss = task + out.aux_loss` always works."""
    if terms:
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total
    ref = next((t for t in like if t.is_floating_point()), None)
    if ref is None:
        return torch.zeros(())
    return torch.zeros((), device=ref.device, dtype=ref.dtype)


def build_variant(
    cls, source: str, source_name: str, model: str, defaults: dict, hyper: dict, impl: str
):
    """`Model(d=256)`: compile the embedded source with other hyperparameters and build that.

    The variant is compiled into sparkc's content-addressed cache (a second call is instant).

    This is the one place where the runtime imports the compiler (`sparkc.api`): everything
    else under runtime/ imports only runtime/ modules, torch and triton, so a generated package
    runs without the compiler until it is asked for a variant (tests/test_imports.py checks it)."""
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise TypeError(
            f"{cls.__name__}() got unknown hyperparameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(defaults) or 'none'}"
        )
    from sparkc.api import load_variant  # the runtime's one import of the compiler

    module = load_variant(source, source_name, model, dict(hyper))
    return module.Model(impl=impl)


def require_kernel_device(x: torch.Tensor) -> None:
    """The Triton path needs Triton and a CUDA tensor (or the interpreter, TRITON_INTERPRET=1)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "impl='triton' needs Triton: pip install 'sparkc[gpu]' (or use impl='reference')"
        ) from None
    launch.require_cuda(x)


def gate_noise(kind: str, shape: tuple[int, ...], like: torch.Tensor, ctx) -> torch.Tensor:
    """Training noise of a gate, drawn exactly as the reference path draws it (same helper,
    shape and order), so both paths route identically from one seed: logistic noise for a
    sigmoid gate, Gumbel(0, 1) for a softmax gate."""
    from .reference.common import gumbel_noise, logistic_noise

    draw = logistic_noise if kind == "sigmoid" else gumbel_noise
    return draw(tuple(shape), like.device, ctx).to(like.dtype)


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """token_router's top-k selection: per sequence the k = max(1, ⌊sparsity·N + 1e-9⌋) largest
    scores, ties to the lower index (a stable descending sort), as a bool mask [B, N]."""
    from .reference.hspmn import topk_count

    k = topk_count(sparsity, scores.shape[-1])
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, True)
