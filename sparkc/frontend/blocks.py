"""Block calls and `repeat`: a mixin of the `Elaborator` (sparkc/frontend/elaborate.py).

Consumes an `ast.Call` (or `ast.Repeat`) whose callee is a block of the file; binds and checks
its arguments (tensor inputs positionally or by name, hyperparameters by name), then inlines the
block's body in a child `Scope` whose op instances are named `<prefix><instance>.`; `repeat(n)`
inlines n copies, each copy's result feeding the next copy's input. Produces the block's result
value (a `Tensor`, a `Multi` for several results, or `POISON` after an error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..diagnostics import Span
from ..ir.ops import OPS
from . import ast, replay
from .calls import MAX_OPS
from .scope import Scope, Stmt, reserved_names
from .values import POISON, Multi, Tensor, describe

MAX_BLOCK_DEPTH = 32
MAX_REPEAT = 10_000


class BlocksMixin:
    """Needs from the host class: `st` (the file's Structure), `calls` (the block instances
    being inlined), `kept_blocks` (sparkc/frontend/replay.py), `sink`, the program lists, `eval`,
    `error`, `bind_args`, `check_missing`, `tensor_arg`, `run_body`."""

    def eval_block(self, call: ast.Call, scope: Scope, stmt: Stmt, whole: bool) -> Any:
        blk = self.st.blocks[call.func]
        prepared = self.prepare_block_call(blk, call, scope, stmt)
        if prepared is None:
            return POISON
        name = scope.instance_name(stmt, blk.name, whole)
        return self.inline(blk, f"{scope.prefix}{name}.", *prepared, call)

    def prepare_block_call(self, blk: ast.BlockDef, call: ast.Call, scope: Scope, stmt: Stmt):
        inputs = [d.name for d in self.st.block_inputs[blk.name]]
        usage = f"{blk.name}(" + ", ".join(inputs + [f"{p.name}=..." for p in blk.params]) + ")"
        args = self.bind_args(
            call, f"block {blk.name}", inputs, [p.name for p in blk.params], usage
        )
        ok = self.check_missing(
            call,
            args,
            f"block {blk.name}",
            inputs,
            [p.name for p in blk.params if p.default is None],
            usage,
            lambda h: f"pass it by name: {blk.name}(..., {h}=...)",
        )
        tensors: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        for n in inputs:
            if n in args.tensors:
                expr, span = args.tensors[n]
                v = self.tensor_arg(scope, stmt, expr, span, f"input '{n}' of block {blk.name}")
                ok = ok and v is not POISON
                tensors[n], spans[n] = v, span
        hypers: dict[str, Any] = {}
        for n, kw in args.hypers.items():
            v = self.eval(kw.value, scope, stmt, hyper=True)
            if isinstance(v, (Tensor, Multi)):
                self.error(
                    "E0208",
                    f"hyperparameter '{n}' of block {blk.name} must be a constant, "
                    f"got {describe(v)}",
                    kw.value.span,
                    "not a constant",
                    help="pass tensors as inputs; hyperparameters are numbers, true/false or names",
                )
                v = POISON
            ok = ok and v is not POISON
            hypers[n] = v
        return (tensors, spans, hypers) if ok else None

    def inline(
        self,
        blk: ast.BlockDef,
        prefix: str,
        tensors: dict[str, Any],
        spans: dict[str, Span],
        hypers: dict[str, Any],
        call: ast.Call,
    ) -> Any:
        if len(self.calls) >= MAX_BLOCK_DEPTH:
            self.error(
                "E0231",
                f"blocks are nested more than {MAX_BLOCK_DEPTH} deep",
                call.span,
                "too deep",
                help="flatten the block hierarchy",
            )
            return POISON
        k = replay.key(blk.name, len(self.calls), tensors, hypers)
        kept = self.kept_blocks.get(k) if k is not None else None
        if kept is not None and len(self.ops) + len(kept.ops) < MAX_OPS:
            return replay.replay(self, kept, prefix, tensors)
        start = (len(self.ops), len(self.consts), len(self.aux))
        n_diags = len(self.sink.items)
        child = Scope(
            blk, prefix, reserved=reserved_names(blk), block_args=tensors, block_arg_spans=spans
        )
        self.calls.append((blk.name, call.span))
        try:
            self.bind_hypers(blk.params, hypers, child)  # a missing one was reported
            self.run_body(child)
        finally:
            self.calls.pop()
        ret = child.returned
        if not ret or any(v is POISON for v in ret):
            return POISON
        result = ret[0] if len(ret) == 1 else Multi(f"block {blk.name}", tuple(ret), None)
        if k is not None and len(self.sink.items) == n_diags:
            kept = replay.record(self, prefix, start, tensors, result)
            if kept is not None:
                self.kept_blocks[k] = kept
        return result

    def bind_hypers(
        self,
        params: list[ast.HyperParam],
        given: dict[str, Any],
        scope: Scope,
        missing: Callable[[ast.HyperParam], None] | None = None,
    ) -> None:
        """Bind each hyperparameter of a block or model into `scope`, in order: the given value,
        else its default (evaluated in `scope`, so it may use earlier ones), else `POISON` after
        `missing(param)`. A name already bound (a duplicate parameter) keeps its first value."""
        for p in params:
            if p.name in scope.hypers:
                continue
            if p.name in given:
                scope.hypers[p.name] = given[p.name]
            elif p.default is not None:
                scope.hypers[p.name] = self.eval(p.default, scope, Stmt(""), hyper=True)
            else:
                if missing is not None:
                    missing(p)
                scope.hypers[p.name] = POISON

    def _repeat(self, e: ast.Repeat, scope: Scope, stmt: Stmt, hyper: bool, whole: bool) -> Any:
        count = self.eval(e.count, scope, stmt, hyper=True)
        name = e.call.func
        ok = count is not POISON
        if ok and (
            isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPEAT
        ):
            self.error(
                "E0221",
                f"repeat needs a count between 1 and {MAX_REPEAT}, got {describe(count)}",
                e.count.span,
                "invalid count",
                help="e.g. h = repeat(layers) Layer(x, ...) with layers = 4",
            )
            ok = False
        if name in OPS:
            self.error(
                "E0221",
                f"repeat works on blocks; '{name}' is a built-in op",
                e.call.func_span,
                "not a block",
                help=f"wrap it in a block: block Step(D) {{ input x: float[B, N, D]  "
                f"return {name}(x, ...) }}",
            )
            return POISON
        if name not in self.st.blocks or name in self.st.cyclic:
            return POISON
        blk = self.st.blocks[name]
        inputs = self.st.block_inputs[name]
        rets = [s for s in blk.body if isinstance(s, ast.Return)]
        nret = len(rets[0].values) if rets else 0
        if len(inputs) != 1 or nret != 1:
            self.error(
                "E0221",
                f"repeat needs a block with one input and one result; '{name}' "
                f"has {len(inputs)} input(s) and {nret} result(s)",
                e.call.func_span,
                "not chainable",
                help="repeat feeds each copy's result into the next copy's input",
            )
            return POISON
        prepared = self.prepare_block_call(blk, e.call, scope, stmt)
        if prepared is None or not ok:
            return POISON
        tensors, spans, hypers = prepared
        inst = scope.instance_name(stmt, name, whole)
        port = inputs[0].name
        x = tensors[port]
        for i in range(count):
            y = self.inline(blk, f"{scope.prefix}{inst}.{i}.", {port: x}, spans, hypers, e.call)
            if not isinstance(y, Tensor):
                return POISON
            if y.type != x.type:
                self.error(
                    "E0221",
                    f"repeat needs '{name}' to return the type of its input: it "
                    f"takes {x.type} and returns {y.type}",
                    e.span,
                    "not chainable",
                    help="each copy's result feeds the next copy, so the types must match",
                )
                return POISON
            x = y
        return x
