"""Parser: every construct, spans, the AST dump, the grammar's strictness, and syntax errors."""

from __future__ import annotations

import time

import pytest
from lark import Lark

from sparkc.diagnostics import SparkError
from sparkc.frontend import ast
from sparkc.frontend.parser import MAX_BYTES, grammar_text, parse, parse_bytes

F = "t.spark"

PROGRAM = """\
# a comment
block Layer(d, heads, hidden = 4 * d) {
  input x: float[B, N, d]
  h = x + attention(rmsnorm(x), heads=heads, basis=basis(max_len=64))
  return h + mlp(rmsnorm(h), hidden=hidden, act=relu)
}

model Tiny(vocab = 256, d = 128, eps = 1.5e-3, flag = true, layers = 2,) {
  input tokens: i64[B, N]
  input targets: i64[B, N]
  tok = embed(tokens, vocab=vocab, dim=d)
  h = repeat(layers) Layer(tok, d=d, heads=4)
  y, _, xp, l = spd_router(h)
  g = token_router(h).gate
  s = -y / 2 - (y * 3) // 1 + +y
  z = f(none, false, "gelu", r.loss)
  output logits = linear(h, out=vocab, tie=tok)
  output y
  loss ce = cross_entropy(logits, targets) weight 0.5
}
"""


def _parse(src: str = PROGRAM) -> ast.Module:
    return parse(src, F)


def _err(src: str) -> SparkError:
    with pytest.raises(SparkError) as info:
        parse(src, F)
    return info.value


def test_grammar_is_strict_lalr() -> None:
    # strict=True rejects shift/reduce conflicts and terminal collisions (keywords vs NAME).
    Lark(grammar_text(), parser="lalr", strict=True)


def test_grammar_comes_from_the_installed_package() -> None:
    import importlib.resources

    path = importlib.resources.files("sparkc.grammar") / "spark.lark"
    assert path.read_text("utf-8") == grammar_text()
    assert "start:" in grammar_text()


def test_definitions_and_hyperparameters() -> None:
    m = _parse()
    assert [type(d) for d in m.definitions] == [ast.BlockDef, ast.ModelDef]
    blk, model = m.definitions
    assert blk.name == "Layer" and [p.name for p in blk.params] == ["d", "heads", "hidden"]
    assert blk.params[0].default is None
    hidden = blk.params[2].default
    assert isinstance(hidden, ast.BinOp) and hidden.op == "*"
    assert isinstance(hidden.left, ast.IntLit) and hidden.left.value == 4
    defaults = {p.name: p.default for p in model.params}
    assert isinstance(defaults["eps"], ast.FloatLit) and defaults["eps"].value == 1.5e-3
    assert isinstance(defaults["flag"], ast.BoolLit) and defaults["flag"].value is True
    assert m.models == (model,) and m.blocks == (blk,)


def test_statements() -> None:
    model = _parse().definitions[1]
    kinds = [type(s).__name__ for s in model.body]
    assert kinds == [
        "InputDecl",
        "InputDecl",
        "Let",
        "Let",
        "Let",
        "Let",
        "Let",
        "Let",
        "Output",
        "Output",
        "Loss",
    ]
    inp = model.body[0]
    assert inp.name == "tokens" and inp.type.dtype == "i64"
    assert [d.id for d in inp.type.dims] == ["B", "N"]
    rep = model.body[3].value
    assert isinstance(rep, ast.Repeat) and rep.call.func == "Layer"
    assert isinstance(rep.count, ast.Name) and rep.count.id == "layers"
    tup = model.body[4]
    assert tup.is_tuple and [t.name for t in tup.targets] == ["y", "_", "xp", "l"]
    assert tup.targets[1].is_discard
    field = model.body[5].value
    assert isinstance(field, ast.Field) and field.name == "gate"
    out_def, out_ref, loss = model.body[8], model.body[9], model.body[10]
    assert out_def.value is not None and out_ref.value is None
    assert isinstance(loss.weight, ast.FloatLit) and loss.weight.value == 0.5


