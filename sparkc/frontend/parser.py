"""Source text (or raw bytes) → `ast.Module`, with every failure turned into a diagnostic.

`parse(text, filename)` runs the LALR parser built once per process from the packaged grammar
(`sparkc.grammar/spark.lark`; lark keeps the analysed tables in the user's sparkc cache) and
converts the lark tree into the frozen dataclasses of `sparkc.frontend.ast`. `parse_bytes(data, filename)` is what the CLI calls on a file's bytes: it
rejects oversized, binary and non-UTF-8 input before any parsing.

No lark exception ever escapes: syntax errors become `SparkError` diagnostics with codes E01xx
(see `sparkc.frontend.codes`), a span under the offending token, a message in words
("expected ',' or ')', found name 'logits'") and a help line. The tree conversion is iterative
and expression nesting is capped, so no input can exhaust the Python stack.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from ..diagnostics import CompilerBug, Diagnostic, Span, SparkError
from . import ast
from .syntax_errors import describe_syntax_error

MAX_BYTES = 1 << 20  # real models are a few KB; lark needs ~8 s per MB, so refuse more up front
MAX_DEPTH = 100  # expression nesting; keeps every recursive stage far from Python's stack limit

MINIMAL_MODEL = "model M(d = 64) { input x: float[B, N, d]  output y = mlp(x, hidden=4*d) }"


@functools.lru_cache(maxsize=1)
def grammar_text() -> str:
    return (importlib.resources.files("sparkc.grammar") / "spark.lark").read_text("utf-8")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=_cache_file(),
    )


def _cache_file() -> str | bool:
    """Where lark keeps the analysed grammar between processes (its `cache` option): building
    the LALR tables and checking the terminals costs ~0.5 s, loading them ~5 ms. The file sits
    in the user's sparkc cache (`$SPARKC_CACHE_DIR`, default ~/.cache/sparkc, where compiled
    modules live too); lark stores a digest of the grammar, its options and its version in it
    and rebuilds on a mismatch or an unreadable file. Without a writable cache: no caching."""
    base = os.environ.get("SPARKC_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "sparkc"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return str(root / "grammar.lark-cache")


def lark_parser() -> Lark:
    """The shared LALR parser (built once per process)."""
    return _parser()


# --------------------------------------------------------------------------------------------
# Entry points


def parse_bytes(data: bytes, filename: str) -> ast.Module:
    """Decode a file's bytes (UTF-8, optional BOM) and parse it; binary input is a diagnostic."""
    if len(data) > MAX_BYTES:
        raise _too_large(len(data), filename)
    nul = data.find(b"\x00")
    if nul >= 0:
        line, col = _byte_position(data, nul)
        raise SparkError(
            Diagnostic(
                "E0107",
                "the file contains NUL bytes; it looks like a binary file, not .spark source",
                Span.point(filename, line, col),
                "NUL byte here",
                help="pass a .spark text file (UTF-8)",
            )
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _byte_position(data, exc.start)
        raise SparkError(
            Diagnostic(
                "E0106",
                f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                Span.point(filename, line, col),
                "invalid byte here",
                help="save the file as UTF-8 text",
            )
        ) from None
    return parse(text, filename)


def parse(text: str, filename: str) -> ast.Module:
    """Parse `.spark` source text into an `ast.Module`; raises `SparkError` on any bad input."""
    if len(text) > MAX_BYTES:
        raise _too_large(len(text.encode("utf-8", "surrogatepass")), filename)
    if "\x00" in text:
        line, col = _text_position(text, text.index("\x00"))
        raise SparkError(
            Diagnostic(
                "E0107",
                "the source contains NUL characters",
                Span.point(filename, line, col),
                "NUL here",
                help="remove the NUL characters; .spark files are plain text",
            )
        )
    try:
        tree = _parser().parse(text)
    except (UnexpectedToken, UnexpectedCharacters, UnexpectedEOF) as exc:
        raise SparkError(describe_syntax_error(exc, text, filename, _parser())) from None
    except RecursionError:
        raise SparkError(
            Diagnostic(
                "E0104",
                "the program is nested too deeply to parse",
                Span.point(filename, 1, 1),
                help="split deeply nested expressions into several bindings",
            )
        ) from None
    except LarkError as exc:  # any other lark failure is still the input's fault
        raise SparkError(
            Diagnostic(
                "E0101",
                f"syntax error: {str(exc).splitlines()[0] if str(exc) else 'unparseable'}",
                Span.point(filename, 1, 1),
                help="see docs/language.md for the syntax",
            )
        ) from None
    try:
        module = _Builder(filename, text).build(tree)
    except SparkError:
        raise
    except Exception as exc:  # a bug in the tree conversion, not in the input
        raise CompilerBug(f"{type(exc).__name__}: {exc}", "parse") from exc
    if not module.definitions:
        raise SparkError(
            Diagnostic(
                "E0108",
                "no model in file",
                Span.point(filename, 1, 1),
                "expected a model definition",
                help=f"a file needs at least one model, e.g. {MINIMAL_MODEL}",
            )
        )
    return module


def _too_large(size: int, filename: str) -> SparkError:
    return SparkError(
        Diagnostic(
            "E0102",
            f"file too large ({size / 1e6:.1f} MB; the limit is {MAX_BYTES // (1 << 20)} MB)",
            Span.point(filename, 1, 1),
            "in this file",
            help="a .spark file describes one architecture in a few hundred lines; split generated "
            "sources or check that this is the right file",
        )
    )


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", "replace")) + 1
    return line, col


def _text_position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


# --------------------------------------------------------------------------------------------
# Tree → AST


class _Builder:
    """Converts the lark tree bottom-up (no recursion) with one rule per grammar rule name."""

    def __init__(self, filename: str, text: str):
        self.filename = filename
        self.text = text
        self.rules: dict[str, Callable[[Tree, list[Any]], Any]] = {
            "start": self._start,
            "model_def": self._model,
            "block_def": self._block,
            "hyper_params": lambda t, c: tuple(c),
            "hyper_param": self._hyper_param,
            "body": lambda t, c: tuple(c),
            "input_decl": self._input,
            "type_expr": self._type,
            "dims": lambda t, c: tuple(c),
            "let_stmt": self._let,
            "single_target": self._targets,
            "tuple_target": self._targets,
            "output_stmt": self._output,
            "loss_stmt": self._loss,
            "return_stmt": self._return,
            "add": self._binop("+"),
            "sub": self._binop("-"),
            "mul": self._binop("*"),
            "div": self._binop("/"),
            "floordiv": self._binop("//"),
            "neg": lambda t, c: ast.Neg(c[0], self.span(t)),
            "pos": self._pos,
            "field": self._field,
            "loss_field": self._loss_field,
            "repeat": self._repeat,
            "call": self._call,
            "args": lambda t, c: tuple(c),
            "pos_arg": lambda t, c: ast.PosArg(c[0], self.span(t)),
            "kw_arg": lambda t, c: ast.KwArg(str(c[0]), self.tspan(c[0]), c[1], self.span(t)),
            "name": lambda t, c: ast.Name(str(c[0]), self.span(t)),
            "int_lit": self._int,
            "float_lit": self._float,
            "string_lit": lambda t, c: ast.StringLit(str(c[0])[1:-1], self.span(t)),
            "true_lit": lambda t, c: ast.BoolLit(True, self.span(t)),
            "false_lit": lambda t, c: ast.BoolLit(False, self.span(t)),
            "none_lit": lambda t, c: ast.NoneLit(self.span(t)),
        }

    # -- spans ---------------------------------------------------------------------------------

    def span(self, t: Tree) -> Span:
        m = t.meta
        if m.empty:
            return Span.point(self.filename, 1, 1)
        return Span(self.filename, m.line, m.column, m.end_line, m.end_column)

    def tspan(self, tok: Token) -> Span:
        return Span(self.filename, tok.line, tok.column, tok.end_line, tok.end_column)

    # -- driver --------------------------------------------------------------------------------

    def build(self, tree: Tree) -> ast.Module:
        done: dict[int, Any] = {}
        depth: dict[int, int] = {}
        for sub in tree.iter_subtrees():  # bottom-up: children before parents
            kids = [done[id(c)] if isinstance(c, Tree) else c for c in sub.children]
            node = self.rules[str(sub.data)](sub, kids)
            # Only expressions count: wrappers (args, statements) pass their children's depth up.
            d = max((depth[id(c)] for c in sub.children if isinstance(c, Tree)), default=0)
            d += 1 if _is_expr(node) else 0
            if d > MAX_DEPTH:
                raise SparkError(
                    Diagnostic(
                        "E0104",
                        f"expression nested too deeply (more than {MAX_DEPTH} levels)",
                        node.span,
                        "nesting exceeds the limit here",
                        help="split the expression into several bindings (h1 = ..., h2 = ...)",
                    )
                )
            done[id(sub)] = node
            depth[id(sub)] = d
        return done[id(tree)]

    # -- rules ---------------------------------------------------------------------------------

    def _start(self, t: Tree, c: list[Any]) -> ast.Module:
        span = self.span(t) if c else Span(self.filename, 1, 1, 1, 1)
        return ast.Module(self.filename, tuple(c), span)

    def _model(self, t: Tree, c: list[Any]) -> ast.ModelDef:
        return ast.ModelDef(str(c[0]), self.tspan(c[0]), c[1] or (), c[2], self.span(t))

    def _block(self, t: Tree, c: list[Any]) -> ast.BlockDef:
        return ast.BlockDef(str(c[0]), self.tspan(c[0]), c[1] or (), c[2], self.span(t))

    def _hyper_param(self, t: Tree, c: list[Any]) -> ast.HyperParam:
        return ast.HyperParam(str(c[0]), self.tspan(c[0]), c[1], self.span(t))

    def _input(self, t: Tree, c: list[Any]) -> ast.InputDecl:
        return ast.InputDecl(str(c[0]), self.tspan(c[0]), c[1], self.span(t))

    def _type(self, t: Tree, c: list[Any]) -> ast.TypeExpr:
        return ast.TypeExpr(str(c[0]), self.tspan(c[0]), c[1] or (), self.span(t))

    def _targets(self, t: Tree, c: list[Any]) -> tuple[ast.Target, ...]:
        return tuple(ast.Target(str(tok), self.tspan(tok)) for tok in c)

    def _let(self, t: Tree, c: list[Any]) -> ast.Let:
        is_tuple = str(t.children[0].data) == "tuple_target"
        return ast.Let(c[0], is_tuple, c[1], self.span(t))

    def _output(self, t: Tree, c: list[Any]) -> ast.Output:
        return ast.Output(str(c[0]), self.tspan(c[0]), c[1], self.span(t))

    def _loss(self, t: Tree, c: list[Any]) -> ast.Loss:
        return ast.Loss(str(c[0]), self.tspan(c[0]), c[1], c[2], self.span(t))

    def _return(self, t: Tree, c: list[Any]) -> ast.Return:
        return ast.Return(tuple(c), self.span(t))

    def _binop(self, op: str) -> Callable[[Tree, list[Any]], ast.BinOp]:
        return lambda t, c: ast.BinOp(op, c[0], c[1], self.span(t))

    def _pos(self, t: Tree, c: list[Any]) -> ast.Expr:
        # Unary plus is the identity; keep the operand but let its span cover the '+'.
        return replace(c[0], span=self.span(t))

    def _field(self, t: Tree, c: list[Any]) -> ast.Field:
        return ast.Field(c[0], str(c[1]), self.tspan(c[1]), self.span(t))

    def _loss_field(self, t: Tree, c: list[Any]) -> ast.Field:
        # `loss` is a reserved word, so the grammar spells this field separately; the keyword is
        # the last four characters of the expression.
        span = self.span(t)
        name_span = Span(
            self.filename, span.end_line, span.end_col - 4, span.end_line, span.end_col
        )
        return ast.Field(c[0], "loss", name_span, span)

    def _repeat(self, t: Tree, c: list[Any]) -> ast.Repeat:
        return ast.Repeat(c[0], c[1], self.span(t))

    def _call(self, t: Tree, c: list[Any]) -> ast.Call:
        return ast.Call(str(c[0]), self.tspan(c[0]), c[1] or (), self.span(t))

    def _int(self, t: Tree, c: list[Any]) -> ast.IntLit:
        text = str(c[0])
        try:
            return ast.IntLit(int(text), text, self.span(t))
        except ValueError:
            digits = sum(ch.isdigit() for ch in text)
            raise self._bad_number(
                t, text, f"{digits} digits is too many" if digits > 4000 else ""
            ) from None

    def _float(self, t: Tree, c: list[Any]) -> ast.FloatLit:
        text = str(c[0])
        try:
            value = float(text)
        except ValueError:
            raise self._bad_number(t, text, "") from None
        if value in (float("inf"), float("-inf")):
            raise self._bad_number(t, text, "it is too large for a 64-bit float")
        return ast.FloatLit(value, text, self.span(t))

    def _bad_number(self, t: Tree, text: str, why: str) -> SparkError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        return SparkError(
            Diagnostic(
                "E0109",
                f"invalid number literal '{shown}'" + (f": {why}" if why else ""),
                self.span(t),
                "not a valid number",
                help="write integers like 1024 or 1_024 and floats like 0.5 or 1e-3 "
                "(an underscore may only separate two digits)",
            )
        )


def _is_expr(node: Any) -> bool:
    return isinstance(
        node,
        (
            ast.Name,
            ast.IntLit,
            ast.FloatLit,
            ast.StringLit,
            ast.BoolLit,
            ast.NoneLit,
            ast.BinOp,
            ast.Neg,
            ast.Field,
            ast.Call,
            ast.Repeat,
        ),
    )


__all__ = ["MAX_BYTES", "MAX_DEPTH", "grammar_text", "lark_parser", "parse", "parse_bytes"]
