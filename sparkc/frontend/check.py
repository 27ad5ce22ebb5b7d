"""The checker's entry point: `check(module, overrides, model) -> Program`.

Consumes a parsed `ast.Module`, the `-D name=value` overrides (strings such as "256", "0.5",
"true", "gelu", or Python values) and an optional model name; produces the elaborated `Program`
of that model (sparkc/frontend/program.py) or raises one `SparkError` carrying every
independent diagnostic found: the structure pass runs over the whole file
(sparkc/frontend/structure.py), then the chosen model is elaborated with its blocks inlined
(sparkc/frontend/elaborate.py). No other exception escapes for bad input.
"""

from __future__ import annotations

from typing import Any

from ..diagnostics import CompilerBug, Diagnostic, DiagnosticSink, SparkError, did_you_mean
from . import ast
from .elaborate import Elaborator, TooLarge
from .program import Program
from .reserved import check_model_names
from .scope import Scope, reserved_names
from .structure import analyse
from .values import POISON, Problem, ProblemError, parse_override, plain


def check(
    module: ast.Module, overrides: dict[str, object] | None = None, model: str | None = None
) -> Program:
    try:
        return _check(module, dict(overrides or {}), model)
    except RecursionError:
        raise SparkError(
            Diagnostic(
                "E0231",
                "the program is nested too deeply to check",
                module.span,
                help="reduce block nesting or split long expressions into several bindings",
            )
        ) from None
    except (SparkError, CompilerBug):
        raise
    except Exception as exc:  # a checker bug: say so (exit 3), never a bare traceback
        raise CompilerBug(f"{type(exc).__name__}: {exc}", "check") from exc


def _check(module: ast.Module, overrides: dict[str, object], model_name: str | None) -> Program:
    sink = DiagnosticSink()
    st = analyse(module, sink)
    if not st.models:
        where = module.definitions[0].name_span if module.definitions else module.span
        sink.add(
            Diagnostic(
                "E0108",
                "no model in file",
                where,
                "only blocks are defined",
                help="add a model that uses the blocks: model M(d = 64) { input x: float[B, N, d] "
                "... output y = ... }",
            )
        )
        raise SparkError(_unique(sink.items))
    chosen = _pick(st.models, model_name, sink)
    check_model_names(chosen, sink)  # names the generated Python module reserves
    el = Elaborator(st, sink)
    scope = Scope(chosen, "", reserved=reserved_names(chosen))
    _model_hypers(el, chosen, overrides, scope)
    try:
        el.run_body(scope)
    except TooLarge:
        pass
    if not any(isinstance(s, ast.Output | ast.Loss) for s in chosen.body):
        sink.add(
            Diagnostic(
                "E0219",
                f"model '{chosen.name}' has no outputs and no losses",
                chosen.name_span,
                "computes nothing visible",
                help="declare its results: output logits = ... and/or loss ce = cross_entropy(...)",
            )
        )
    diags = _unique(sink.items)
    if diags:
        raise SparkError(diags)
    return Program(
        name=chosen.name,
        hyper=tuple((k, plain(v)) for k, v in scope.hypers.items()),
        inputs=tuple(el.inputs),
        consts=tuple(el.consts),
        ops=tuple(el.ops),
        outputs=tuple(el.outputs),
        losses=tuple(el.losses),
        aux_losses=tuple(el.aux),
        span=chosen.span,
    )


def _pick(models: list[ast.ModelDef], name: str | None, sink: DiagnosticSink) -> ast.ModelDef:
    if name is None:
        return models[-1]
    for m in models:
        if m.name == name:
            return m
    names = [m.name for m in models]
    sink.add(
        Diagnostic(
            "E0225",
            f"no model named '{name}' in this file",
            models[-1].name_span,
            f"models here: {', '.join(names)}",
            help=did_you_mean(name, names) or f"choose one of: {', '.join(names)}",
        )
    )
    raise SparkError(_unique(sink.items))


def _model_hypers(
    el: Elaborator, model: ast.ModelDef, overrides: dict[str, object], scope: Scope
) -> None:
    """Evaluate the model's hyperparameters in order, overrides replacing defaults."""
    params = {p.name: p for p in reversed(model.params)}  # the first of duplicates wins
    given: dict[str, Any] = {}
    for key in sorted(overrides, key=str):
        name = str(key)
        if name not in params:
            listed = ", ".join(p.name for p in model.params) or "none"
            el.error(
                "E0223",
                f"-D {name}: model '{model.name}' has no hyperparameter '{name}'",
                model.name_span,
                "in this model",
                help=did_you_mean(name, params) or f"its hyperparameters are: {listed}",
            )
            continue
        try:
            given[name] = _same_kind(params[name], parse_override(overrides[key]))
        except ProblemError as exc:
            el.error(
                exc.problem.code,
                f"-D {name}={overrides[key]!s:.40}: {exc.problem.message}",
                params[name].span,
                "the hyperparameter",
                help=exc.problem.help,
            )
            given[name] = POISON

    def missing(p: ast.HyperParam) -> None:
        el.error(
            "E0230",
            f"model hyperparameter '{p.name}' has no value",
            p.span,
            "no default",
            help=f"give it a default ({p.name} = 64) or pass -D {p.name}=...",
        )

    el.bind_hypers(model.params, given, scope, missing)


def _same_kind(p: ast.HyperParam, value: Any) -> Any:
    """An override must be of the kind of a literal default: a number for 64, a flag for true,
    a name for gelu (a typo such as -D d=big would otherwise surface far from the -D)."""
    default = p.default
    kinds = {
        ast.IntLit: "a number",
        ast.FloatLit: "a number",
        ast.BoolLit: "true or false",
        ast.Name: "a name",
    }
    want = kinds.get(type(default))
    if want is None or value is None:
        return value
    got = (
        "true or false"
        if isinstance(value, bool)
        else "a number"
        if isinstance(value, (int, float))
        else "a name"
    )
    if got != want:
        raise ProblemError(
            Problem(
                "E0224",
                f"'{p.name}' takes {want} (its default is {_literal_text(default)})",
                f"e.g. -D {p.name}={_literal_text(default)}",
            )
        )
    return value


def _literal_text(e: ast.Expr) -> str:
    if isinstance(e, ast.BoolLit):
        return "true" if e.value else "false"
    if isinstance(e, ast.Name):
        return e.id
    return getattr(e, "text", "?")


def _unique(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Drop repeats (a block used many times reports its own errors once)."""
    seen: set[tuple] = set()
    out = []
    for d in diags:
        key = (d.code, d.span, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
