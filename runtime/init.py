"""Parameter and buffer initialisation from the op table's `ParamSpec`s.

Consumes a `sparkc.ir.ops.ParamSpec`-like object (fields `name`, `shape`, `init` with `kind` and
`args`, `trainable`, `dtype` ('float' or 'i64'), `fan_in`) and produces a fresh `torch.Tensor`.
Generated modules call `init_tensor` in `__init__`/`reset_parameters`; the reference tests build
their parameters with it, so the names and shapes of SPEC and of the op table stay in sync.

Every random kind draws from the global torch RNG (reproducible under `torch.manual_seed`) unless
a `generator` is passed; `randint` is the exception: SPEC §5.3 fixes its own seeded generator so
that a `demopack_linear` index table depends only on its `seed` hyperparameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

# The gain torch.nn.Linear's kaiming_uniform_(a=sqrt(5)) uses, computed the same way torch does
# so that the bound (and therefore every drawn value) is bit-identical to nn.Linear's.
_LINEAR_GAIN = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))


def _fan_in(spec: Any, shape: tuple[int, ...]) -> int:
    if getattr(spec, "fan_in", 0):
        return int(spec.fan_in)
    if len(shape) < 2:
        raise ValueError(f"parameter '{spec.name}': a linear init needs fan_in or a 2-d+ shape")
    return int(shape[1]) * math.prod(shape[2:])


def _linear_weight(t: torch.Tensor, spec: Any, g: torch.Generator | None) -> None:
    fan = _fan_in(spec, tuple(t.shape))
    std = _LINEAR_GAIN / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=g)


def _linear_bias(t: torch.Tensor, spec: Any, g: torch.Generator | None) -> None:
    fan = _fan_in(spec, tuple(t.shape)) if getattr(spec, "fan_in", 0) else 0
    bound = 1 / math.sqrt(fan) if fan > 0 else 0
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=g)


def _normal(t: torch.Tensor, spec: Any, g: torch.Generator | None) -> None:
    (std,) = spec.init.args
    with torch.no_grad():
        t.normal_(0.0, float(std), generator=g)


def _trunc_normal(t: torch.Tensor, spec: Any, g: torch.Generator | None) -> None:
    std, bound = spec.init.args
    torch.nn.init.trunc_normal_(
        t, mean=0.0, std=float(std), a=-float(bound), b=float(bound), generator=g
    )


def _fill(value: float) -> Callable[[torch.Tensor, Any, torch.Generator | None], None]:
    def fill(t: torch.Tensor, spec: Any, g: torch.Generator | None) -> None:
        with torch.no_grad():
            t.fill_(value)

    return fill


def _const(t: torch.Tensor, spec: Any, g: torch.Generator | None) -> None:
    (value,) = spec.init.args
    with torch.no_grad():
        t.fill_(float(value))


# kind -> filler of a preallocated float tensor. `randint` is separate (it makes an int64 tensor).
_FLOAT_INITS: dict[str, Callable[[torch.Tensor, Any, torch.Generator | None], None]] = {
    "linear_weight": _linear_weight,
    "linear_bias": _linear_bias,
    "normal": _normal,
    "trunc_normal": _trunc_normal,
    "ones": _fill(1.0),
    "zeros": _fill(0.0),
    "const": _const,
}

INIT_KINDS: tuple[str, ...] = tuple(sorted(_FLOAT_INITS)) + ("randint",)


def _randint(spec: Any, shape: tuple[int, ...], device: torch.device | str | None) -> torch.Tensor:
    high, seed = spec.init.args
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, int(high), shape, generator=g)
    return idx.to(device) if device is not None else idx


def init_tensor(
    spec: Any,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A new tensor for `spec`: float (`dtype`, default torch's default dtype) or int64.

    The tensor never requires grad; the caller wraps trainable ones in `nn.Parameter`.
    """
    shape = tuple(int(s) for s in spec.shape)
    kind = spec.init.kind
    if kind == "randint":
        return _randint(spec, shape, device)
    if str(spec.dtype) != "float":
        raise ValueError(
            f"parameter '{spec.name}': init '{kind}' makes a float tensor, "
            f"but the spec's dtype is {spec.dtype}"
        )
    fill = _FLOAT_INITS.get(kind)
    if fill is None:
        raise ValueError(
            f"parameter '{spec.name}': unknown init kind '{kind}' (known: {', '.join(INIT_KINDS)})"
        )
    t = torch.empty(shape, dtype=dtype or torch.get_default_dtype(), device=device)
    fill(t, spec, generator)
    return t
