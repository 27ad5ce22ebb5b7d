"""Checker: one test per error class (code, position, key words), overrides, multiple errors."""

from __future__ import annotations

import pytest

from sparkc.diagnostics import Diagnostic, SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse

F = "t.spark"

HEADER = "model M(d = 64, heads = 4, vocab = 50) {\n  input x: float[B, N, d]\n  input tokens: i64[B, N]\n"


def model(body: str, header: str = HEADER, extra: str = "") -> str:
    lines = "".join(f"  {ln}\n" for ln in body.strip("\n").splitlines())
    return extra + header + lines + "}\n"


def errors(src: str, **kw) -> list[Diagnostic]:
    with pytest.raises(SparkError) as info:
        check(parse(src, F), **kw)
    diags = info.value.diagnostics
    rendered = info.value.render({F: src})
    assert all(f"error[{d.code}]" in rendered for d in diags)
    return diags


def where(src: str, snippet: str, nth: int = 0) -> tuple[int, int]:
    """(line, col) of the nth occurrence of snippet; a leading '$' means the last one."""
    if snippet.startswith("$"):
        pos = src.rindex(snippet[1:])
    else:
        pos = -1
        for _ in range(nth + 1):
            pos = src.index(snippet, pos + 1)
    line = src.count("\n", 0, pos) + 1
    return line, pos - (src.rfind("\n", 0, pos) + 1) + 1


def one(src: str, code: str, at: str, words: list[str], nth: int = 0, **kw) -> Diagnostic:
    diags = errors(src, **kw)
    match = [d for d in diags if d.code == code]
    assert match, f"no {code} in {[(d.code, d.message) for d in diags]}"
    d = match[0]
    assert (d.span.line, d.span.col) == where(src, at, nth), (d.span, d.message)
    for w in words:
        assert w in d.message + " " + d.help, (w, d.message, d.help)
    assert d.help, d
    return d


BLOCK = """\
block Layer(d, heads, hidden = 4 * d) {
  input x: float[B, N, d]
  h = x + attention(rmsnorm(x), heads=heads)
  return h + mlp(rmsnorm(h), hidden=hidden)
}
"""

