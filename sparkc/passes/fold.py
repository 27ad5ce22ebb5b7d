"""Constant evaluation rules for `canonicalize`: what an op computes on scalar constants.

Consumes Python scalars (the `value` of `const` nodes) and the result dtype of the node being
folded; produces the folded scalar, or None when folding would not reproduce the run-time result
exactly enough to be worth it. Tables are keyed by op name, one entry per foldable op.

Rules, and why:
- Arithmetic is done in float64 (Python floats), like Python folds `0.1 * 3` in source code; the
  generated module uses the folded literal as it would a literal the user had written.
- A result that is not finite (overflow, 0/0, x/0) is never folded: the op stays and the
  run-time dtype decides what inf/nan it produces.
- Integer results must fit in int64 (torch wraps around, Python does not); an integer division is
  folded only when it is exact, so that the i64 result type the op table gives stays truthful.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from ..ir.types import DType

Scalar = int | float

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _div(a: Scalar, b: Scalar) -> Scalar | None:
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a // b if a % b == 0 else None
    return a / b


def _sigmoid(x: float) -> float:
    # The two-branch form never overflows in exp.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


BINARY: dict[str, Callable[[Scalar, Scalar], Scalar | None]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": _div,
}

UNARY: dict[str, Callable[[Scalar], Scalar | None]] = {
    "neg": operator.neg,
    "relu": lambda x: x if x > 0 else 0.0,
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
}


def fold(op: str, args: list[Scalar], dtype: DType) -> Scalar | None:
    """The value of `op(*args)` as a constant of `dtype`, or None when it must not be folded."""
    try:
        if op in BINARY and len(args) == 2:
            raw = BINARY[op](*args)
        elif op in UNARY and len(args) == 1:
            raw = UNARY[op](args[0])
        else:
            return None
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    if raw is None:
        return None
    if dtype is DType.FLOAT:
        value = float(raw)
        return value if math.isfinite(value) else None
    if dtype.is_int and isinstance(raw, int) and not isinstance(raw, bool):
        lo, hi = (_I64_MIN, _I64_MAX) if dtype is DType.I64 else (-(2**31), 2**31 - 1)
        return raw if lo <= raw <= hi else None
    return None


def foldable(op: str) -> bool:
    return op in BINARY or op in UNARY
