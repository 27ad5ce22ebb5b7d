"""Lark parse exceptions → user diagnostics in words (codes E0101–E0111).

Consumes an `UnexpectedToken` / `UnexpectedCharacters` / `UnexpectedEOF` raised by the LALR parser
and the source text; produces one `Diagnostic` with a span under the offending token, a message
that names tokens the way a user writes them ("expected ',' or ')', found name 'logits'"), and a
help line chosen by a small table of situations (unclosed bracket, reserved word, missing comma,
header without parentheses, statement outside a model, ...).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import BasicLexer, LexerThread

from ..diagnostics import Diagnostic, Label, Span

RESERVED = (
    "block",
    "false",
    "input",
    "loss",
    "model",
    "none",
    "output",
    "repeat",
    "return",
    "true",
    "weight",
)
_KEYWORD_TOKENS = {w.upper(): w for w in RESERVED}

# Regex terminals in words; string terminals are shown quoted ('(' or 'model').
_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "end of file",
}

_EXPR_START = frozenset(
    {"NAME", "INT", "FLOAT", "STRING", "TRUE", "FALSE", "NONE", "LPAR", "MINUS", "PLUS", "REPEAT"}
)
_STMT_START = frozenset({"NAME", "INPUT", "OUTPUT", "LOSS", "RETURN"})
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "DOT"})
_CLOSERS = {"RPAR": "(", "RSQB": "[", "RBRACE": "{"}
_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
# The order in which expected punctuation is listed: closers and separators first.
_ORDER = [
    "COMMA",
    "RPAR",
    "RSQB",
    "RBRACE",
    "EQUAL",
    "COLON",
    "LPAR",
    "LSQB",
    "LBRACE",
    "WEIGHT",
    "MODEL",
    "BLOCK",
    "$END",
]


class _Names:
    """Friendly token names for one grammar (string terminals read from the lark object)."""

    def __init__(self, parser: Lark):
        self.literal: dict[str, str] = {}
        for term in parser.terminals:
            if type(term.pattern).__name__ == "PatternStr":
                self.literal[term.name] = term.pattern.value
        self.operators = _OPERATORS | {n for n, v in self.literal.items() if v == "//"}

    def name(self, ttype: str) -> str:
        if ttype in _WORDS:
            return _WORDS[ttype]
        if ttype in self.literal:
            return f"'{self.literal[ttype]}'"
        return ttype.lower()

    def found(self, tok: Token) -> str:
        if tok.type == "$END":
            return "end of file"
        text = str(tok) if len(str(tok)) <= 30 else str(tok)[:27] + "..."
        if tok.type == "NAME":
            return f"name '{text}'"
        if tok.type in ("INT", "FLOAT"):
            return f"number '{text}'"
        if tok.type == "STRING":
            return f"string {text}"
        if tok.type in _KEYWORD_TOKENS:
            return f"keyword '{text}'"
        return f"'{text}'"

    def expected(self, expected: set[str], prev: Token | None = None) -> str:
        exp = set(expected)
        groups: list[str] = []
        has_closer = bool(exp & {"COMMA", "RPAR", "RSQB"})
        if exp & {"RPAR", "RSQB"} and prev is not None and prev.type == "NAME":
            exp -= {"LPAR", "EQUAL"}  # a call or keyword after the name: true, but noise here
        if _STMT_START <= exp:
            exp -= _STMT_START - {"NAME"}
            groups.append("a statement")
        if _EXPR_START <= exp:
            exp -= _EXPR_START
            groups.append("an expression")
        if self.operators & exp == self.operators or (self.operators & exp and has_closer):
            if not has_closer:
                groups.append("an operator")
            exp -= self.operators
        if "a statement" in groups:
            exp.discard("NAME")
        exp.discard("__ANON_0")
        listed = [self.name(t) for t in sorted(exp, key=_rank)] + groups
        if not listed:
            return "something else"
        if len(listed) == 1:
            return listed[0]
        return ", ".join(listed[:-1]) + " or " + listed[-1]


def _rank(ttype: str) -> tuple[int, str]:
    return (_ORDER.index(ttype) if ttype in _ORDER else len(_ORDER), ttype)


def _tok_span(filename: str, tok: Token) -> Span:
    return Span(
        filename, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1
    )


@functools.lru_cache(maxsize=4)
def _basic_lexer(parser: Lark) -> BasicLexer:
    """One standalone lexer per parser, kept. `Lark.lex` builds a new one on every call for an
    LALR parser, and each build re-checked the terminals for collisions (interegular, ~0.15 s,
    paid by every syntax error). The parser's construction already validated the terminals
    (and tests build the grammar with strict=True), so this copy skips that check."""
    conf = copy.copy(parser.lexer_conf)
    conf.skip_validation = True
    return BasicLexer(conf)


def _lex_until(parser: Lark, text: str, upto: int | None) -> list[Token]:
    """The tokens that start before offset `upto` (what the parser had already read)."""
    out: list[Token] = []
    try:
        out.extend(LexerThread.from_text(_basic_lexer(parser), text[: upto or 0]).lex(None))
    except UnexpectedInput:
        pass  # a bad character earlier in the text: report with what was seen so far
    return out


def _open_brackets(tokens: list[Token]) -> list[Token]:
    """The brackets opened and not yet closed at the end of `tokens` (innermost last)."""
    stack: list[Token] = []
    for tok in tokens:
        if tok.type in _OPENERS:
            stack.append(tok)
        elif tok.type in _CLOSERS and stack and _OPENERS[stack[-1].type] == tok.type:
            stack.pop()
    return stack


# --------------------------------------------------------------------------------------------
# Situations: each returns a Diagnostic or None; the first that applies wins.


class _Ctx:
    """One syntax error and what the situations need to describe it."""

    def __init__(self, exc: UnexpectedToken, text: str, filename: str, parser: Lark):
        self.exc, self.text, self.filename, self.parser = exc, text, filename, parser
        self.names = _Names(parser)
        self.tok: Token = exc.token
        self.expected: set[str] = set(exc.expected)
        before = _lex_until(
            parser, text, self.tok.start_pos if self.tok.type != "$END" else len(text)
        )
        self.prev: Token | None = before[-1] if before else None
        self.open_brackets: list[Token] = _open_brackets(before)


def _reserved_word(ctx: _Ctx) -> Diagnostic | None:
    tok, prev = ctx.tok, ctx.prev
    if tok.type in _KEYWORD_TOKENS and "NAME" in ctx.expected:
        bad = tok
    elif tok.type == "EQUAL" and prev is not None and prev.type in _KEYWORD_TOKENS:
        bad = prev
    else:
        return None
    word = str(bad)
    return Diagnostic(
        "E0111",
        f"'{word}' is a reserved word and cannot be used as a name",
        _tok_span(ctx.filename, bad),
        "reserved word",
        help=f"choose another name, e.g. '{word}_'; reserved words are " + ", ".join(RESERVED),
    )


def _bad_number(ctx: _Ctx) -> Diagnostic | None:
    tok, prev, text = ctx.tok, ctx.prev, ctx.text
    if tok.type not in ("INT", "FLOAT") or prev is None or prev.type != "DOT":
        return None
    if prev.start_pos is None or prev.start_pos == 0 or not text[prev.start_pos - 1].isdigit():
        return None
    start = prev.start_pos - 1
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._"):
        start -= 1
    lit = text[start : tok.end_pos]
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return Diagnostic(
        "E0109",
        f"invalid number literal '{lit}'",
        Span(ctx.filename, line, col, line, col + len(lit)),
        "not a valid number",
        help="a number has at most one decimal point, as in 0.5 or 1.5e-3",
    )


def _end_of_file(ctx: _Ctx) -> Diagnostic | None:
    if ctx.tok.type != "$END":
        return None
    text = ctx.text
    end = len(text.rstrip())
    line = text.count("\n", 0, end) + 1
    col = end - (text.rfind("\n", 0, end) + 1) + 1
    here = Span.point(ctx.filename, line, col)
    if ctx.open_brackets:
        o = ctx.open_brackets[-1]
        closer = ctx.names.literal[_OPENERS[o.type]]
        return Diagnostic(
            "E0105",
            f"unexpected end of file: the '{o}' opened at {o.line}:{o.column} is never closed",
            here,
            "the file ends here",
            (Label(_tok_span(ctx.filename, o), f"this '{o}' is not closed"),),
            help=f"add '{closer}' to close it",
        )
    return Diagnostic(
        "E0105",
        f"unexpected end of file; expected {ctx.names.expected(ctx.expected)}",
        here,
        "the file ends here",
        help="the file ends in the middle of a statement",
    )


def _unclosed_bracket(ctx: _Ctx) -> Diagnostic | None:
    """A closer is expected and the offending token starts a new line: a bracket was left open."""
    tok, prev = ctx.tok, ctx.prev
    want = ctx.expected & set(_CLOSERS)
    if not want or prev is None or tok.line == prev.end_line or not ctx.open_brackets:
        return None
    o = ctx.open_brackets[-1]
    if _OPENERS[o.type] not in want:
        return None
    closer = ctx.names.literal[_OPENERS[o.type]]
    return Diagnostic(
        "E0101",
        f"expected {ctx.names.expected(ctx.expected, prev)}, found {ctx.names.found(tok)}",
        _tok_span(ctx.filename, tok),
        "unexpected here",
        (Label(_tok_span(ctx.filename, o), f"this '{o}' is not closed"),),
        help=f"add '{closer}' at the end of line {prev.end_line} to close the '{o}' "
        f"opened at {o.line}:{o.column}",
    )


def _unmatched_closer(ctx: _Ctx) -> Diagnostic | None:
    tok = ctx.tok
    if tok.type not in _CLOSERS:
        return None
    if any(_OPENERS[o.type] == tok.type for o in ctx.open_brackets):
        return None
    return Diagnostic(
        "E0101",
        f"unmatched '{tok}'",
        _tok_span(ctx.filename, tok),
        f"no matching '{_CLOSERS[tok.type]}' before it",
        help=f"remove this '{tok}' or add the missing '{_CLOSERS[tok.type]}'",
    )


def _header_without_parens(ctx: _Ctx) -> Diagnostic | None:
    if ctx.expected != {"LPAR"} or ctx.tok.type != "LBRACE":
        return None
    return Diagnostic(
        "E0101",
        f"expected '(', found {ctx.names.found(ctx.tok)}",
        _tok_span(ctx.filename, ctx.tok),
        "expected '(' before the body",
        help="a model or block header lists its hyperparameters in parentheses, even when there "
        "are none: model M() { ... }",
    )


def _outside_definition(ctx: _Ctx) -> Diagnostic | None:
    if not {"MODEL", "BLOCK"} <= ctx.expected:
        return None
    return Diagnostic(
        "E0101",
        f"expected 'model' or 'block', found {ctx.names.found(ctx.tok)}",
        _tok_span(ctx.filename, ctx.tok),
        "outside any definition",
        help="statements belong inside a body: model M(d = 64) { input x: float[B, N, d] ... }",
    )


def _generic(ctx: _Ctx) -> Diagnostic:
    tok, prev, exp, names = ctx.tok, ctx.prev, ctx.expected, ctx.names
    if tok.type in _EXPR_START and exp & {"RPAR", "RSQB"} and "COMMA" in exp and prev is not None:
        help = f"did you forget a ',' before {names.found(tok)}?"
    elif exp == {"COLON"}:
        help = "declare an input as: input x: float[B, N, D]"
    elif "EQUAL" in exp and prev is not None and prev.type == "NAME":
        help = f"a statement binds a value: {prev} = <expression>"
    elif _EXPR_START <= exp:
        help = "a value is missing here: write a name, a number or a call"
    elif tok.type == "COMMA" and _STMT_START <= exp:
        help = "remove the ','; statements are separated by new lines, not commas"
    elif tok.type in _EXPR_START and _STMT_START <= exp:
        help = "each statement starts with a name and '=' (or input, output, loss, return)"
    else:
        help = "see docs/language.md for the syntax of models, blocks and statements"
    return Diagnostic(
        "E0101",
        f"expected {names.expected(exp, prev)}, found {names.found(tok)}",
        _tok_span(ctx.filename, tok),
        "unexpected here",
        help=help,
    )


_SITUATIONS: tuple[Callable[[_Ctx], Diagnostic | None], ...] = (
    _end_of_file,
    _reserved_word,
    _bad_number,
    _header_without_parens,
    _outside_definition,
    _unclosed_bracket,
    _unmatched_closer,
)


# --------------------------------------------------------------------------------------------


def _characters(exc: UnexpectedCharacters, text: str, filename: str, names: _Names) -> Diagnostic:
    ch = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else exc.char
    line, col = exc.line, exc.column
    if ch == '"':
        end = text.find("\n", exc.pos_in_stream)
        end = len(text) if end < 0 else end
        return Diagnostic(
            "E0110",
            "unterminated string literal",
            Span(filename, line, col, line, col + max(1, end - exc.pos_in_stream)),
            "this string has no closing quote",
            help='close the string with " on the same line (strings cannot span lines or '
            "contain backslashes)",
        )
    code = f"U+{ord(ch):04X}"
    shown = repr(ch)[1:-1] if not ch.isprintable() else ch
    if ch.isprintable() and ord(ch) < 128:
        msg = f"unexpected character '{shown}'"
        help = "the operators are + - * / // and the punctuation ( ) [ ] { } , = : ."
        if ch in "\\\"'":
            help = 'strings use double quotes on one line, e.g. act="gelu" (or just act=gelu)'
    else:
        msg = f"invalid character '{shown}' ({code})"
        help = "names use ASCII letters, digits and '_'; comments start with '#'"
    return Diagnostic("E0103", msg, Span.point(filename, line, col), "not valid here", help=help)


def describe_syntax_error(
    exc: UnexpectedInput, text: str, filename: str, parser: Lark
) -> Diagnostic:
    """The diagnostic for one lark parse failure."""
    names = _Names(parser)
    if isinstance(exc, UnexpectedCharacters):
        return _characters(exc, text, filename, names)
    if isinstance(exc, UnexpectedEOF):  # not raised by LALR, but keep the contract total
        end = len(text.rstrip())
        line = text.count("\n", 0, end) + 1
        col = end - (text.rfind("\n", 0, end) + 1) + 1
        return Diagnostic(
            "E0105",
            "unexpected end of file",
            Span.point(filename, line, col),
            "the file ends here",
            help="the file ends in the middle of a definition",
        )
    assert isinstance(exc, UnexpectedToken)
    ctx = _Ctx(exc, text, filename, parser)
    for situation in _SITUATIONS:
        diag = situation(ctx)
        if diag is not None:
            return diag
    return _generic(ctx)