CASES = [
    # -- names and calls
    ("E0201", "y = x + hh\noutput y", "hh", ["unknown name 'hh'"]),
    ("E0201", "y = z\nz = x\noutput y", "z\n  z", ["used before it is defined"]),
    (
        "E0201",
        "y = mlp(x, hidden=4 * dd)\noutput y",
        "4 * dd",
        ["unknown name 'dd'", "did you mean 'd'"],
    ),
    (
        "E0203",
        "y = atention(x, heads=4)\noutput y",
        "atention",
        ["unknown op or block", "attention"],
    ),
    ("E0203", "y = add(x, x)\noutput y", "add", ["operator"]),
    ("E0204", "y = attention(x, heads=4, hedas=2)\noutput y", "hedas", ["no argument 'hedas'"]),
    ("E0205", "y = attention(x)\noutput y", "attention", ["needs the hyperparameter 'heads'"]),
    ("E0206", "y = attention(x, 4)\noutput y", "4)", ["takes 1 tensor input", "by name"]),
    ("E0206", "y = sqdk_attention(x, heads=4)\noutput y", "sqdk_attention", ["'gate'"]),
    ("E0207", "y = attention(x, heads=2.5)\noutput y", "2.5", ["expects an integer", "2.5"]),
    ("E0207", "y = attention(x, heads=4, causal=3)\noutput y", "3)", ["true or false"]),
    ("E0207", "y = mlp(x, hidden=8, act=foo)\noutput y", "foo", ["relu, gelu", "'foo'"]),
    ("E0207", "y = spd_router(x, gate=sigmod).y\noutput y", "sigmod", ["did you mean 'sigmoid'"]),
    ("E0208", "y = attention(x, heads=x)\noutput y", "x)", ["compile-time int", "tensor"]),
    ("E0208", "y = relu(3)\noutput y", "3)", ["must be a tensor"]),
    ("E0209", "y = attention(heads=4, x)\noutput y", "x)", ["positional argument after keyword"]),
    ("E0209", "y = attention(x, heads=4, heads=2)\noutput y", "heads=2", ["given twice"]),
    ("E0210", "y = relu(x)\ny = gelu(x)\noutput y", "y = gelu", ["'y' is already defined"]),
    ("E0210", "input x: float[B]\noutput x", "x: float[B]", ["'x' is already defined"]),
    ("E0210", "output x\noutput x", "$x\n}", ["declared twice"]),
    ("E0213", "y = linear(x, out=4).y\noutput y", "y\n  output", ["single output of linear"]),
    ("E0214", "g = token_router(x).gat\noutput g", "gat", ["no output 'gat'", "gate"]),
    ("E0215", "a, b = spd_router(x)\noutput a", "a, b", ["returns 4 values", "x_struct"]),
    ("E0215", "a, b = linear(x, out=3)\noutput a", "a, b", ["single output"]),
    ("E0216", "r = spd_router(x)\ny = r + 1\noutput y", "r + 1", ["4 results", ".y"]),
    ("E0217", "y = linear(x, out=4, tie=x)\noutput y", "x)", ["no embed instance named 'x'"]),
    ("E0217", "t = rmsnorm(x)\ny = linear(x, out=4, tie=t)\noutput y", "t)", ["rmsnorm instance"]),
    (
        "E0217",
        "t = embed(tokens, vocab=vocab, dim=d)\ny = linear(x, out=7, tie=t)\noutput y",
        "tie=t",
        ["[50, 64]", "out = vocab = 50"],
    ),
    ("E0218", "y = attention(x, heads=4, basis=3)\noutput y", "3)", ["basis(...)"]),
    ("E0220", "loss l = rmsnorm(x)", "rmsnorm(x)", ["0-d float tensor", "float[B,N,64]"]),
    ("E0221", "y = repeat(0) Blk(x, d=d)\noutput y", "0) Blk", ["count between 1"]),
    ("E0221", "y = repeat(2) mlp(x, hidden=4)\noutput y", "mlp", ["built-in op"]),
    ("E0226", "y = mlp(x, hidden=d // 0)\noutput y", "d // 0", ["division by zero"]),
    ("E0227", "input z: float[B, N + 1]\noutput z", "N + 1", ["symbolic dimension 'N'"]),
    ("E0227", "input z: float[B, 0]\noutput z", "0]", ["positive integer"]),
    ("E0202", "input z: flot[B]\noutput z", "flot", ["unknown dtype", "float"]),
    ("E0229", "a, _, _ = token_router(x)\ny = _\noutput y", "_\n  output", ["discards"]),
    ("E0232", "y = x // 2\noutput y", "x // 2", ["floor division"]),
    (
        "E0301",
        "y = x + embed(tokens, vocab=vocab, dim=32)\noutput y",
        "x + embed",
        ["[B, N, 64] and [B, N, 32]", "broadcast"],
    ),
    (
        "E0301",
        (
            "input t3: i64[B, N, 2]\nlogits = linear(x, out=vocab)\n"
            "loss ce = cross_entropy(logits, t3)"
        ),
        "t3)",
        ["targets must have the shape"],
    ),
    ("E0302", "y = fk_attention(x, heads=4, beta=1.5)\noutput y", "1.5", ["(0, 1)"]),
    ("E0302", "y = fk_attention(x, heads=4, hops=0)\noutput y", "0)\n", ["positive"]),
    ("E0302", "y = trajectory(x, window=1)\noutput y", "window=1", ["'window' must be >= 2"]),
    ("E0302", "g = token_router(x, sparsity=2).gate\noutput g", "2)", ["[0, 1]"]),
    (
        "E0303",
        "y = attention(tokens, heads=4)\noutput y",
        "tokens, heads",
        ["float tensor", "embed"],
    ),
    ("E0304", "y = attention(x, heads=5)\noutput y", "heads=5", ["does not divide"]),
    ("E0304", "y = attention(x, heads=4, kv_heads=3)\noutput y", "kv_heads=3", ["must divide"]),
    ("E0304", "y = conv1d(x, kernel=4, causal=false)\noutput y", "kernel=4", ["odd kernel"]),
    ("E0305", "y = routed_mlp(x, hidden=64, route=hash)\noutput y", "routed_mlp", ["tokens"]),
]


