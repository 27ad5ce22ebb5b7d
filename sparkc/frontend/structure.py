"""Checks that need no types: definitions, scopes, statement placement, callees and cycles.

Consumes an `ast.Module`; adds diagnostics to a `DiagnosticSink` and returns a `Structure` (the
definitions by name, each block's declared inputs, and the blocks that sit on a call cycle).
It runs over every definition, used or not, so a typo in a block nobody calls is still reported.
Elaboration (`sparkc.frontend.elaborate`) relies on it: it never re-reports duplicate names,
misplaced statements or unknown callees, it just skips them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Diagnostic, DiagnosticSink, Label, Span, did_you_mean
from ..ir.ops import BINARY_OPERATORS, CALLABLE, OPS, UNARY_OPERATORS
from . import ast


@dataclass
class Structure:
    models: list[ast.ModelDef] = field(default_factory=list)
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    block_inputs: dict[str, tuple[ast.InputDecl, ...]] = field(default_factory=dict)
    cyclic: set[str] = field(default_factory=set)


def analyse(module: ast.Module, sink: DiagnosticSink) -> Structure:
    st = Structure()
    first: dict[str, ast.Definition] = {}
    for d in module.definitions:
        if d.name in first:
            prev = first[d.name]
            sink.add(
                Diagnostic(
                    "E0211",
                    f"{d.kind} '{d.name}' is defined twice",
                    d.name_span,
                    "second definition",
                    (Label(prev.name_span, f"first defined here (as a {prev.kind})"),),
                    help="rename one of them",
                )
            )
            continue
        first[d.name] = d
        if isinstance(d, ast.BlockDef) and d.name in OPS:
            sink.add(
                Diagnostic(
                    "E0211",
                    f"block '{d.name}' has the name of a built-in op",
                    d.name_span,
                    "clashes with the op",
                    help=f"rename the block, e.g. '{d.name.capitalize()}Block'",
                )
            )
            continue
        if isinstance(d, ast.ModelDef):
            st.models.append(d)
        else:
            st.blocks[d.name] = d
            st.block_inputs[d.name] = tuple(s for s in d.body if isinstance(s, ast.InputDecl))
    for d in module.definitions:
        _scope_names(d, sink)
        _placement(d, sink)
        _callees(d, st, sink)
    _cycles(st, sink)
    return st


def _dup(
    sink: DiagnosticSink,
    what: str,
    name: str,
    span: Span,
    first: Span,
    d: ast.Definition,
    help: str,
) -> None:
    sink.add(
        Diagnostic(
            "E0210",
            f"{what} '{name}' is already defined in {d.kind} '{d.name}'",
            span,
            "defined again here",
            (Label(first, "first defined here"),),
            help,
        )
    )


def _scope_names(d: ast.Definition, sink: DiagnosticSink) -> None:
    """One namespace per body: hyperparameters, inputs, bindings, outputs with '=', losses."""
    seen: dict[str, Span] = {}
    for p in d.params:
        if p.name in seen:
            _dup(
                sink,
                "hyperparameter",
                p.name,
                p.name_span,
                seen[p.name],
                d,
                "each hyperparameter is listed once",
            )
        else:
            seen[p.name] = p.name_span
    outputs: dict[str, Span] = {}
    for s in d.body:
        bound: list[tuple[str, Span]] = []
        if isinstance(s, ast.InputDecl):
            bound = [(s.name, s.name_span)]
        elif isinstance(s, ast.Let):
            bound = [(t.name, t.span) for t in s.targets if not t.is_discard]
        elif isinstance(s, ast.Output | ast.Loss):
            if s.name in outputs:
                kind = "output" if isinstance(s, ast.Output) else "loss"
                sink.add(
                    Diagnostic(
                        "E0210",
                        f"{kind} '{s.name}' is declared twice",
                        s.name_span,
                        "declared again here",
                        (Label(outputs[s.name], "first declared here"),),
                        "every output and loss of a model needs its own name",
                    )
                )
                continue
            outputs[s.name] = s.name_span
            if isinstance(s, ast.Loss) or s.value is not None:
                bound = [(s.name, s.name_span)]
        for name, span in bound:
            if name in seen:
                _dup(
                    sink,
                    "name",
                    name,
                    span,
                    seen[name],
                    d,
                    f"bindings are single-assignment: choose a new name, e.g. '{name}2'",
                )
            else:
                seen[name] = span


def _placement(d: ast.Definition, sink: DiagnosticSink) -> None:
    returns = [s for s in d.body if isinstance(s, ast.Return)]
    if isinstance(d, ast.ModelDef):
        for r in returns:
            sink.add(
                Diagnostic(
                    "E0228",
                    "a model has no return statement",
                    r.span,
                    "not allowed in a model",
                    help="declare the model's results with output (output y = ...) or loss",
                )
            )
        return
    for s in d.body:
        if isinstance(s, ast.Output):
            sink.add(
                Diagnostic(
                    "E0228",
                    "output declares a model result; a block gives its results with return",
                    s.span,
                    "not allowed in a block",
                    help=f"write: return {s.name}",
                )
            )
        elif isinstance(s, ast.Loss):
            sink.add(
                Diagnostic(
                    "E0228",
                    "loss terms belong to the model, not to a block",
                    s.span,
                    "not allowed in a block",
                    help="return the value from the block and declare the loss in the model",
                )
            )
    if not returns:
        sink.add(
            Diagnostic(
                "E0228",
                f"block '{d.name}' has no return statement",
                d.name_span,
                "this block returns nothing",
                help="end the block with: return <value>",
            )
        )
        return
    ret = returns[0]
    after = d.body[d.body.index(ret) + 1 :]
    if after:
        extra = after[0]
        what = "a second return" if isinstance(extra, ast.Return) else "a statement after return"
        sink.add(
            Diagnostic(
                "E0228",
                f"{what} in block '{d.name}'",
                extra.span,
                "unreachable",
                (Label(ret.span, "the block returns here"),),
                help="return comes last and only once; return several values as: return a, b",
            )
        )


def _calls(d: ast.Definition) -> list[ast.Call]:
    out: list[ast.Call] = []
    for p in d.params:
        if p.default is not None:
            out += [e for e in ast.walk_expr(p.default) if isinstance(e, ast.Call)]
    for s in d.body:
        for expr in ast.stmt_exprs(s):
            out += [e for e in ast.walk_expr(expr) if isinstance(e, ast.Call)]
    return out


def _callees(d: ast.Definition, st: Structure, sink: DiagnosticSink) -> None:
    models = {m.name for m in st.models}
    for call in _calls(d):
        name = call.func
        if (name in OPS and OPS[name].callable) or name in st.blocks:
            continue
        if name in OPS:
            spelled = {
                op: sym
                for table in (BINARY_OPERATORS, UNARY_OPERATORS)
                for sym, op in table.items()
            }
            symbol = spelled.get(name, "")
            sink.add(
                Diagnostic(
                    "E0203",
                    f"'{name}' is written with an operator, not called",
                    call.func_span,
                    "not callable",
                    help=f"write it with '{symbol}'" if symbol else "",
                )
            )
        elif name in models:
            sink.add(
                Diagnostic(
                    "E0203",
                    f"'{name}' is a model; only blocks can be called",
                    call.func_span,
                    "a model",
                    help=f"turn it into a block: block {name}(...) {{ ... return ... }}",
                )
            )
        else:
            hint = did_you_mean(name, [*CALLABLE, *st.blocks])
            sink.add(
                Diagnostic(
                    "E0203",
                    f"unknown op or block '{name}'",
                    call.func_span,
                    "not a built-in op or block",
                    help=hint
                    or "`sparkc ops` lists the built-in ops; blocks are defined with "
                    "block Name(...) { ... }",
                )
            )


def _cycles(st: Structure, sink: DiagnosticSink) -> None:
    """Report every block that reaches itself (iterative DFS, definition order)."""
    edges = {
        name: [c for c in _calls(b) if c.func in st.blocks and c.func not in OPS]
        for name, b in st.blocks.items()
    }
    color: dict[str, int] = {}  # 1 on the DFS path, 2 finished
    for root in st.blocks:
        if color.get(root):
            continue
        path: list[str] = [root]
        color[root] = 1
        stack = [iter(edges[root])]
        while stack:
            call = next(stack[-1], None)
            if call is None:
                color[path.pop()] = 2
                stack.pop()
                continue
            callee = call.func
            if color.get(callee) == 1:
                cycle = path[path.index(callee) :] + [callee]
                st.cyclic.update(cycle)
                if len(cycle) == 2:
                    msg = f"block '{callee}' calls itself"
                else:
                    msg = "blocks call each other in a cycle: " + " → ".join(cycle)
                sink.add(
                    Diagnostic(
                        "E0212",
                        msg,
                        call.func_span,
                        "recursive call",
                        help="blocks are inlined, so they cannot recurse; to stack layers use "
                        "repeat(n) Block(x)",
                    )
                )
            elif not color.get(callee):
                color[callee] = 1
                path.append(callee)
                stack.append(iter(edges[callee]))
