"""What a `.spark` expression evaluates to inside the checker, and the rules on constants.

Consumes Python constants and op-table `Hyper` descriptions; produces checker values and
`Problem`s (a code, a message and a help line; the checker attaches the span). Holds:

- the value kinds: `Tensor` (a program value with its type), `Multi` (all outputs of a
  multi-output op or a block returning several values), `Symbol` (a bare identifier in
  hyperparameter position such as `act=gelu`), `BasisSpec` (a `basis(...)` value), `POISON`
  (the result of an expression that already produced a diagnostic: it silences follow-up errors),
  and Python `int`, `float`, `bool`, `None` for constants;
- hyperparameter arithmetic (docs/architecture.md: `+ - *` keep ints, `/` gives an int when it
  divides exactly, `//` floors);
- `coerce_hyper`: a value checked against an op hyperparameter's declared type;
- `parse_override`: a `-D name=value` string (or Python value) read as a constant.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import did_you_mean
from ..ir.ops import Hyper, check_hyper_value
from ..ir.types import TensorType
from .program import Ref

INT_LIMIT = 2**31 - 1  # sizes beyond int32 indexing are typos, and would make rules loop


@dataclass(frozen=True)
class Tensor:
    ref: Ref
    type: TensorType


@dataclass(frozen=True)
class Multi:
    """Several tensors bound at once. `names` are the op's output names (None for a block)."""

    what: str  # 'spd_router' or 'block Layer': used in messages
    items: tuple[Tensor, ...]
    names: tuple[str, ...] | None


@dataclass(frozen=True)
class Symbol:
    name: str
    quoted: bool = field(default=False, compare=False)  # written as "text" rather than text


@dataclass(frozen=True)
class BasisSpec:
    pairs: tuple[tuple[str, Any], ...]


class _Poison:
    def __repr__(self) -> str:
        return "POISON"


POISON: Any = _Poison()


@dataclass(frozen=True)
class Problem:
    """A diagnostic without its span (the caller knows where the value came from)."""

    code: str
    message: str
    help: str = ""


class ProblemError(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def is_const(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, Symbol, BasisSpec))


def describe(v: Any) -> str:
    """A value in words, for messages: 'the integer 4', 'a tensor float[B,N,64]'."""
    if isinstance(v, Tensor):
        return f"a tensor {v.type}"
    if isinstance(v, Multi):
        return f"the {len(v.items)} results of {v.what}"
    if isinstance(v, Symbol):
        return f'the string "{v.name}"' if v.quoted else f"the name '{v.name}'"
    if isinstance(v, BasisSpec):
        return "a basis(...) spec"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v!r}"
    return repr(v)


def plain(v: Any) -> Any:
    """A constant as a Python value (symbols become strings, basis specs tuples of pairs)."""
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, BasisSpec):
        return v.pairs
    return v


# --------------------------------------------------------------------------------------------
# Arithmetic on constants


def _choice_words() -> frozenset[str]:
    from ..ir.ops import OPS

    return frozenset(c for spec in OPS.values() for h in spec.hypers for c in h.choices)


def _number(v: Any, op: str) -> int | float:
    if isinstance(v, Symbol):
        if v.name in _choice_words():
            # `act=gelu * 2`: the name is a choice value, not a number to compute with.
            raise ProblemError(
                Problem(
                    "E0226",
                    f"'{op}' needs numbers, got the choice '{v.name}'",
                    f"'{v.name}' is a value of a choice hyperparameter (like act={v.name}); "
                    "arithmetic works on integers and floats",
                )
            )
        # A bare name in hyperparameter position that is not bound: almost surely a typo. The
        # checker adds a did-you-mean over the names in scope (empty help asks for it).
        raise ProblemError(Problem("E0201", f"unknown name '{v.name}'"))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProblemError(
            Problem(
                "E0226",
                f"'{op}' needs numbers, got {describe(v)}",
                "hyperparameter arithmetic works on integers and floats",
            )
        )
    return v


def _divide(a: float, b: float) -> int | float:
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


_ARITH = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
    "//": lambda a, b: a // b,
}


def fold(op: str, a: Any, b: Any) -> int | float:
    """`a op b` on constants, by the language's rules; raises ProblemError."""
    x, y = _number(a, op), _number(b, op)
    if op in ("/", "//") and y == 0:
        raise ProblemError(
            Problem(
                "E0226",
                "division by zero in a hyperparameter expression",
                "check the divisor's value",
            )
        )
    try:
        out = _ARITH[op](x, y)
    except OverflowError:
        raise ProblemError(
            Problem(
                "E0226", f"the result of '{op}' is too large", "use smaller hyperparameter values"
            )
        ) from None
    if isinstance(out, float) and not math.isfinite(out):
        raise ProblemError(
            Problem(
                "E0226",
                f"the result of '{op}' is not a finite number",
                "use smaller hyperparameter values",
            )
        )
    return out


def negate(v: Any) -> int | float:
    return -_number(v, "-")


# --------------------------------------------------------------------------------------------
# Hyperparameter types


def _type_word(h: Hyper) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "choice": "one of " + ", ".join(h.choices),
    }.get(h.type, h.type)


