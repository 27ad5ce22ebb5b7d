"""Elaboration results: inferred types over symbolic dims, instance names, parameters, robustness."""

from __future__ import annotations

import pathlib
import random

import pytest

from sparkc.diagnostics import SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse
from sparkc.ir.types import DType, TensorType

F = "t.spark"
ROOT = pathlib.Path(__file__).resolve().parents[2]

NESTED = """\
block Inner(d) {
  input x: float[B, N, d]
  return x + mlp(rmsnorm(x), hidden=2 * d)
}
block Layer(d, heads) {
  input x: float[B, N, d]
  a = attention(x, heads=heads)
  h = a + Inner(a, d=d)
  return h + Inner(h, d=d)
}
model M(vocab = 32, d = 16, heads = 2, layers = 2) {
  input tokens: i64[B, T]
  input targets: i64[B, T]
  tok = embed(tokens, vocab=vocab, dim=d)
  h = repeat(layers) Layer(tok, d=d, heads=heads)
  h_mlp = mlp(h, hidden=d)
  o = h + mlp(h, hidden=d) * mlp(h_mlp, hidden=d)
  y, xs, _, sep = spd_router(o)
  g = token_router(o).gate
  logits = linear(rmsnorm(y), out=vocab, tie=tok, bias=false)
  output logits
  loss ce = cross_entropy(logits, targets)
}
"""


def _prog(src: str = NESTED, **kw):
    return check(parse(src, F), **kw)


def test_instance_paths_follow_the_naming_rule() -> None:
    paths = [op.path for op in _prog().ops if op.op not in ("add", "sub", "mul", "div", "neg")]
    assert paths == [
        "tok",
        "h.0.a",
        "h.0.h_Inner.rmsnorm",
        "h.0.h_Inner.mlp",
        "h.0.Inner.rmsnorm",
        "h.0.Inner.mlp",
        "h.1.a",
        "h.1.h_Inner.rmsnorm",
        "h.1.h_Inner.mlp",
        "h.1.Inner.rmsnorm",
        "h.1.Inner.mlp",
        "h_mlp",
        # 'o_mlp' is free; the second nested mlp skips nothing: o_mlp_1
        "o_mlp",
        "o_mlp_1",
        "y",
        "g_token_router",
        "logits_rmsnorm",
        "logits",
        "ce",
    ]


def test_generated_names_skip_names_bound_later() -> None:
    src = (
        "model M(d = 8) {\n  input x: float[B, N, d]\n  h = x + mlp(x, hidden=d)\n"
        "  h_mlp = mlp(h, hidden=d)\n  output h_mlp\n}\n"
    )
    assert [op.path for op in _prog(src).ops] == ["h_mlp_1", "h", "h_mlp"]


def test_state_dict_names() -> None:
    names = _prog().param_names()
    assert names[:2] == ["tok.weight", "h.0.a.wq.weight"]
    assert "h.1.Inner.mlp.fc2.bias" in names and "h.0.h_Inner.rmsnorm.weight" in names
    assert "y.basis.weight" in names and "g_token_router.w.weight" in names
    assert len(names) == len(set(names))
    # The tied head owns no weight (bias=false: nothing at all).
    assert not [n for n in names if n.startswith("logits.")]


def test_types_are_inferred_over_symbolic_dims() -> None:
    prog = _prog()
    by_path = {op.path: op for op in prog.ops}
    f = DType.FLOAT
    assert by_path["tok"].spec.outputs == (TensorType(f, ("B", "T", 16)),)
    assert by_path["y"].spec.outputs == (
        TensorType(f, ("B", "T", 16)),
        TensorType(f, ("B", "T", 8)),
        TensorType(f, ("B", "T", 8)),
        TensorType(f, ()),
    )
    assert by_path["g_token_router"].spec.outputs[0] == TensorType(DType.BOOL, ("B", "T"))
    assert by_path["logits"].spec.outputs == (TensorType(f, ("B", "T", 32)),)
    assert dict(by_path["logits"].spec.hp)["tie"] == "tok"
    assert dict(by_path["h.0.a"].spec.hp)["kv_heads"] == 2  # derived default resolved
    assert prog.type_of(prog.losses[0].ref) == TensorType(f, ())


def test_outputs_losses_and_aux_losses() -> None:
    prog = _prog()
    assert [o.name for o in prog.outputs] == ["logits"]
    assert [(loss.name, loss.weight) for loss in prog.losses] == [("ce", 1.0)]
    aux_ops = [prog.ops[r.index].path for r in prog.aux_losses]
    assert aux_ops == ["y", "g_token_router"]
    assert all(prog.type_of(r) == TensorType(DType.FLOAT, ()) for r in prog.aux_losses)


def test_constants_and_arithmetic() -> None:
    src = (
        "model M(d = 8, scale = 0.5) {\n  input x: float[B, N, d]\n"
        "  y = -x * scale + 2 / d\n  output y\n}\n"
    )
    prog = _prog(src)
    assert [c.value for c in prog.consts] == [0.5, 0.25]
    assert [op.op for op in prog.ops] == ["neg", "mul", "add"]
    assert {op.path for op in prog.ops} == {"y"}


def test_check_is_deterministic() -> None:
    a, b = _prog().describe(), _prog().describe()
    assert a == b and "op0 tok = embed(tokens=in0)" in a


def test_examples_check() -> None:
    examples = sorted((ROOT / "examples").glob("*.spark"))
    assert examples
    for path in examples:
        prog = check(parse(path.read_text(), str(path)))
        assert prog.outputs or prog.losses


def _mutants(text: str, rng: random.Random, n: int):
    tokens = text.split(" ")
    for _ in range(n):
        t = list(tokens)
        kind = rng.randrange(4)
        i = rng.randrange(len(t))
        if kind == 0:
            del t[i]
        elif kind == 1:
            t.insert(i, t[rng.randrange(len(t))])
        elif kind == 2 and i + 1 < len(t):
            t[i], t[i + 1] = t[i + 1], t[i]
        else:
            t[i] = t[i][: rng.randrange(len(t[i]) + 1)]
        yield " ".join(t)


@pytest.mark.parametrize("name", ["tiny_gpt", "spark_k", "hspmn", "procedural"])
def test_mutated_programs_give_diagnostics_not_crashes(name: str) -> None:
    from sparkc.lower import lower

    path = ROOT / "examples" / f"{name}.spark"
    if not path.exists():
        pytest.fail(f"missing example {path}")
    rng = random.Random(name)
    for src in _mutants(path.read_text(), rng, 60):
        try:
            lower(check(parse(src, F)))
        except SparkError as e:
            assert e.diagnostics and all(d.code.startswith("E0") and d.help for d in e.diagnostics)
