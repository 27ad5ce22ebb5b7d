"""Jinja rendering of the kernel and module templates in `codegen_templates/`.

`render(template_name, **context)` returns the rendered text. The environment is strict
(`StrictUndefined`: a missing context variable is an error, never an empty string), keeps a
trailing newline, and trims block lines so templates can be indented for reading.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import jinja2

from .names import header_lines


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sparkc.codegen_templates", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = pyrepr
    # `{{ version | header_lines }}`: the fixed lines 1-2 of every generated file.
    env.filters["header_lines"] = header_lines
    # `{% if v is match_identifier %}`: a bare name needs no parentheses around it.
    env.tests["match_identifier"] = lambda v: isinstance(v, str) and v.isidentifier()
    # `{{ comb(n, k) }}`, `{{ factorial(n) }}`, `legendre_monomials(L)`: constants of generated
    # recurrences (attention's basis).
    env.globals["comb"] = math.comb
    env.globals["factorial"] = math.factorial
    env.globals["legendre_monomials"] = legendre_monomials
    return env


@functools.cache
def legendre_monomials(n_max: int) -> tuple[tuple[float, ...], ...]:
    """Row n (n ≤ n_max) holds a_{n,s} with P_n(y) = Σ_s a_{n,s} y^s, the Legendre polynomials in
    monomial form, by (n+1) P_{n+1} = (2n+1) y P_n − n P_{n−1} in exact rationals (then rounded
    once to float): the low-rank basis bias's gains gradient contracts moments with them. Not
    numpy's `leg2poly`, which rounds on the way (P_6's y^4 coefficient comes out as
    -19.687499999999996, not -19.6875)."""
    zero, one = Fraction(0), Fraction(1)
    rows = [[one] + [zero] * n_max, [zero, one] + [zero] * (n_max - 1)]
    for n in range(1, n_max):
        shifted = [Fraction(0)] + rows[n][:-1]
        rows.append([((2 * n + 1) * a - n * b) / (n + 1) for a, b in zip(shifted, rows[n - 1])])
    return tuple(tuple(float(a) for a in row) for row in rows[: n_max + 1])


def pyrepr(value: Any) -> str:
    """A Python literal for a constant of the IR (None, bool, int, float, str, tuples, dicts).

    `repr` of these types is deterministic and can never inject code: strings come out quoted
    and escaped, as ASCII (`ascii()`: no line or paragraph separators, bidi controls or other
    non-ASCII characters reach the file). Non-finite floats are literals that read no name
    (`1e999` is inf), so no local can shadow what they mean. Anything else is a compiler bug,
    not something to render."""
    kind = type(value)
    if kind is str:  # the common cases first, by exact type (subclasses take the long way)
        return ascii(value)
    if kind is int or kind is bool:
        return repr(value)
    if kind is tuple and all(type(v) is int for v in value):
        return repr(value)  # a shape: "(64, 64)", "(64,)", "()"
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, str):
        return ascii(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "(1e999 - 1e999)"
        if value in (float("inf"), float("-inf")):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(pyrepr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(pyrepr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
