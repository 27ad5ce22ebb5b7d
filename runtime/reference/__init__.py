"""The reference implementation of every op of SPEC §1–§5: the test oracle and the reference
path of generated modules.

`REFERENCE[op](inputs, params, hp, ctx) -> tuple[Tensor, ...]` for every op of
`sparkc.ir.ops.OPS` except the config op `basis`:
- `inputs`: tensors by port name (absent optional ports left out);
- `params`: tensors by the local ParamSpec names of `sparkc.ir.ops` (`"wq.weight"`,
  `"basis.gains"`, `"weight"`, ...); a tied `linear` receives the embedding's table as `weight`;
- `hp`: every hyperparameter resolved (`basis` is None or (name, value) pairs);
- `ctx`: a `RefContext` (training flag, noise generator, decoding position offset).
Outputs come in the op's OutSpec order; aux losses are 0-d tensors already scaled by their weight.
`DECODE[op]` is the cached-decoding rule (state and step, SPEC §5.6) of every sequence mixer.
The rule table is assembled from one module per op family (`FAMILIES`: primitives, attention,
spark_k, splat, hspmn, procedural; shared helpers in `common`), refusing an op defined twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import attention, hspmn, primitives, procedural, spark_k, splat
from .common import Decoder, RefContext, Tensor

RefFn = Callable[..., tuple[Tensor, ...]]


# One module per family, the stems the IR's op modules and codegen's rule modules use.
FAMILIES = (primitives, attention, spark_k, splat, hspmn, procedural)


def assemble(families: Iterable[Any]) -> dict[str, RefFn]:
    """The rule table from the families' `RULES` dicts, sorted by op name; an op that two families
    define is an error (RuntimeError naming it and both modules)."""
    table: dict[str, RefFn] = {}
    owner: dict[str, str] = {}
    for module in families:
        for name, fn in module.RULES.items():
            if name in table:
                raise RuntimeError(
                    f"reference rule for '{name}' defined twice: in {owner[name]} and "
                    f"{module.__name__}"
                )
            table[name], owner[name] = fn, module.__name__
    return dict(sorted(table.items()))


REFERENCE: dict[str, RefFn] = assemble(FAMILIES)


def assemble_decoders(families: Iterable[Any]) -> dict[str, Decoder]:
    """The cached-decoding rules (SPEC §5.6) from the families' `DECODE` dicts (a family without
    a sequence mixer has none), refusing an op that two families define."""
    table: dict[str, Decoder] = {}
    for module in families:
        for name, rule in getattr(module, "DECODE", {}).items():
            if name in table:
                raise RuntimeError(f"decode rule for '{name}' defined twice ({module.__name__})")
            table[name] = rule
    return dict(sorted(table.items()))


# op -> Decoder(state, step): every op whose `causal` trait is set has one (tested).
DECODE: dict[str, Decoder] = assemble_decoders(FAMILIES)
# The step rules alone, as generated modules call them: DECODE_STEPS[op](ins, prm, hp, ctx, state).
DECODE_STEPS: dict[str, Callable[..., tuple[Tensor, ...]]] = {k: v.step for k, v in DECODE.items()}
# The prefill fills, where an op has one: DECODE_FILLS[op](tensors, prm, hp, ctx, state).
DECODE_FILLS: dict[str, Callable[..., None]] = {
    k: v.fill for k, v in DECODE.items() if v.fill is not None
}


def run_op(
    op: str,
    inputs: dict[str, Tensor],
    params: dict[str, Tensor],
    hp: dict,
    ctx: RefContext | None = None,
) -> tuple[Tensor, ...]:
    """Call the reference rule of `op` (a convenience for tests and generated modules)."""
    return REFERENCE[op](inputs, params, hp, ctx if ctx is not None else RefContext())


__all__ = [
    "DECODE",
    "DECODE_FILLS",
    "DECODE_STEPS",
    "FAMILIES",
    "REFERENCE",
    "RefContext",
    "RefFn",
    "assemble",
    "run_op",
]