def coerce_hyper(op: str, h: Hyper, v: Any) -> Any:
    """Check `v` against hyperparameter `h` of `op`; return the value to use (ints for int
    hyperparameters, floats for float ones, strings for choices). Raises ProblemError."""
    if isinstance(v, (Tensor, Multi)):
        raise ProblemError(
            Problem(
                "E0208",
                f"'{h.name}' of {op} is a compile-time {h.type}, but got {describe(v)}",
                "hyperparameters are constants: numbers, true/false, names like gelu, or "
                "arithmetic on other hyperparameters",
            )
        )
    if v is None:
        msg = check_hyper_value(h, None)
        if msg:
            raise ProblemError(Problem("E0207", msg, f"give {h.name} {_type_word(h)}"))
        return None
    if isinstance(v, Symbol) and v.quoted and h.type != "choice":
        unquoted = v.name if re.fullmatch(r"[0-9.eE+-]+|true|false", v.name) else ""
        raise ProblemError(
            Problem(
                "E0207",
                f"'{h.name}' of {op} expects {_type_word(h)}, got {describe(v)}",
                f"remove the quotes: {h.name}={unquoted}"
                if unquoted
                else f"give {h.name} {_type_word(h)}",
            )
        )
    if isinstance(v, Symbol) and h.type != "choice":
        # An unbound bare name where a number or flag is expected: almost surely a typo (the
        # checker adds a did-you-mean over the names in scope).
        raise ProblemError(Problem("E0201", f"unknown name '{v.name}'"))
    wrong = Problem(
        "E0207",
        f"'{h.name}' of {op} expects {_type_word(h)}, got {describe(v)}",
        _choice_help(h, v),
    )
    if h.type == "int":
        if isinstance(v, float) and not isinstance(v, bool) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ProblemError(wrong)
    elif h.type == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ProblemError(wrong)
        v = float(v)
    elif h.type == "bool":
        if not isinstance(v, bool):
            raise ProblemError(wrong)
    elif h.type == "choice":
        if not isinstance(v, Symbol):
            raise ProblemError(wrong)
        if v.name not in h.choices:
            raise ProblemError(
                Problem(
                    "E0207",
                    f"'{h.name}' of {op} must be one of {', '.join(h.choices)}; got '{v.name}'",
                    did_you_mean(v.name, h.choices) or f"choose one of: {', '.join(h.choices)}",
                )
            )
        v = v.name
    msg = check_hyper_value(h, v)
    if msg:
        raise ProblemError(Problem("E0302", f"{msg} (in {op})", _range_help(h)))
    if h.type == "int" and abs(v) > INT_LIMIT:
        raise ProblemError(
            Problem(
                "E0302",
                f"'{h.name}' of {op} is too large ({v})",
                f"sizes must be below 2^31 = {INT_LIMIT + 1}",
            )
        )
    return v


def _choice_help(h: Hyper, v: Any) -> str:
    if h.type == "choice":
        return f"choose one of: {', '.join(h.choices)}"
    if h.type == "bool":
        return f"write {h.name}=true or {h.name}=false"
    if h.type == "int" and isinstance(v, float):
        return f"{h.name} counts something: use a whole number such as {max(1, round(v))}"
    if isinstance(v, Symbol):
        return f"'{v.name}' is not a defined name here"
    return f"give {h.name} {_type_word(h)}"


def _range_help(h: Hyper) -> str:
    return {
        "pos": f"{h.name} must be greater than 0",
        "nonneg": f"{h.name} must be 0 or more",
        "open01": f"{h.name} must lie strictly between 0 and 1, e.g. 0.5",
        "prob": f"{h.name} is a fraction between 0 and 1",
    }.get(h.check, f"see `sparkc ops` for the valid values of {h.name}")


# --------------------------------------------------------------------------------------------
# -D overrides

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_RE = re.compile(r"[+-]?[0-9][0-9_]*\Z")


def parse_override(raw: object) -> Any:
    """A `-D name=value` value as a constant: '256' → 256, '0.5' → 0.5, 'true' → True,
    'none' → None, 'gelu' → Symbol('gelu'). Python values are taken as they are."""
    if raw is None or isinstance(raw, (bool, int, float)):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ProblemError(
                Problem("E0224", f"'{raw}' is not a finite number", "give a finite number")
            )
        return raw
    if not isinstance(raw, str):
        raise ProblemError(
            Problem(
                "E0224",
                f"cannot use a {type(raw).__name__} as a value",
                "give a number, true, false, none or a name",
            )
        )
    text = raw.strip()
    words = {"true": True, "false": False, "none": None}
    if text in words:
        return words[text]
    if _INT_RE.match(text):
        try:
            return int(text)
        except ValueError:
            pass
    else:
        try:
            value = float(text)
        except ValueError:
            value = None
        if (
            value is not None
            and math.isfinite(value)
            and not text.lower().lstrip("+-").startswith(("inf", "nan"))
        ):
            return value
    if _NAME_RE.match(text):
        return Symbol(text)
    raise ProblemError(
        Problem(
            "E0224",
            f"cannot read '{text[:40]}' as a value",
            "give an integer (256), a number (0.5, 1e-3), true, false, none or a name (gelu)",
        )
    )
