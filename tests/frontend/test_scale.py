"""Checking is linear in the program's size: a block instance seen before is replayed.

No timings: the tests count the work (AST evaluations, shape-rule runs) for N and 2N layers, and
check that a replayed program is exactly the program a full check builds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkc.frontend import replay
from sparkc.frontend.check import check
from sparkc.frontend.elaborate import Elaborator
from sparkc.frontend.parser import parse
from sparkc.ir import ops
from sparkc.lower import lower
from sparkc.pipeline import summarize, summarize_program

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.spark"))

# Nested blocks, a block used at two depths, several results, a constant, an aux loss, a tie
# inside a block (never replayed), aliased arguments and a `return` with an operator.
MIXED = """
block Inner(d) {
  input x: float[B, N, d]
  return x * 0.5 + gelu(x)
}
block Pair(d) {
  input a: float[B, N, d]
  input b: float[B, N, d]
  y = Inner(a, d=d) + b
  return y, -y
}
block Layer(d, heads = 2) {
  input x: float[B, N, d]
  h = x + attention(rmsnorm(x), heads=heads)
  p, q = Pair(h, x, d=d)
  r = token_router(p)
  return Inner(p - q, d=d) * mean(r.gate)
}
block Tied(d, vocab) {
  input ids: i64[B, N]
  input x: float[B, N, d]
  e = embed(ids, vocab=vocab, dim=d)
  return linear(x + e, out=vocab, tie=e)
}
model M(d = 16, vocab = 32, layers = 3) {
  input tokens: i64[B, N]
  tok = embed(tokens, vocab=vocab, dim=d)
  h = repeat(layers) Layer(tok, d=d)
  s, t = Pair(h, h, d=d)
  u = Inner(s, d=d) + Inner(t, d=d)
  output a = Tied(tokens, u, d=d, vocab=vocab)
  output b = Tied(tokens, u, d=d, vocab=vocab)
  output logits = linear(u, out=vocab, tie=tok)
}
"""


def _without_replay(monkeypatch: pytest.MonkeyPatch, src: str, overrides: dict):
    with monkeypatch.context() as m:
        m.setattr(replay, "key", lambda *a, **k: None)
        return check(parse(src, "t.spark"), overrides)


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("path", EXAMPLES + ["MIXED"], ids=lambda p: getattr(p, "stem", p))
def test_replayed_program_is_the_fully_checked_program(monkeypatch, path, layers) -> None:
    src = MIXED if path == "MIXED" else path.read_text()
    replayed = check(parse(src, "t.spark"), {"layers": layers})
    assert replayed == _without_replay(monkeypatch, src, {"layers": layers})


def _count(monkeypatch: pytest.MonkeyPatch, obj, name: str, src: str, layers: int) -> int:
    calls = []
    real = getattr(obj, name)

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(obj, name, counting)
        ops._KEPT.clear()
        check(parse(src, "t.spark"), {"layers": layers})
    return len(calls)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_check_work_does_not_grow_with_the_layer_count(monkeypatch, path) -> None:
    src = path.read_text()
    for obj, name in ((Elaborator, "eval"), (ops, "_instantiate")):
        n, n2 = (_count(monkeypatch, obj, name, src, k) for k in (20, 40))
        assert n == n2 > 0, (name, n, n2)
    # ... while every layer is there, with its own instances.
    small, large = (check(parse(src, "t.spark"), {"layers": k}) for k in (20, 40))
    per_layer = (len(large.ops) - len(small.ops)) / 20
    assert per_layer >= 1 and len(small.ops) - 20 * per_layer > 0
    assert summarize_program(large).params > summarize_program(small).params


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_check_summary_is_the_lowered_graphs_summary(path) -> None:
    program = check(parse(path.read_text(), "t.spark"), {"layers": 2})
    assert summarize_program(program) == summarize(lower(program))
