"""Tensor types of the IR: a dtype class and a shape of concrete or symbolic dimensions.

A dimension is an `int` (known at compile time: every hyperparameter is a constant once the
model is instantiated) or a `str` naming a symbolic dimension bound at run time (`B`, `N`, `T`).
`float` is the model's activation dtype (float32, bfloat16, float16, or float64 in the reference
path): the IR does not fix the floating dtype, the generated module does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

Dim = int | str


class DType(str, Enum):
    FLOAT = "float"
    I64 = "i64"
    I32 = "i32"
    BOOL = "bool"

    @property
    def is_float(self) -> bool:
        return self is DType.FLOAT

    @property
    def is_int(self) -> bool:
        return self in (DType.I64, DType.I32)

    def __str__(self) -> str:
        return self.value


# Spellings accepted in `input` declarations, and the IR dtype class each belongs to.
# `int` accepts int32 or int64 at run time; `float` any floating dtype.
SOURCE_DTYPES: dict[str, DType] = {
    "float": DType.FLOAT,
    "f32": DType.FLOAT,
    "f16": DType.FLOAT,
    "bf16": DType.FLOAT,
    "f64": DType.FLOAT,
    "int": DType.I64,
    "i64": DType.I64,
    "i32": DType.I32,
    "bool": DType.BOOL,
}


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"


def scalar(dtype: DType = DType.FLOAT) -> TensorType:
    return TensorType(dtype, ())


def fmt_shape(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...] | None:
    """NumPy broadcasting over concrete and symbolic dims; None when the shapes don't broadcast.

    A symbolic dim broadcasts only against itself or 1 (two different symbols may differ at
    run time, so they are rejected rather than guessed equal)."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


_CATEGORY = {DType.BOOL: 0, DType.I32: 1, DType.I64: 1, DType.FLOAT: 2}


def promote(a: TensorType, b: TensorType) -> DType:
    """The dtype of `a + b`, `a - b` or `a * b` by PyTorch's promotion rules (docs/language.md,
    "Arithmetic"): the higher category of bool < int < float wins; within it, the dimensioned
    operands decide, and a 0-d operand (a scalar constant, a `mean`) only when no dimensioned
    operand is of that category. Among ints, i64 wins over i32. A scalar constant is typed
    like a Python number by the checker (an int constant beside an int tensor takes that
    tensor's dtype), so this rule is also torch's rule for a tensor and a Python number."""
    top = max(_CATEGORY[a.dtype], _CATEGORY[b.dtype])
    for group in ([t for t in (a, b) if t.rank > 0], [t for t in (a, b) if t.rank == 0]):
        found = {t.dtype for t in group if _CATEGORY[t.dtype] == top}
        if found:
            return DType.I64 if DType.I64 in found else found.pop()
    raise AssertionError("unreachable: one operand is of the top category")