@pytest.mark.parametrize(
    "code,body,at,words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_error_classes(code: str, body: str, at: str, words: list[str]) -> None:
    extra = "block Blk(d) {\n  input x: float[B, N, d]\n  return x\n}\n"
    src = model(body, extra=extra)
    one(src, code, at, words)


def test_unknown_name_in_a_block_notes_the_call_site() -> None:
    src = model(
        "y = Layer(x, d=d, heads=heads)\noutput y",
        extra=BLOCK.replace("hidden=hidden", "hidden=hiden"),
    )
    diags = errors(src)
    assert diags[0].code == "E0201" and "hiden" in diags[0].message
    assert diags[0].help == "did you mean 'hidden'?"
    assert [n.message for n in diags[0].notes] == ["in this use of block 'Layer'"]
    assert (diags[0].notes[0].span.line, diags[0].notes[0].span.col) == where(src, "Layer(x")


def test_block_errors_are_reported_once_per_site() -> None:
    src = model(
        "y = repeat(3) Layer(x, d=d, heads=heads)\noutput y",
        extra=BLOCK.replace("act", "").replace("hidden=hidden)", "hidden=hidden, act=fu)"),
    )
    diags = errors(src)
    assert [d.code for d in diags] == ["E0207"]


def test_structure_errors() -> None:
    src = (
        "block A(d) {\n  input x: float[B, d]\n  return B(x, d=d)\n}\n"
        "block B(d) {\n  input x: float[B, d]\n  return A(x, d=d)\n}\n"
        "block C(d) {\n  input x: float[B, d]\n  return C(x, d=d)\n}\n"
        "block A(d) {\n  input x: float[B, d]\n  return x\n}\n"
        "block mlp(d) {\n  input x: float[B, d]\n  return x\n}\n"
        "block NoRet(d) {\n  input x: float[B, d]\n  output x\n}\n"
        "model M(d = 4, d = 5) {\n  input x: float[B, d]\n  y = A(x, d=d)\n  return y\n  output y\n}\n"
    )
    diags = errors(src)
    got = {(d.code, d.span.line) for d in diags}
    assert ("E0212", 7) in got  # A → B → A, closed in B
    assert ("E0212", 11) in got  # C calls itself
    assert ("E0211", 13) in got and ("E0211", 17) in got
    assert ("E0228", 21) in got and ("E0228", 23) in got  # block without return; output in block
    assert ("E0210", 25) in got and ("E0228", 28) in got  # duplicate hyper; return in a model
    cyc = next(d for d in diags if d.code == "E0212" and d.span.line == 7)
    assert "A → B → A" in cyc.message or "B → A → B" in cyc.message


def test_block_argument_type_and_repeat_shape() -> None:
    extra = (
        "block Half(d) {\n  input x: float[B, N, d]\n  return linear(x, out=d / 2)\n}\n"
        "block Two(d) {\n  input x: float[B, N, d]\n  input y: float[B, N, d]\n  return x + y\n}\n"
    )
    src = model(
        "a = Half(x, d=32)\nb = repeat(2) Half(x, d=d)\nc = repeat(2) Two(x, x, d=d)\n"
        "output a\noutput b\noutput c",
        extra=extra,
    )
    diags = errors(src)
    e222 = next(d for d in diags if d.code == "E0222")
    assert (e222.span.line, e222.span.col) == where(src, "x, d=32")
    assert "declared float[B,N,32]" in e222.message and "float[B,N,64]" in e222.message
    e221 = [d for d in diags if d.code == "E0221"]
    assert any("takes float[B,N,64] and returns float[B,N,32]" in d.message for d in e221)
    assert any("one input and one result; 'Two' has 2 input(s)" in d.message for d in e221)


def test_model_level_errors() -> None:
    d = one(
        "model M(d = 4) {\n  input x: float[B, d]\n  y = relu(x)\n}\n",
        "E0219",
        "M(",
        ["no outputs and no losses"],
    )
    assert "output" in d.help
    one("model M(d) {\n  input x: float[B, d]\n  output x\n}\n", "E0230", "d)", ["no value"])
    one("block L(d) {\n  input x: float[B, d]\n  return x\n}\n", "E0108", "L(", ["no model"])


def test_overrides() -> None:
    src = model(
        "y = mlp(x, hidden=4 * d, act=act)\noutput y",
        header=HEADER.replace("vocab = 50", "vocab = 50, act = gelu"),
    )
    prog = check(parse(src, F), {"d": "32", "act": "relu", "heads": 2})
    hp = dict(prog.hyper)
    assert hp == {"d": 32, "heads": 2, "vocab": 50, "act": "relu"}
    assert prog.ops[0].spec.outputs[0].shape == ("B", "N", 32)
    assert dict(prog.ops[0].spec.hp) == {"hidden": 128, "act": "relu"}
    d = one(
        src, "E0223", "M(", ["no hyperparameter 'dd'", "did you mean 'd'"], overrides={"dd": "3"}
    )
    assert "-D dd" in d.message
    one(src, "E0224", "d = 64", ["cannot read '1.2.3'"], overrides={"d": "1.2.3"})
    one(src, "E0207", "act)", ["relu, gelu"], overrides={"act": "swish"})
    one(src, "E0207", "4 * d", ["expects an integer", "2.5"], overrides={"d": 0.625})
    assert dict(check(parse(src, F), {"d": "1e2"}).hyper)["d"] == 100.0


def test_override_values_are_parsed_sensibly() -> None:
    from sparkc.frontend.values import Symbol, parse_override

    assert parse_override("256") == 256 and isinstance(parse_override("256"), int)
    assert parse_override("-3") == -3 and parse_override("0.5") == 0.5
    assert parse_override("1e-3") == 1e-3
    assert parse_override("true") is True and parse_override("false") is False
    assert parse_override("none") is None and parse_override("gelu") == Symbol("gelu")
    assert parse_override(7) == 7 and parse_override(False) is False


def test_model_selection() -> None:
    src = (
        "model A(d = 4) {\n  input x: float[B, d]\n  output x\n}\n"
        "model B(d = 8) {\n  input x: float[B, d]\n  output y = relu(x)\n}\n"
    )
    assert check(parse(src, F)).name == "B"
    assert check(parse(src, F), model="A").name == "A"
    one(src, "E0225", "B(", ["no model named 'C'"], model="C")


def test_all_independent_errors_are_reported() -> None:
    src = model(
        "a = atention(x, heads=4)\nb = mlp(x, hidden=2.5)\nc = a + b\n"
        "e = linear(x, out=0)\noutput c\noutput e"
    )
    codes = [d.code for d in errors(src)]
    assert codes == ["E0203", "E0207", "E0302"]  # c depends on failed values: no follow-up error


def test_error_codes_are_documented() -> None:
    import pathlib
    import re

    from sparkc.frontend.codes import ERROR_CODES

    root = pathlib.Path(__file__).resolve().parents[2] / "sparkc"
    used = set()
    for path in [*(root / "frontend").glob("*.py"), *(root / "ir" / "ops").glob("*.py")]:
        used |= set(re.findall(r'"(E0[123]\d\d)"', path.read_text()))
    assert used and used <= set(ERROR_CODES), sorted(used - set(ERROR_CODES))
    assert all(ERROR_CODES[c] for c in ERROR_CODES)
