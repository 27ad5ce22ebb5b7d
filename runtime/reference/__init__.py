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
The rule table is assembled from one module per SPEC family.
"""

from __future__ import annotations

from collections.abc import Callable

from . import attention, hspmn, primitives, procedural, spark_k, splat
from ._common import RefContext, Tensor

RefFn = Callable[..., tuple[Tensor, ...]]


def _build() -> dict[str, RefFn]:
    table: dict[str, RefFn] = {}
    for module in (primitives, attention, spark_k, splat, hspmn, procedural):
        for name, fn in module.RULES.items():
            if name in table:
                raise RuntimeError(f"reference rule for '{name}' defined twice")
            table[name] = fn
    return dict(sorted(table.items()))


REFERENCE: dict[str, RefFn] = _build()


def run_op(
    op: str,
    inputs: dict[str, Tensor],
    params: dict[str, Tensor],
    hp: dict,
    ctx: RefContext | None = None,
) -> tuple[Tensor, ...]:
    """Call the reference rule of `op` (a convenience for tests and generated modules)."""
    return REFERENCE[op](inputs, params, hp, ctx if ctx is not None else RefContext())


__all__ = ["REFERENCE", "RefContext", "RefFn", "run_op"]
