"""Calls of built-in ops: argument binding, validation against the op table, instantiation.

A mixin of the `Elaborator` (sparkc/frontend/elaborate.py). Consumes an `ast.Call` whose callee is
in `sparkc.ir.ops.OPS` and produces a checker value (a `Tensor`, a `Multi` for multi-output ops,
a `BasisSpec` for `basis(...)`) after recording an `OpInstance`. Every check reads the op table:
ports (positional or by keyword), hyperparameters (keyword only, type, range), `tie=`, `basis=`,
then the op's own shape rule through `instantiate`, whose `ShapeFailure(arg)` is reported at
that argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Span, did_you_mean
from ..ir.ops import OPS, REQUIRED, InstanceSpec, OpSpec, ShapeFailure, instantiate
from ..ir.types import DType
from . import ast
from .program import OpInstance, Ref
from .scope import Scope, Stmt
from .values import POISON, BasisSpec, Multi, ProblemError, Tensor, coerce_hyper, describe

MAX_OPS = 100_000  # op instances per program; beyond this a repeat count is surely a typo

_PORT_DTYPES = {
    "float": (lambda d: d is DType.FLOAT, "a float"),
    "int": (lambda d: d.is_int, "an integer"),
    "bool": (lambda d: d is DType.BOOL, "a bool"),
    "any": (lambda d: True, "a"),
}
_RANK_WORDS = {2: "[B, N]", 3: "[B, N, D]", 4: "[B, N, H, d]"}


@dataclass
class BoundArgs:
    """A call's arguments sorted into tensors and hyperparameters (expression, span)."""

    tensors: dict[str, tuple[ast.Expr, Span]] = field(default_factory=dict)
    hypers: dict[str, ast.KwArg] = field(default_factory=dict)
    ok: bool = True