def test_expressions_and_arguments() -> None:
    model = _parse().definitions[1]
    s = model.body[6].value  # -y / 2 - (y * 3) // 1 + +y
    assert isinstance(s, ast.BinOp) and s.op == "+"
    assert isinstance(s.right, ast.Name)  # unary plus is the identity
    sub = s.left
    assert sub.op == "-" and sub.left.op == "/" and isinstance(sub.left.left, ast.Neg)
    assert sub.right.op == "//" and sub.right.left.op == "*"
    z = model.body[7].value
    kinds = [type(a.value).__name__ for a in z.args]
    assert kinds == ["NoneLit", "BoolLit", "StringLit", "Field"]
    assert z.args[2].value.value == "gelu"
    assert z.args[3].value.name == "loss"  # `loss` is reserved, yet a valid field name
    call = model.body[8].value
    assert [type(a).__name__ for a in call.args] == ["PosArg", "KwArg", "KwArg"]
    assert call.args[2].name == "tie" and call.args[2].value.id == "tok"


def test_spans_cover_the_source_text() -> None:
    lines = PROGRAM.splitlines()
    blk, model = _parse().definitions
    assert (blk.span.line, blk.span.col, blk.span.end_line) == (2, 1, 6)
    assert (blk.name_span.line, blk.name_span.col, blk.name_span.end_col) == (2, 7, 12)
    let = blk.body[1]
    call = let.value.right  # attention(...)
    text = lines[call.span.line - 1][call.span.col - 1 : call.span.end_col - 1]
    assert text == "attention(rmsnorm(x), heads=heads, basis=basis(max_len=64))"
    kw = call.args[1]
    assert lines[3][kw.span.col - 1 : kw.span.end_col - 1] == "heads=heads"
    assert lines[3][kw.name_span.col - 1 : kw.name_span.end_col - 1] == "heads"
    paren = model.body[6].value.left.right  # (y * 3) // 1 includes the parenthesis
    assert lines[paren.span.line - 1][paren.span.col - 1] == "("
    loss_field = model.body[7].value.args[3].value
    src = lines[loss_field.name_span.line - 1]
    assert src[loss_field.name_span.col - 1 : loss_field.name_span.end_col - 1] == "loss"
    assert all(s.file == F for s in (blk.span, kw.span, loss_field.span))


def test_dump_is_canonical() -> None:
    text = ast.dump(_parse())
    assert text.endswith("\n") and text == ast.dump(_parse())
    assert text.startswith("(module\n  (block Layer @2:1\n    (params\n      (hyper d @2:13)")
    assert "(let (y _ xp l) @13:3" in text
    assert '(string "gelu" @' in text and "(field loss @" in text
    assert text.count("(") == text.count(")")
    # Changing one position changes the dump: it is made for diffing.
    assert ast.dump(parse("\n" + PROGRAM, F)) != text


def test_empty_and_comment_only_files() -> None:
    for src in ("", "   \n", "# nothing here\n"):
        err = _err(src)
        d = err.diagnostics[0]
        assert d.code == "E0108" and "no model" in d.message and "model M(" in d.help


SYNTAX_ERRORS = [
    # (source, code, line, col, words in the message)
    (
        "model M(d=4) {\n  h = attention(rmsnorm(x, heads=4)\n  y = h\n}\n",
        "E0101",
        3,
        3,
        ["expected ',' or ')'", "name 'y'"],
    ),
    ("model M(d=4) {\n  h = x\n", "E0105", 2, 8, ["end of file", "'{'", "1:14"]),
    ("model M() {\n  output = x\n}\n", "E0111", 2, 3, ["'output' is a reserved word"]),
    ("model M() { true = 1 }", "E0111", 1, 13, ["'true' is a reserved word"]),
    ("model M() { h = model + 1 }", "E0111", 1, 17, ["'model'"]),
    ("model M { }", "E0101", 1, 9, ["expected '('"]),
    ("h = 3\n", "E0101", 1, 1, ["expected 'model' or 'block'"]),
    ("model M() { h = f(x heads=4) }", "E0101", 1, 21, ["expected ',' or ')'"]),
    ("model M() { h = 1.2.3 }", "E0109", 1, 17, ["'1.2.3'"]),
    ("model M() { h = 1__0 }", "E0109", 1, 17, ["'1__0'"]),
    ("model M() { h = 1e999 }", "E0109", 1, 17, ["too large"]),
    ('model M() { h = "abc }', "E0110", 1, 17, ["unterminated string"]),
    ("model M() { h = x $ 3 }", "E0103", 1, 19, ["'$'"]),
    ("model M() { héllo = 3 }", "E0103", 1, 14, ["U+00E9"]),
    ("model M() { input x float[B] }", "E0101", 1, 21, ["expected ':'"]),
    ("model M() { h = f(x,,y) }", "E0101", 1, 21, ["an expression", "found ','"]),
    ("model M() { h = f(x)) }", "E0101", 1, 21, ["unmatched ')'"]),
    ("model M() { h = x + \n}", "E0101", 2, 1, ["expected an expression"]),
]


