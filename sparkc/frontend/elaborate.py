"""Elaboration: one model body evaluated into program data, blocks and `repeat` inlined
(through `BlocksMixin`, sparkc/frontend/blocks.py), statements run by `StatementsMixin`
(sparkc/frontend/statements.py).

Consumes the AST of the selected model and the `Structure` of the file; fills lists of program
inputs, constants, op instances (through `CallsMixin`), outputs, losses and aux-loss refs, and
reports every independent error to the sink. Expressions and statements are dispatched through
rule tables keyed by AST node type. An expression that failed evaluates to `POISON`, which
silences the errors that would only follow from the first one.

Evaluation has two positions. In tensor position (a binding's right-hand side, a tensor
argument) an unbound name is an error. In hyperparameter position (a keyword argument of an op,
a block hyperparameter, a dimension) an unbound bare name is a `Symbol` such as `gelu` or `N`,
checked later against what the op expects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticSink, Label, Span, did_you_mean
from ..ir.ops import BINARY_OPERATORS, OPS
from ..ir.types import DType, TensorType
from . import ast
from .blocks import BlocksMixin
from .calls import MAX_OPS, CallsMixin
from .program import Const, LossTerm, OpInstance, OutputTerm, ProgramInput, Ref
from .scope import Scope, Stmt
from .statements import StatementsMixin
from .structure import Structure
from .values import (
    POISON,
    Multi,
    Problem,
    ProblemError,
    Symbol,
    Tensor,
    describe,
    fold,
    is_const,
    negate,
)

MULTI_OUTPUT_OPS = tuple(sorted(n for n, op in OPS.items() if len(op.outputs) > 1))


class TooLarge(Exception):
    """Raised (after reporting E0231) to stop elaborating a runaway program."""


class Elaborator(StatementsMixin, BlocksMixin, CallsMixin):
    def __init__(self, structure: Structure, sink: DiagnosticSink):
        self.st = structure
        self.sink = sink
        self.inputs: list[ProgramInput] = []
        self.consts: list[Const] = []
        self.ops: list[OpInstance] = []
        self.aux: list[Ref] = []
        self.outputs: list[OutputTerm] = []
        self.losses: list[LossTerm] = []
        self.calls: list[tuple[str, Span]] = []  # block instances being inlined (innermost last)
        self.kept_blocks: dict[Any, Any] = {}  # replay key → Kept (sparkc/frontend/replay.py)
        self._expr: dict[type, Callable[..., Any]] = {
            ast.Name: self._name,
            ast.IntLit: self._literal,
            ast.FloatLit: self._literal,
            ast.BoolLit: self._literal,
            ast.StringLit: self._string,
            ast.NoneLit: self._none,
            ast.BinOp: self._binop,
            ast.Neg: self._neg,
            ast.Field: self._field,
            ast.Call: self._call,
            ast.Repeat: self._repeat,
        }
        self._stmt: dict[type, Callable[[Any, Scope], None]] = {
            ast.InputDecl: self._input,
            ast.Let: self._let,
            ast.Output: self._output,
            ast.Loss: self._loss,
            ast.Return: self._return,
        }

    # -- diagnostics -----------------------------------------------------------------------------

    def error(
        self,
        code: str,
        message: str,
        span: Span | None,
        label: str = "",
        help: str = "",
        notes: tuple = (),
        in_block: bool = True,
    ) -> None:
        notes = tuple(notes)
        if in_block and self.calls:
            name, call_span = self.calls[-1]
            notes += (Label(call_span, f"in this use of block '{name}'"),)
        self.sink.add(Diagnostic(code, message, span, label, notes, help))

    def problem(self, p: Problem, span: Span, scope: Scope) -> None:
        help = p.help
        if p.code == "E0201" and not help:
            name = p.message.split("'")[1]
            if name in scope.reserved:
                help = (
                    f"'{name}' is defined later: hyperparameters and bindings can only use "
                    "names defined before them"
                )
            else:
                help = (
                    did_you_mean(name, scope.names())
                    or "define it first, or pass it as a hyperparameter"
                )
        self.error(p.code, p.message, span, "", help=help)

    def multi_error(self, v: Multi, span: Span) -> None:
        if v.names:
            # Suggest the first float tensor (token_router's `gate`, not its bool `mask`),
            # which an op's tensor input accepts; a scalar loss is never the one meant.
            floats = [
                n for n, t in zip(v.names, v.items) if t.type.dtype is DType.FLOAT and t.type.shape
            ]
            pick = (floats or list(v.names))[0]
            help = (
                f"pick one output, e.g. .{pick}, or bind them all: "
                f"{', '.join(v.names)} = {v.what}(...)"
            )
        else:
            help = (
                "bind the results to names: "
                + ", ".join(f"r{i}" for i in range(len(v.items)))
                + " = ..."
            )
        self.error(
            "E0216",
            f"{v.what} has {len(v.items)} results, but one tensor is needed here",
            span,
            "several values",
            help=help,
        )

    def limit_ops(self, span: Span) -> None:
        if len(self.ops) >= MAX_OPS:
            self.error(
                "E0231",
                f"the program expands to more than {MAX_OPS} op instances",
                span,
                "while expanding this",
                help="check repeat counts and block nesting",
            )
            raise TooLarge

    def result_tensor(self, v: Any, span: Span, what: str) -> Tensor | None:
        if isinstance(v, Tensor):
            return v
        if isinstance(v, Multi):
            self.multi_error(v, span)
        elif v is not POISON:
            self.error(
                "E0208",
                f"{what} must be a tensor, got {describe(v)}",
                span,
                "not a tensor",
                help="give the result of an op or a model input",
            )
        return None

    # -- expressions -------------------------------------------------------------------------------

    def eval(
        self, expr: ast.Expr, scope: Scope, stmt: Stmt, hyper: bool = False, whole: bool = False
    ) -> Any:
        return self._expr[type(expr)](expr, scope, stmt, hyper, whole)

    def _literal(self, e: Any, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        return e.value

    def _string(self, e: ast.StringLit, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        return Symbol(e.value, quoted=True)

    def _none(self, e: ast.NoneLit, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        return None

    def _name(self, e: ast.Name, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        if e.id == "_":
            self.error(
                "E0229",
                "'_' discards a value and cannot be read",
                e.span,
                "discarded",
                help="bind the value to a name to use it later",
            )
            return POISON
        found, v = scope.lookup(e.id)
        if found:
            return v
        if hyper:
            return Symbol(e.id)
        self.unknown_name(e.id, e.span, scope)
        return POISON

    def unknown_name(self, name: str, span: Span, scope: Scope) -> None:
        if name in scope.reserved:
            self.error(
                "E0201",
                f"'{name}' is used before it is defined",
                span,
                "not defined yet",
                help=f"statements run in order: define '{name}' above this line",
            )
            return
        if name in OPS and OPS[name].callable:
            help = f"'{name}' is an op: call it, e.g. {name}(x)"
        else:
            help = (
                did_you_mean(name, scope.names())
                or "define it first (name = ...) or declare it: input name: float[B, N, D]"
            )
        self.error("E0201", f"unknown name '{name}'", span, "not defined", help=help)

    def _binop(self, e: ast.BinOp, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        a = self.eval(e.left, scope, stmt, hyper)
        b = self.eval(e.right, scope, stmt, hyper)
        if a is POISON or b is POISON:
            return POISON
        if is_const(a) and is_const(b):
            try:
                return fold(e.op, a, b)
            except ProblemError as exc:
                self.problem(exc.problem, e.span, scope)
                return POISON
        if e.op == "//":
            self.error(
                "E0232",
                "'//' (floor division) works on hyperparameters only",
                e.span,
                "a tensor operand",
                help="divide tensors with '/'",
            )
            return POISON
        return self.arith(
            BINARY_OPERATORS[e.op], e, scope, stmt, {"a": (a, e.left.span), "b": (b, e.right.span)}
        )

    def _neg(self, e: ast.Neg, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        v = self.eval(e.operand, scope, stmt, hyper)
        if v is POISON:
            return POISON
        if is_const(v):
            try:
                return negate(v)
            except ProblemError as exc:
                self.problem(exc.problem, e.span, scope)
                return POISON
        return self.arith("neg", e, scope, stmt, {"x": (v, e.operand.span)})

    def arith(
        self, op: str, e: Any, scope: Scope, stmt: Stmt, operands: dict[str, tuple[Any, Span]]
    ) -> Any:
        """An operator with a tensor operand: constants become `const` values, then the op."""
        tensors: dict[str, Tensor] = {}
        # An int constant beside an int tensor takes its dtype, as a Python number does in
        # PyTorch (`t + 1` keeps an i32 tensor i32); see `promote` in sparkc/ir/types.py.
        int_like = [v.type.dtype for v, _ in operands.values() if isinstance(v, Tensor)]
        int_like = [d for d in int_like if d.is_int]
        for port, (v, span) in operands.items():
            if isinstance(v, Multi):
                self.multi_error(v, span)
                return POISON
            if isinstance(v, Tensor):
                tensors[port] = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                dtype = int_like[0] if int_like and isinstance(v, int) else None
                bits = 32 if dtype is DType.I32 else 64
                if isinstance(v, int) and not -(2 ** (bits - 1)) <= v < 2 ** (bits - 1):
                    self.error(
                        "E0232",
                        f"the integer {v} does not fit in {'i32' if bits == 32 else 'i64'}",
                        span,
                        "out of range",
                        help=f"integers in tensor arithmetic are {bits}-bit: use a smaller value "
                        "or a float constant",
                    )
                    return POISON
                tensors[port] = self.const(v, span, dtype)
            else:
                self.error(
                    "E0232",
                    f"cannot use {describe(v)} in tensor arithmetic",
                    span,
                    "not a number",
                    help="tensor arithmetic takes tensors and numbers",
                )
                return POISON
        spans = {p: s for p, (_, s) in operands.items()}
        inst = self.instantiate(op, tensors, {}, e.span, spans)
        if inst is None:
            return POISON
        path = scope.prefix + stmt.binding if stmt.binding else scope.path
        return self.record(scope, path, OPS[op], tensors, inst, e.span)

    def const(self, value: float, span: Span, dtype: DType | None = None) -> Tensor:
        t = TensorType(dtype or (DType.FLOAT if isinstance(value, float) else DType.I64), ())
        self.consts.append(Const(value, t, span))
        return Tensor(Ref("const", len(self.consts) - 1), t)

    def _field(self, e: ast.Field, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        base = self.eval(e.value, scope, stmt)
        if base is POISON:
            return POISON
        if isinstance(base, Multi) and base.names:
            if e.name in base.names:
                return base.items[base.names.index(e.name)]
            self.error(
                "E0214",
                f"{base.what} has no output '{e.name}'",
                e.name_span,
                "unknown field",
                help=did_you_mean(e.name, base.names)
                or f"its outputs are: {', '.join(base.names)}",
            )
        elif isinstance(base, Multi):
            self.error(
                "E0213",
                f"the results of {base.what} have no names",
                e.name_span,
                "no fields",
                help="destructure them instead: a, b = Block(...)",
            )
        else:
            what = describe(base)
            if isinstance(e.value, ast.Call) and e.value.func in OPS:
                what = f"the single output of {e.value.func}"
            self.error(
                "E0213",
                f"'.{e.name}' needs a multi-output op, but this is {what}",
                e.name_span,
                "no fields",
                help=f"only {', '.join(MULTI_OUTPUT_OPS)} have named outputs",
            )
        return POISON

    def _call(self, e: ast.Call, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        if e.func in OPS and OPS[e.func].callable:
            return self.eval_op(e, scope, stmt, whole)
        if e.func in self.st.blocks and e.func not in self.st.cyclic:
            return self.eval_block(e, scope, stmt, whole)
        return POISON  # unknown callee or cycle: reported by the structure pass
