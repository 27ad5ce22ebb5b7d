"""Dtypes of tensor arithmetic: the checker's types are what the reference path computes.

`+ - * /` and unary `-` on float, int and bool tensors (dimensioned or 0-d) and Python-number
constants are typed by PyTorch's promotion rules (docs/language.md, "Arithmetic"); `/` is true
division; `-` on a bool tensor is a located error, as it is a run-time error in PyTorch.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from sparkc.diagnostics import SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse
from sparkc.ir.types import DType

F = "t.spark"
TORCH = {"float": torch.float32, "i64": torch.int64, "i32": torch.int32, "bool": torch.bool}
FROM_TORCH = {torch.int64: DType.I64, torch.int32: DType.I32, torch.bool: DType.BOOL}
IR = {"float": DType.FLOAT, "i64": DType.I64, "i32": DType.I32, "bool": DType.BOOL}
# Operands: (spelling in a program, torch stand-in). Tensors are inputs a/b of rank 1 or 0.
OPERANDS = [(f"{d}:{r}", d, r) for d in TORCH for r in (1, 0)] + [("2", None, None)]
OPERANDS += [("0.5", None, None)]
OPS = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.true_divide}


def _program(left, right, op: str) -> str:
    lines, names = [], []
    for i, (spelling, dtype, rank) in enumerate((left, right)):
        if dtype is None:
            names.append(spelling)
        else:
            lines.append(f"  input v{i}: {dtype}[{'B' if rank else ''}]")
            names.append(f"v{i}")
    return "model M() {\n" + "\n".join(lines) + f"\n  output y = {names[0]} {op} {names[1]}\n}}\n"


def _torch_value(operand):
    spelling, dtype, rank = operand
    if dtype is None:
        return float(spelling) if "." in spelling else int(spelling)
    return torch.ones((3,) if rank else (), dtype=TORCH[dtype])


CASES = [
    (a, b, op)
    for a, b in itertools.product(OPERANDS, repeat=2)
    for op in OPS
    if a[1] is not None or b[1] is not None  # two constants fold in the checker
]


@pytest.mark.parametrize("left,right,op", CASES, ids=lambda v: v[0] if isinstance(v, tuple) else v)
def test_checked_dtype_is_torch_result_dtype(left, right, op) -> None:
    src = _program(left, right, op)
    try:
        want = OPS[op](_torch_value(left), _torch_value(right)).dtype
    except RuntimeError:
        want = None  # PyTorch refuses it (a '-' with a bool operand): so must the checker
    if want is None:
        with pytest.raises(SparkError) as info:
            check(parse(src, F))
        (d,) = info.value.diagnostics
        assert d.code == "E0232" and "bool" in d.message and "m * 1" in d.help, src
        return
    program = check(parse(src, F))
    got = program.type_of(program.outputs[0].ref).dtype
    expected = DType.FLOAT if want.is_floating_point else FROM_TORCH[want]
    assert got is expected, (src, want)


@pytest.mark.parametrize("dtype", ["float", "i64", "i32", "bool"])
def test_unary_minus(dtype) -> None:
    src = f"model M() {{\n  input t: {dtype}[B, N]\n  output y = -t\n}}\n"
    if dtype == "bool":
        with pytest.raises(SparkError) as info:
            check(parse(src, F))
        (d,) = info.value.diagnostics
        assert (d.code, d.span.line, d.span.col) == ("E0232", 3, 15)
        assert "cannot negate a bool tensor" in d.message and d.help
        return
    program = check(parse(src, F))
    assert program.type_of(program.outputs[0].ref).dtype is IR[dtype]


def test_bool_minus_points_at_the_bool_operand() -> None:
    src = "model M() {\n  input x: float[B]\n  input m: bool[B]\n  output y = x - m\n}\n"
    with pytest.raises(SparkError) as info:
        check(parse(src, F))
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E0232", 4, 18)


def test_int_constant_must_fit_the_int_tensor() -> None:
    for dtype, value in (("i32", 2**31), ("i64", 2**63)):
        src = f"model M() {{\n  input t: {dtype}[B]\n  output y = t + {value}\n}}\n"
        with pytest.raises(SparkError) as info:
            check(parse(src, F))
        (d,) = info.value.diagnostics
        assert d.code == "E0232" and f"does not fit in {dtype}" in d.message
    ok = "model M() {\n  input t: i32[B]\n  output y = t * 2147483647\n}\n"
    program = check(parse(ok, F))
    assert program.type_of(program.outputs[0].ref).dtype is DType.I32
