"""Formatting of the generated model module with ruff, one run per distinct statement shape.

Consumes the module template's name, its context (`codegen.module.module_context`) and the file's
name; produces exactly `format_python(render(template, **ctx), name)`, the text ruff would give
for the whole rendered module, at a cost that does not grow with the number of statements in
the forward bodies.

The bodies (`reference_body`, `triton_body`) are straight-line code with one statement per line,
and a program with many layers repeats a handful of statements that differ only in their digits
(`_v12`, `_p[3]`, `# blocks.7.mlp`). Ruff lays a statement out from its text and its indentation
alone, looking at widths, never at what the digits are, and never adds, drops or reorders a
digit. So:

1. the skeleton (the template rendered with one marker statement in place of each body) goes
   through ruff as before;
2. every body line with each digit written as `0` (same width, still valid Python: `_v00`,
   `0e-00`, `000`) is a statement's shape; the distinct shapes go through ruff once, together;
3. each line's text is its shape's formatted text with the line's own digits put back in order.

Anything the scheme does not cover (non-ASCII text, compound statements other than `if ...:` /
`else:`, unexpected indentation, a shape ruff rejects) falls back to formatting the whole
rendered module, so the result is always ruff's.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from ..diagnostics import CompilerBug
from .format import format_python, ruff_binary
from .render import render

BODY_KEYS = ("reference_body", "triton_body")
# Statement indentation inside a generated method (class body + def body).
_BASE = " " * 8
_SEP = "_sparkc_statement_end"
_ZERO = str.maketrans("123456789", "000000000")
_KEEP_DIGITS = {i: None for i in range(128) if not chr(i).isdigit()}
_CHUNK = 4096  # lines restored per step (bounds the memory of the split text)


class _NotCovered(Exception):
    """The bodies hold something the shape scheme does not handle: format the whole text."""


def format_module(template: str, ctx: dict[str, Any], name: str) -> str:
    """`format_python(render(template, **ctx), name)`, with ruff run on each distinct statement
    shape of the bodies once instead of on every statement (see the module docstring)."""
    if ruff_binary() is None:
        return render(template, **ctx)
    try:
        return _format_by_shapes(template, ctx, name)
    except _NotCovered:
        return format_python(render(template, **ctx), name)


def _format_by_shapes(template: str, ctx: dict[str, Any], name: str) -> str:
    bodies = [list(ctx[k]) for k in BODY_KEYS]
    marks = [f"_sparkc_{k}_marker" for k in BODY_KEYS]
    skeleton_ctx = {**ctx, **{k: [m] for k, m in zip(BODY_KEYS, marks)}}
    skeleton = format_python(render(template, **skeleton_ctx), name)
    texts = ["\n".join(body) for body in bodies]
    if not all(text.isascii() for text in texts):
        raise _NotCovered
    shapes = [text.translate(_ZERO).split("\n") if text else [] for text in texts]
    if [len(s) for s in shapes] != [len(b) for b in bodies]:
        raise _NotCovered  # a line holding a line break
    formatted = _format_shapes(list(dict.fromkeys(chain.from_iterable(shapes))), name)
    # Where each marker line is in the formatted skeleton (each exactly once, a line of its own).
    pieces, rest = [], skeleton
    for mark in marks:
        at = "\n" + _BASE + mark + "\n"
        if skeleton.count(at) != 1 or at not in rest:
            raise _NotCovered
        head, rest = rest.split(at)
        pieces.append(head + "\n")
    out = []
    for head, body, body_shapes in zip(pieces, bodies, shapes):
        out.append(head)
        out.extend(_restore(body, body_shapes, formatted))
    out.append(rest)
    return "".join(out)


def _restore(lines: list[str], shapes: list[str], formatted: dict[str, str]):
    """The formatted text of `lines`, `_CHUNK` lines at a time: their shapes' formatted text
    with each `0` replaced by the next digit of the original lines."""
    for i in range(0, len(lines), _CHUNK):
        digits = "".join(lines[i : i + _CHUNK]).translate(_KEEP_DIGITS)
        parts = "".join([formatted[s] for s in shapes[i : i + _CHUNK]]).split("0")
        if len(parts) != len(digits) + 1:
            raise _NotCovered  # ruff added or dropped a digit: not a layout-only change
        yield "".join(chain.from_iterable(zip(parts, digits))) + parts[-1]


def _format_shapes(shapes: list[str], name: str) -> dict[str, str]:
    """Each distinct shape's formatted text (absolute indentation, trailing newline), from one
    ruff run over a document that holds every shape once, at its indentation."""
    top: list[str] = []  # statements at the bodies' own indentation
    nested: list[str] = []  # statements one level in (under `if ...:` / `else:`)
    headers: list[str] = []
    for shape in shapes:
        stripped = shape.lstrip(" ")
        depth = len(shape) - len(stripped)
        if not stripped or stripped.startswith("#"):
            raise _NotCovered
        if stripped.endswith(":"):
            if depth != 0 or not (stripped.startswith("if ") or stripped == "else:"):
                raise _NotCovered
            headers.append(shape)
        elif depth == 0:
            top.append(shape)
        elif depth == 4:
            nested.append(shape)
        else:
            raise _NotCovered
    doc = ["class _C:", "    def _f(_self):"]
    for shape in top:
        doc += [_BASE + shape, _BASE + _SEP]
    for shape in headers:
        if shape != "else:":
            doc += [_BASE + shape, _BASE + "    pass", _BASE + _SEP]
    if nested:
        doc.append(_BASE + "if _c:")
    for shape in nested:
        doc += [_BASE + shape, _BASE + "    " + _SEP]
    try:
        text = format_python("\n".join(doc) + "\n", name)
    except CompilerBug:
        raise _NotCovered from None
    return _split_shapes(text, top, headers, nested)


def _split_shapes(
    text: str, top: list[str], headers: list[str], nested: list[str]
) -> dict[str, str]:
    prefix = "class _C:\n    def _f(_self):\n"
    if not text.startswith(prefix):
        raise _NotCovered
    pieces: list[str] = []
    current: list[str] = []
    opener = _BASE + "if _c:\n"  # opens the nested statements (after the other pieces)
    for line in (line + "\n" for line in text[len(prefix) : -1].split("\n")):
        if (
            line == opener
            and not current
            and len(pieces) == len(top) + len(headers) - ("else:" in headers)
        ):
            continue
        if line.strip() == _SEP:
            pieces.append("".join(current))
            current = []
        else:
            current.append(line)
    if current:
        raise _NotCovered
    if_headers = [h for h in headers if h != "else:"]
    if len(pieces) != len(top) + len(if_headers) + len(nested):
        raise _NotCovered
    out = dict(zip(top, pieces))
    for shape, piece in zip(if_headers, pieces[len(top) :]):
        body_line = _BASE + "    pass\n"
        if not piece.endswith(body_line):
            raise _NotCovered
        out[shape] = piece[: -len(body_line)]
    if "else:" in headers:
        out["else:"] = _BASE + "else:\n"
    out.update(zip(nested, pieces[len(top) + len(if_headers) :]))
    return out
