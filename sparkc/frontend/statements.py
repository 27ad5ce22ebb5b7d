"""Statements of a model or block body: a mixin of the `Elaborator` (sparkc/frontend/elaborate.py).

`input` declarations (bound to program inputs in a model, to the call's arguments in a block),
`let` bindings (names and destructuring), `output`, `loss` and `return`; and tensor type
expressions (`float[B, N, d]`), whose dimensions are checked against the hyperparameters and the
symbolic sizes seen so far.
"""

from __future__ import annotations

from typing import Any

from ..diagnostics import Label, Span, did_you_mean
from ..ir.ops import OPS
from ..ir.types import SOURCE_DTYPES, DType, TensorType
from . import ast
from .program import LossTerm, OutputTerm, ProgramInput, Ref
from .scope import Scope, Stmt
from .values import INT_LIMIT, POISON, Multi, Symbol, Tensor, describe


class StatementsMixin:
    """Needs from the host class: `st`, `sink`, `inputs`, `outputs`, `losses`, `aux`, `_stmt`
    (the statement dispatch table), `eval`, `error`, `result_tensor`, `unknown_name`."""

    def run_body(self, scope: Scope) -> None:
        for s in scope.defn.body:
            self._stmt[type(s)](s, scope)

    def eval_type(self, texpr: ast.TypeExpr, scope: Scope) -> TensorType | None:
        dtype = SOURCE_DTYPES.get(texpr.dtype)
        ok = dtype is not None
        if dtype is None:
            self.error(
                "E0202",
                f"unknown dtype '{texpr.dtype}'",
                texpr.dtype_span,
                "not a dtype",
                help=did_you_mean(texpr.dtype, SOURCE_DTYPES)
                or f"the dtypes are: {', '.join(SOURCE_DTYPES)}",
            )
        dims: list[Any] = []
        for e in texpr.dims:
            if not isinstance(e, ast.Name):
                free = [
                    n
                    for n in ast.walk_expr(e)
                    if isinstance(n, ast.Name) and not scope.lookup(n.id)[0]
                ]
                if free:
                    self.error(
                        "E0227",
                        f"the symbolic dimension '{free[0].id}' cannot be used in arithmetic",
                        free[0].span,
                        "symbolic",
                        help="a dimension is a plain symbol (B, N) or a hyperparameter "
                        "expression (4 * d)",
                    )
                    ok = False
                    continue
            v = self.eval(e, scope, Stmt(""), hyper=True)
            if isinstance(v, float) and v.is_integer():
                v = int(v)  # like int hyperparameters: 64.0 is a size, 64.5 is not
            if isinstance(v, Symbol):
                dims.append(v.name)
            elif isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= INT_LIMIT:
                dims.append(v)
            else:
                if v is not POISON:
                    self.error(
                        "E0227",
                        f"a dimension must be a positive integer or a symbol such "
                        f"as N, got {describe(v)}",
                        e.span,
                        "invalid dimension",
                        help="sizes are positive integers below 2^31",
                    )
                ok = False
        return TensorType(dtype, tuple(dims)) if ok and dtype is not None else None

    def _input(self, s: ast.InputDecl, scope: Scope) -> None:
        t = self.eval_type(s.type, scope)
        if not scope.is_block:
            if t is None:
                scope.bind(s.name, POISON)
                return
            self.inputs.append(ProgramInput(s.name, t, s.type.dtype, s.span))
            scope.bind(s.name, Tensor(Ref("input", len(self.inputs) - 1), t))
            return
        actual = scope.block_args.get(s.name, POISON)
        if (
            actual is not POISON
            and t is not None
            and not _matches(t, s.type.dtype, actual.type, scope.dim_bindings)
        ):
            self.error(
                "E0222",
                f"input '{s.name}' of block {scope.defn.name} is declared {t}, "
                f"but the argument is {actual.type}",
                scope.block_arg_spans[s.name],
                f"{actual.type}",
                notes=(Label(s.type.span, "declared here"),),
                help="named dims (B, N) match any size, consistently across the inputs; "
                "numbers and hyperparameters must match exactly",
                in_block=False,
            )
            actual = POISON
        scope.bind(s.name, actual)

    def _let(self, s: ast.Let, scope: Scope) -> None:
        named = [t.name for t in s.targets if not t.is_discard]
        stmt = Stmt(named[0] if named else "")
        v = self.eval(s.value, scope, stmt, whole=isinstance(s.value, (ast.Call, ast.Repeat)))
        if not s.is_tuple:
            scope.bind(s.targets[0].name, v)
            return
        n = len(s.targets)
        items: list[Any] = [POISON] * n
        if isinstance(v, Multi) and len(v.items) == n:
            items = list(v.items)
        elif v is not POISON:
            if isinstance(v, Multi):
                listed = f" ({', '.join(v.names)})" if v.names else ""
                msg = f"{v.what} returns {len(v.items)} values{listed}, but {n} names are bound"
                help = f"bind {len(v.items)} names; use _ for the values you don't need"
            elif isinstance(s.value, ast.Call) and s.value.func in OPS:
                msg = f"{s.value.func} has a single output, but {n} names are bound"
                help = f"bind it to one name: {named[0] if named else 'y'} = {s.value.func}(...)"
            else:
                msg = f"cannot destructure {describe(v)} into {n} names"
                help = "only multi-output ops and blocks returning several values destructure"
            first, last = s.targets[0].span, s.targets[-1].span
            span = Span(first.file, first.line, first.col, last.end_line, last.end_col)
            self.error("E0215", msg, span, f"{n} names", help=help)
        for t, item in zip(s.targets, items):
            scope.bind(t.name, item)

    def _output(self, s: ast.Output, scope: Scope) -> None:
        if scope.is_block:
            return  # reported by the structure pass
        if s.value is None:
            found, v = scope.lookup(s.name)
            if not found:
                self.unknown_name(s.name, s.name_span, scope)
                return
            span = s.name_span
        else:
            v = self.eval(
                s.value, scope, Stmt(s.name), whole=isinstance(s.value, (ast.Call, ast.Repeat))
            )
            scope.bind(s.name, v)
            span = s.value.span
        t = self.result_tensor(v, span, f"output '{s.name}'")
        if t is not None:
            self.outputs.append(OutputTerm(s.name, t.ref, s.span))

    def _loss(self, s: ast.Loss, scope: Scope) -> None:
        if scope.is_block:
            return
        v = self.eval(
            s.value, scope, Stmt(s.name), whole=isinstance(s.value, (ast.Call, ast.Repeat))
        )
        scope.bind(s.name, v)
        weight: float | None = 1.0
        if s.weight is not None:
            w = self.eval(s.weight, scope, Stmt(""), hyper=True)
            weight = None
            if isinstance(w, (int, float)) and not isinstance(w, bool):
                weight = float(w)
            elif w is not POISON:
                self.error(
                    "E0207",
                    f"a loss weight must be a number, got {describe(w)}",
                    s.weight.span,
                    "not a number",
                    help="e.g. loss aux = ... weight 0.1",
                )
        t = self.result_tensor(v, s.value.span, f"loss '{s.name}'")
        if t is None:
            return
        if t.type.shape != () or t.type.dtype is not DType.FLOAT:
            self.error(
                "E0220",
                f"loss '{s.name}' must be a 0-d float tensor, got {t.type}",
                s.value.span,
                "not a scalar",
                help="reduce it first, e.g. mean(...), or use cross_entropy(logits, targets)",
            )
            return
        if weight is not None:
            self.losses.append(LossTerm(s.name, t.ref, weight, s.span))

    def _return(self, s: ast.Return, scope: Scope) -> None:
        if not scope.is_block or scope.returned is not None:
            return  # misplaced or second return: reported by the structure pass
        single = len(s.values) == 1
        vals: list[Any] = []
        for e in s.values:
            v = self.eval(
                e, scope, Stmt(""), whole=single and isinstance(e, (ast.Call, ast.Repeat))
            )
            t = self.result_tensor(v, e.span, f"a result of block {scope.defn.name}")
            vals.append(POISON if t is None else t)
        scope.returned = vals


def _matches(declared: TensorType, spelling: str, actual: TensorType, dims: dict[str, Any]) -> bool:
    """Does an argument fit a block's declared input type? Binds the declared symbols."""
    same_dtype = declared.dtype is actual.dtype or (spelling == "int" and actual.dtype.is_int)
    if not same_dtype or declared.rank != actual.rank:
        return False
    for d, a in zip(declared.shape, actual.shape):
        if isinstance(d, int):
            if d != a:
                return False
        elif dims.setdefault(d, a) != a:
            return False
    return True