@pytest.mark.parametrize("src,code,line,col,words", SYNTAX_ERRORS)
def test_syntax_errors(src: str, code: str, line: int, col: int, words: list[str]) -> None:
    d = _err(src).diagnostics[0]
    assert (d.code, d.span.line, d.span.col) == (code, line, col), d
    for w in words:
        assert w in d.message, (w, d.message)
    assert d.help
    rendered = _err(src).render({F: src})
    assert f"{F}:{line}:{col}: error[{code}]" in rendered and "^" in rendered


def test_unclosed_bracket_points_at_the_opener() -> None:
    src = "model M(d=4) {\n  h = attention(rmsnorm(x, heads=4)\n  y = h\n}\n"
    d = _err(src).diagnostics[0]
    assert [(n.span.line, n.span.col) for n in d.notes] == [(2, 16)]
    assert "2:16" in d.help


def test_deep_nesting_is_a_diagnostic_not_a_crash() -> None:
    src = "model M() { h = " + "f(" * 5000 + "x" + ")" * 5000 + " output h }"
    start = time.perf_counter()
    d = _err(src).diagnostics[0]
    assert d.code == "E0104" and "nested too deeply" in d.message
    assert time.perf_counter() - start < 10
    deep_neg = "model M() { h = " + "-" * 3000 + "x }"
    assert _err(deep_neg).diagnostics[0].code == "E0104"
    # Redundant parentheses do not nest the tree: they parse fine.
    ok = parse("model M() { input x: float[B]  h = " + "(" * 3000 + "x" + ")" * 3000 + " }", F)
    assert isinstance(ok.definitions[0].body[1].value, ast.Name)


def test_parse_bytes_rejects_binary_input() -> None:
    cases = [
        (b"model M() {}\x00\x01", "E0107", 1, 13),
        (b"model M() {\n  h = \xff\xfe }", "E0106", 2, 7),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "E0107", 3, 1),
    ]
    for data, code, line, col in cases:
        with pytest.raises(SparkError) as info:
            parse_bytes(data, F)
        d = info.value.diagnostics[0]
        assert (d.code, d.span.line, d.span.col) == (code, line, col)
        assert d.help


def test_parse_bytes_size_cap_is_fast() -> None:
    data = b"# padding\n" * (1 << 20)  # 10 MB
    start = time.perf_counter()
    with pytest.raises(SparkError) as info:
        parse_bytes(data, F)
    assert time.perf_counter() - start < 2
    d = info.value.diagnostics[0]
    assert d.code == "E0102" and "too large" in d.message
    assert len(data) > MAX_BYTES


def test_parse_bytes_accepts_utf8_with_bom() -> None:
    m = parse_bytes("\ufeffmodel M() { input x: float[B]  output x }\n".encode(), F)
    assert m.definitions[0].name == "M"


def test_random_bytes_never_crash() -> None:
    import random

    rng = random.Random(1234)
    base = PROGRAM.encode()
    for _ in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            data[pos : pos + rng.randint(0, 3)] = bytes(
                rng.randrange(256) for _ in range(rng.randint(0, 3))
            )
        try:
            parse_bytes(bytes(data), F)
        except SparkError as e:
            assert e.diagnostics and e.diagnostics[0].code.startswith("E01")


def test_syntax_errors_build_the_lexer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Describing a syntax error re-lexes the text before the bad token; the lexer's scanner
    (a large regex, ~0.15 s to build) is built once per process, not once per error."""
    from lark.lexer import BasicLexer

    builds = []
    real = BasicLexer._build_scanner

    def counting(self):
        builds.append(1)
        return real(self)

    monkeypatch.setattr(BasicLexer, "_build_scanner", counting)
    for src, *_ in SYNTAX_ERRORS * 2:
        _err(src)
    assert len(builds) <= 1
