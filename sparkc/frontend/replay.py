"""Kept block instances: a block inlined again with the same arguments is replayed, not re-checked.

The elaborator inlines every block call (sparkc/frontend/blocks.py), so `repeat(10000) Layer(x)`
checks the body of `Layer` 10,000 times. What a block body produces depends only on the block,
its hyperparameter values, the types of its tensor arguments and how deep it is nested; only the
instance paths and the references to the arguments differ from one instance to the next. So the
first clean instance (no diagnostics) is recorded as a `Kept` slice of the program lists (op
instances, constants, aux-loss refs) and every later instance with the same key is a copy of
that slice with its paths moved to the new prefix and its references shifted: linear in the size
of the program, with a constant per op far below a re-check.

Consumes the elaborator's lists and a block call's prepared arguments; produces the replayed
result value (a `Tensor` or `Multi`), or None when the call has no kept instance. A slice that a
copy could get wrong (a `tie=` naming an instance by path, a reference to a value outside the
block, aliased arguments, a path outside the prefix) is never kept, so those calls are checked
in full every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .program import Const, OpInstance, Ref
from .values import Multi, Tensor


@dataclass(frozen=True)
class Kept:
    prefix: str
    ops: tuple[OpInstance, ...]
    op_start: int
    consts: tuple[Const, ...]
    const_start: int
    aux: tuple[Ref, ...]
    args: dict[Ref, str]  # the recorded instance's argument refs → input name
    result: Any  # Tensor or Multi over refs of the recorded instance


def key(block: str, depth: int, tensors: dict[str, Any], hypers: dict[str, Any]) -> Any:
    """What a block instance's checked body depends on, or None when it cannot be keyed."""
    if not all(isinstance(t, Tensor) for t in tensors.values()):
        return None
    refs = [t.ref for t in tensors.values()]
    if len(set(refs)) != len(refs):
        return None  # Block(x, x): the same ref feeds two inputs
    try:
        k = (
            block,
            depth,
            tuple((n, t.type) for n, t in tensors.items()),
            tuple(
                (n, type(v).__name__, repr(v) if isinstance(v, float) else v)
                for n, v in hypers.items()
            ),
        )
        hash(k)
    except TypeError:
        return None
    return k


def _rebase(path: str, old: str, new: str) -> str | None:
    if path.startswith(old):
        return new + path[len(old) :]
    if path == old.removesuffix("."):
        return new.removesuffix(".")  # an operator of the block's `return` statement
    return None


def record(
    el: Any, prefix: str, start: tuple[int, int, int], tensors: dict, result: Any
) -> Kept | None:
    """The slice the block instance just inlined added to `el`'s lists, if it can be replayed."""
    op_start, const_start, aux_start = start
    ops = tuple(el.ops[op_start:])
    args = {t.ref: n for n, t in tensors.items()}
    n_ops, n_consts = len(el.ops), len(el.consts)

    def inside(ref: Ref) -> bool:
        if ref in args:
            return True
        if ref.kind == "op":
            return op_start <= ref.index < n_ops
        return ref.kind == "const" and const_start <= ref.index < n_consts

    results = result.items if isinstance(result, Multi) else (result,)
    refs = [r for op in ops for _, r in op.inputs] + list(el.aux[aux_start:])
    refs += [t.ref for t in results]
    if not all(inside(r) for r in refs):
        return None
    if any(op.tie or _rebase(op.path, prefix, prefix) is None for op in ops):
        return None
    return Kept(
        prefix,
        ops,
        op_start,
        tuple(el.consts[const_start:]),
        const_start,
        tuple(el.aux[aux_start:]),
        args,
        result,
    )


def replay(el: Any, kept: Kept, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Append a copy of `kept` for the instance at `prefix` with arguments `tensors`."""
    op_shift = len(el.ops) - kept.op_start
    const_shift = len(el.consts) - kept.const_start
    new_args = {ref: tensors[name].ref for ref, name in kept.args.items()}

    def move(ref: Ref) -> Ref:
        if ref in new_args:
            return new_args[ref]
        if ref.kind == "op":
            return Ref("op", ref.index + op_shift, ref.output)
        return Ref("const", ref.index + const_shift, ref.output)

    el.consts.extend(kept.consts)
    el.ops.extend(
        OpInstance(
            _rebase(op.path, kept.prefix, prefix),
            op.op,
            tuple((port, move(r)) for port, r in op.inputs),
            op.spec,
            op.span,
        )
        for op in kept.ops
    )
    el.aux.extend(move(r) for r in kept.aux)
    if isinstance(kept.result, Multi):
        items = tuple(Tensor(move(t.ref), t.type) for t in kept.result.items)
        return Multi(kept.result.what, items, kept.result.names)
    return Tensor(move(kept.result.ref), kept.result.type)