class CallsMixin:
    """Op calls. Relies on the Elaborator's `error`, `eval`, `ops`, `aux` and `limit_ops`."""

    ops: list[OpInstance]
    aux: list[Ref]

    # -- arguments -----------------------------------------------------------------------------

    def bind_args(
        self, call: ast.Call, what: str, tensors: list[str], hypers: list[str], usage: str
    ) -> BoundArgs:
        out = BoundArgs()
        seen_kw: ast.KwArg | None = None
        npos = 0
        for arg in call.args:
            if isinstance(arg, ast.PosArg):
                if seen_kw is not None:
                    self.error(
                        "E0209",
                        "positional argument after keyword arguments",
                        arg.span,
                        "positional",
                        help=f"put tensor inputs first: {usage}",
                    )
                    out.ok = False
                elif npos < len(tensors):
                    out.tensors[tensors[npos]] = (arg.value, arg.value.span)
                elif npos == len(tensors):  # report the first extra argument only
                    given = sum(isinstance(a, ast.PosArg) for a in call.args)
                    noun = "input" if len(tensors) == 1 else "inputs"
                    listed = f" ({', '.join(tensors)})" if tensors else ""
                    self.error(
                        "E0206",
                        f"{what} takes {len(tensors)} tensor {noun}{listed}, but "
                        f"{given} positional arguments were given",
                        arg.span,
                        "extra argument",
                        help=f"hyperparameters are passed by name: {usage}",
                    )
                    out.ok = False
                npos += 1
                continue
            seen_kw = arg
            if arg.name in out.tensors or arg.name in out.hypers:
                self.error(
                    "E0209",
                    f"argument '{arg.name}' is given twice",
                    arg.span,
                    "given again here",
                    help="remove one of them",
                )
                out.ok = False
            elif arg.name in tensors:
                out.tensors[arg.name] = (arg.value, arg.span)
            elif arg.name in hypers:
                out.hypers[arg.name] = arg
            else:
                self.error(
                    "E0204",
                    f"{what} has no argument '{arg.name}'",
                    arg.name_span,
                    "unknown keyword",
                    help=did_you_mean(arg.name, [*tensors, *hypers]) or f"usage: {usage}",
                )
                out.ok = False
        return out

    def check_missing(
        self,
        call: ast.Call,
        args: BoundArgs,
        callee: str,
        tensors: list[str],
        hypers: list[str],
        usage: str,
        hyper_help: Callable[[str], str],
    ) -> bool:
        """E0206 for the first missing tensor input, E0205 for each missing hyperparameter
        (of an op or a block); returns whether the call can go on."""
        ok = args.ok
        missing = [n for n in tensors if n not in args.tensors]
        if missing and args.ok:
            self.error(
                "E0206",
                f"{callee} needs the tensor input '{missing[0]}'",
                call.func_span,
                f"'{missing[0]}' is missing",
                help=f"usage: {usage}",
            )
            ok = False
        for name in hypers:
            if name not in args.hypers:
                self.error(
                    "E0205",
                    f"{callee} needs the hyperparameter '{name}'",
                    call.func_span,
                    f"'{name}' is missing",
                    help=hyper_help(name),
                )
                ok = False
        return ok

    def tensor_arg(self, scope: Scope, stmt: Stmt, expr: ast.Expr, span: Span, role: str) -> Any:
        """Evaluate an argument that must be a single tensor; POISON after reporting."""
        v = self.eval(expr, scope, stmt)
        if v is POISON or isinstance(v, Tensor):
            return v
        if isinstance(v, Multi):
            self.multi_error(v, span)
        else:
            self.error(
                "E0208",
                f"{role} must be a tensor, got {describe(v)}",
                span,
                "not a tensor",
                help="pass a model input or the result of an op",
            )
        return POISON

    # -- ops -----------------------------------------------------------------------------------

    def eval_op(self, call: ast.Call, scope: Scope, stmt: Stmt, whole: bool) -> Any:
        spec = OPS[call.func]
        if spec.name == "basis":
            return self.eval_basis(call, scope, stmt)
        ports = [p.name for p in spec.inputs]
        args = self.bind_args(
            call, spec.name, ports, [h.name for h in spec.hypers], spec.signature()
        )
        required = [p.name for p in spec.inputs if not p.optional]
        needed = [h.name for h in spec.hypers if h.default is REQUIRED]
        usage = spec.signature()
        ok = self.check_missing(
            call,
            args,
            spec.name,
            required,
            needed,
            usage,
            lambda h: f"pass it by name, e.g. {spec.name}(..., {h}=...); usage: {usage}",
        )
        inputs: dict[str, Tensor] = {}
        for port in spec.inputs:
            if port.name not in args.tensors:
                continue
            expr, span = args.tensors[port.name]
            v = self.tensor_arg(scope, stmt, expr, span, f"'{port.name}' of {spec.name}")
            if v is POISON or not self.check_port(spec, port.name, v, span):
                ok = False
            else:
                inputs[port.name] = v
        hp: dict[str, Any] = {}
        for name, kw in args.hypers.items():
            v = self.hyper_arg(spec, name, kw, scope, stmt)
            if v is POISON:
                ok = False
            else:
                hp[name] = v
        if not ok:
            return POISON
        spans = {p: s for p, (_, s) in args.tensors.items()}
        spans.update({n: kw.span for n, kw in args.hypers.items()})
        inst = self.instantiate(spec.name, inputs, hp, call.span, spans)
        if inst is None:
            return POISON
        if inst.hp and dict(inst.hp).get("tie") and not self.check_tie(inst, args, inputs):
            return POISON
        name = scope.instance_name(stmt, spec.name, whole)
        return self.record(scope, scope.prefix + name, spec, inputs, inst, call.span, local=name)

    def check_port(self, spec: OpSpec, port: str, v: Tensor, span: Span) -> bool:
        p = spec.port(port)
        assert p is not None
        accepts, word = _PORT_DTYPES[p.dtype]
        t = v.type
        if not accepts(t.dtype):
            help = f"usage: {spec.signature()}"
            if p.dtype == "float" and t.dtype.is_int:
                help = "integer ids must be embedded first: embed(tokens, vocab=..., dim=...)"
            elif p.dtype == "int":
                help = (
                    "token ids and targets are integer tensors: declare them as i64, e.g. "
                    f"input {port}: i64[B, N]"
                )
            self.error(
                "E0303",
                f"'{port}' of {spec.name} must be {word} tensor, got {t}",
                span,
                f"{t.dtype} tensor",
                help=help,
            )
            return False
        if (p.rank is not None and t.rank != p.rank) or t.rank < p.min_rank:
            want = (
                f"rank {p.rank} {_RANK_WORDS.get(p.rank, '')}".rstrip()
                if p.rank is not None
                else f"rank {p.min_rank} or more"
            )
            self.error(
                "E0303",
                f"'{port}' of {spec.name} must have {want}, got {t}",
                span,
                f"rank {t.rank}",
                help=f"usage: {spec.signature()}",
            )
            return False
        return True

    def hyper_arg(self, spec: OpSpec, name: str, kw: ast.KwArg, scope: Scope, stmt: Stmt) -> Any:
        h = spec.hyper(name)
        assert h is not None
        if h.type == "ref":
            return self.resolve_tie(kw, scope)
        v = self.eval(kw.value, scope, stmt, hyper=True)
        if v is POISON:
            return POISON
        if h.type == "basis":
            if v is None or isinstance(v, BasisSpec):
                return None if v is None else v.pairs
            self.error(
                "E0218",
                f"basis= takes a basis(...) spec or none, got {describe(v)}",
                kw.value.span,
                "not a basis",
                help="write basis=basis(freqs=4, legendre=4, over=distance, max_len=1024)",
            )
            return POISON
        try:
            return coerce_hyper(spec.name, h, v)
        except ProblemError as exc:
            self.problem(exc.problem, kw.value.span, scope)
            return POISON

    def instantiate(
        self,
        op: str,
        inputs: dict[str, Tensor],
        hp: dict[str, Any],
        span: Span,
        spans: dict[str, Span],
    ) -> InstanceSpec | None:
        try:
            return instantiate(op, {p: t.type for p, t in inputs.items()}, hp)
        except ShapeFailure as f:
            where = spans.get(f.arg, span) if f.arg else span
            self.error(f.code, f.message, where, "", help=f.help or f"usage: {OPS[op].signature()}")
            return None

    def record(
        self,
        scope: Scope,
        path: str,
        spec: OpSpec,
        inputs: dict[str, Tensor],
        inst: InstanceSpec,
        span: Span,
        local: str | None = None,
    ) -> Any:
        """Append the instance; `local` is its name in the scope (None for operators)."""
        self.limit_ops(span)
        refs = tuple((p.name, inputs[p.name].ref) for p in spec.inputs if p.name in inputs)
        idx = len(self.ops)
        self.ops.append(OpInstance(path, spec.name, refs, inst, span))
        if local is not None:
            scope.instances[local] = idx
        self.aux.extend(Ref("op", idx, k) for k in spec.loss_outputs)
        outs = tuple(Tensor(Ref("op", idx, k), t) for k, t in enumerate(inst.outputs))
        return outs[0] if len(outs) == 1 else Multi(spec.name, outs, spec.output_names)

    # -- basis and tie -------------------------------------------------------------------------

    def eval_basis(self, call: ast.Call, scope: Scope, stmt: Stmt) -> Any:
        spec = OPS["basis"]
        args = self.bind_args(call, "basis", [], [h.name for h in spec.hypers], spec.signature())
        ok = args.ok
        for h in spec.hypers:
            if h.default is REQUIRED and h.name not in args.hypers:
                self.error(
                    "E0205",
                    f"basis needs the hyperparameter '{h.name}'",
                    call.func_span,
                    f"'{h.name}' is missing",
                    help="basis(...) needs max_len, the longest sequence it covers, "
                    "e.g. basis(max_len=1024)",
                )
                ok = False
        hp: dict[str, Any] = {}
        for name, kw in args.hypers.items():
            v = self.hyper_arg(spec, name, kw, scope, stmt)
            if v is POISON:
                ok = False
            hp[name] = v
        if not ok:
            return POISON
        spans = {n: kw.span for n, kw in args.hypers.items()}
        inst = self.instantiate("basis", {}, hp, call.span, spans)
        return POISON if inst is None else BasisSpec(inst.hp)

    def resolve_tie(self, kw: ast.KwArg, scope: Scope) -> Any:
        expr = kw.value
        if isinstance(expr, ast.NoneLit):
            return None
        embeds = sorted(n for n, i in scope.instances.items() if self.ops[i].op == "embed")
        if not isinstance(expr, ast.Name):
            self.error(
                "E0217",
                "tie= takes the name of an embed instance",
                expr.span,
                "not a name",
                help="e.g. tok = embed(tokens, vocab=V, dim=D) ... linear(h, out=V, tie=tok)",
            )
            return POISON
        idx = scope.instances.get(expr.id)
        if idx is None:
            help = did_you_mean(expr.id, embeds) or (
                f"embed instances defined so far: {', '.join(embeds)}"
                if embeds
                else "define the embedding first: tok = embed(tokens, vocab=..., dim=...)"
            )
            self.error(
                "E0217",
                f"no embed instance named '{expr.id}' before this point",
                expr.span,
                "not an earlier embed instance of this scope",
                help=help,
            )
            return POISON
        if self.ops[idx].op != "embed":
            self.error(
                "E0217",
                f"tie={expr.id} names a {self.ops[idx].op} instance; tie needs an embed instance",
                expr.span,
                f"a {self.ops[idx].op}",
                help=(
                    f"embed instances here: {', '.join(embeds)}"
                    if embeds
                    else "tie= reuses the [vocab, dim] table of an embed(...) call"
                ),
            )
            return POISON
        return self.ops[idx].path

    def check_tie(self, inst: InstanceSpec, args: BoundArgs, inputs: dict[str, Tensor]) -> bool:
        path = dict(inst.hp)["tie"]
        embed = next(op for op in self.ops if op.path == path and op.op == "embed")
        vocab, dim = embed.spec.params[0].shape
        out, width = dict(inst.hp)["out"], inputs["x"].type.shape[-1]
        if (vocab, dim) == (out, width):
            return True
        self.error(
            "E0217",
            f"tie={path.rsplit('.', 1)[-1]}: the embedding table is "
            f"[{vocab}, {dim}] but this linear maps {width} → {out} features",
            args.hypers["tie"].span,
            "shapes differ",
            help=f"a tied head needs out = vocab = {vocab} and an input width of dim = {dim}",
        )
        return False

    # Provided by the Elaborator.
    def error(
        self,
        code: str,
        message: str,
        span: Span | None,
        label: str = "",
        help: str = "",
        notes: tuple = (),
        in_block: bool = True,
    ) -> None: ...

    def eval(
        self, expr: ast.Expr, scope: Scope, stmt: Stmt, hyper: bool = False, whole: bool = False
    ) -> Any: ...

    def multi_error(self, v: Multi, span: Span) -> None: ...

    def problem(self, problem: Any, span: Span, scope: Scope) -> None: ...

    def limit_ops(self, span: Span) -> None: ...
