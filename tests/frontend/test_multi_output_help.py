"""E0216's help names an output that works where one tensor is needed: following it compiles
(for token_router it once suggested `.mask`, a bool tensor, which then failed E0303)."""

from __future__ import annotations

import re

import pytest

from sparkc.diagnostics import SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse

PROGRAM = """model M(vocab = 64, d = 64) {{
  input tokens: i64[B, N]
  x = embed(tokens, vocab=vocab, dim=d)
  r = {call}
  y = {use}
  output y
}}
"""

CASES = [
    ("token_router(x)", "x + sqdk_attention(x, r, heads=4)"),
    ("spd_router(x)", "x + r"),
    ("verifier_stack(x)", "linear(r, out=d)"),
]


def _check(text: str):
    return check(parse(text, "m.spark"), {})


@pytest.mark.parametrize("call,use", CASES)
def test_following_the_help_compiles(call, use):
    with pytest.raises(SparkError) as err:
        _check(PROGRAM.format(call=call, use=use))
    (diag,) = err.value.diagnostics
    assert diag.code == "E0216"
    field = re.search(r"e\.g\. \.(\w+),", diag.help).group(1)
    fixed = re.sub(r"\br\b", f"r.{field}", use)
    _check(PROGRAM.format(call=call, use=fixed))  # no error
