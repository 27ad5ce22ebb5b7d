"""Source spans, user diagnostics and the caret renderer.

Every user-facing error of the compiler is a `Diagnostic`: data (code, message, primary span,
secondary labels, help) that is rendered once, at the CLI boundary, with the source line and a
caret under the offending span:

    model.spark:12:9: error[E0203]: unknown op 'atention'
       |
    12 |   h = atention(x, heads=4)
       |       ^^^^^^^^ not a built-in op or block
       |
       = help: did you mean 'attention'?

A user error is raised as `SparkError` (exit code 1); a broken compiler invariant is raised as
`CompilerBug` (exit code 3), whose message says it is a bug in sparkc.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Span:
    """A half-open character range of one source file, with 1-based line/column of both ends."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def point(file: str, line: int, col: int) -> Span:
        return Span(file, line, col, line, col + 1)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Label:
    span: Span
    message: str = ""


@dataclass(frozen=True)
class Diagnostic:
    """One user error. `code` is stable (`E0xyz`, listed in docs/language.md)."""

    code: str
    message: str
    span: Span | None
    label: str = ""
    notes: tuple[Label, ...] = ()
    help: str = ""
    severity: str = "error"

    def render(self, sources: dict[str, str] | None = None) -> str:
        return render(self, sources or {})


class SparkError(Exception):
    """A user error: one or more diagnostics about the program or the command line."""

    def __init__(self, diagnostics: Diagnostic | Sequence[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.diagnostics[0].message if self.diagnostics else "error")

    def render(self, sources: dict[str, str] | None = None) -> str:
        return "\n".join(render(d, sources or {}) for d in self.diagnostics)


class CompilerBug(Exception):
    """A broken invariant inside sparkc. Never caused by user input alone."""

    def __init__(self, message: str, stage: str = ""):
        self.stage = stage
        where = f" (in {stage})" if stage else ""
        super().__init__(
            f"internal compiler error{where}: {message}\n"
            "This is a bug in sparkc, not in your program; please report it with the input file."
        )


def error(
    code: str,
    message: str,
    span: Span | None,
    label: str = "",
    help: str = "",
    notes: Iterable[Label] = (),
) -> SparkError:
    """Shorthand used by the front end: `raise error("E0203", "...", span, help=...)`."""
    return SparkError(Diagnostic(code, message, span, label, tuple(notes), help))


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A help line suggesting the closest candidate, or '' when nothing is close."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"did you mean '{close[0]}'?" if close else ""


def _line_text(source: str, line: int) -> str | None:
    lines = source.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


_MAX_SHOWN = 200  # characters of a source line shown; longer lines are cut around the span


def _excerpt(text: str, col: int, end_col: int) -> tuple[str, int, int]:
    """Cut a very long line to a window around the span; printable characters only."""
    text = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in text)
    text = text.replace("\t", " ")
    if len(text) <= _MAX_SHOWN:
        return text, col, end_col
    start = max(0, col - 1 - _MAX_SHOWN // 2)
    cut = text[start : start + _MAX_SHOWN]
    prefix = "..." if start > 0 else ""
    return prefix + cut + "...", col - start + len(prefix), end_col - start + len(prefix)


def _snippet(span: Span, message: str, source: str | None, gutter: int) -> list[str]:
    pad = " " * gutter
    text = _line_text(source, span.line) if source is not None else None
    if text is None:
        return []
    shown, col, end_col = _excerpt(text, span.col, span.end_col)
    if span.end_line != span.line:
        end_col = len(shown) + 1
    width = max(1, min(end_col, len(shown) + 1) - col)
    caret = " " * (col - 1) + "^" * width
    out = [f"{span.line:>{gutter}} | {shown}".rstrip(), f"{pad} | {caret}"]
    if message:
        out[-1] += f" {message}"
    return out


def render(diag: Diagnostic, sources: dict[str, str]) -> str:
    """Render one diagnostic in the rustc-like text form used everywhere (CLI, goldens)."""
    where = f"{diag.span}: " if diag.span else ""
    head = f"{where}{diag.severity}[{diag.code}]: {diag.message}"
    spans = [s for s in [diag.span, *(n.span for n in diag.notes)] if s is not None]
    gutter = max((len(str(s.line)) for s in spans), default=1)
    pad = " " * gutter
    lines = [head]
    if diag.span is not None:
        body = _snippet(diag.span, diag.label, sources.get(diag.span.file), gutter)
        if body:
            lines += [f"{pad} |", *body]
    for note in diag.notes:
        src = sources.get(note.span.file)
        body = _snippet(note.span, note.message, src, gutter)
        if body:
            lines += [f"{pad} |" if len(lines) == 1 else f"{pad} :", *body]
        else:
            lines.append(f"{pad} = note: {note.message} ({note.span})")
    if diag.help:
        lines += [f"{pad} |", f"{pad} = help: {diag.help}"]
    return "\n".join(lines)


@dataclass
class DiagnosticSink:
    """Collects several diagnostics (the checker reports all independent errors at once)."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, err: SparkError | Diagnostic) -> None:
        if isinstance(err, SparkError):
            self.items.extend(err.diagnostics)
        else:
            self.items.append(err)

    def raise_if_any(self) -> None:
        if self.items:
            raise SparkError(self.items)
