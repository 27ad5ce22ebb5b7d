"""§1.1 attention and §5.5 its procedural score bias `basis`.

Consumes the schema; produces `SPECS` (attention, basis).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .schema import (
    CAUSAL,
    Derived,
    DocVariant,
    Hyper,
    Init,
    MaxLenRule,
    OpContext,
    OpSpec,
    OutSpec,
    ParamSpec,
    Port,
    attention_core_flops,
    causal_hp,
    check_rope_even,
    gemm_flops,
    gqa_width,
    linear_params,
    no_flops,
    seq_dims,
)

# --------------------------------------------------------------------------------------------
# §1.1 attention and §5.5 basis


def _attention_infer(ctx: OpContext):
    _b, _n, d_model = seq_dims(ctx)
    d, _ = gqa_width(ctx, d_model)
    check_rope_even(ctx, d)
    return (ctx.t("x"),)


def _basis_atoms(spec: Mapping[str, Any] | tuple[tuple[str, Any], ...]) -> int:
    # The IR stores basis= as a tuple of (name, value) pairs (hashable attrs); accept both.
    spec = dict(spec)
    return 2 * spec["freqs"] + spec["legendre"]


def _attention_params(ctx: OpContext):
    d_model = ctx.last("x")
    d = d_model // ctx.hp["heads"]
    kv = ctx.hp.get("kv_heads") or ctx.hp["heads"]
    ps = (
        linear_params("wq", d_model, d_model, bias=False)
        + linear_params("wk", d_model, kv * d, bias=False)
        + linear_params("wv", d_model, kv * d, bias=False)
        + linear_params("wo", d_model, d_model, bias=False)
    )
    basis = ctx.hp.get("basis")
    if basis:
        ps.append(ParamSpec("basis.gains", (ctx.hp["heads"], _basis_atoms(basis)), Init("zeros")))
    return ps


def _basis_validate(ctx: OpContext):
    if ctx.hp["freqs"] + ctx.hp["legendre"] == 0:
        ctx.fail("freqs", "a basis needs at least one atom (freqs + legendre > 0)", code="E0304")


# docs/ops.md documents attention with this basis too.
BASIS_EXAMPLE = {"freqs": 4, "legendre": 4, "over": "distance", "max_len": 128}


def _attention_flops(ctx) -> float:
    b, n, dm = ctx.ins["x"]
    h, kv = ctx.hp["heads"], ctx.hp["kv_heads"]
    d = dm // h
    proj = gemm_flops(ctx, (dm, dm), (dm, kv * d), (dm, kv * d), (dm, dm))
    return proj + attention_core_flops(b, h, n, d, bool(ctx.hp["causal"]))


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_ATTENTION = """\
Multi-head attention with grouped-query heads, the baseline every other mixer is compared with.

- Parameters: `wq = Linear(D→D, bias=False)`, `wk, wv = Linear(D→kv_heads·d, bias=False)`,
  `wo = Linear(D→D, bias=False)`. `kv_heads` must divide `heads`; `G = heads / kv_heads`.
- Query head `h` reads key/value head `⌊h / G⌋`. With `rope=true`, `q` and `k` are rotated
  (see `rope`, base `rope_base`) at their own positions.
- `s_ij = q_i · k_j / √d + bias_h(i, j)`, restricted to `j ≤ i` when causal;
  `o_i = Σ_j softmax_j(s_ij) v_j`; `y = wo(merge_heads(o))`.
- `basis=basis(...)` adds the learned procedural score bias described under `basis`; without
  it `bias_h ≡ 0`. The bias is computed inside the kernel from `(i, j)`, never stored as
  `[N, N]`."""

_BASIS = """\
A compile-time value for `attention`'s `basis=`, not a layer. It gives the attention one
parameter, `basis.gains [H, 2·freqs + legendre]` (zeros, under the attention instance), and the
score bias `bias_h(i, j) = Σ_a gains[h, a] · atom_a(x)` with `x = |i − j| / max_len`
(`over=distance`) or `x = j / max_len` (`over=key`). The atoms, in this order: `sin(π f x)` for
`f = 1..freqs`, `cos(π f x)` for `f = 1..freqs`, then the Legendre polynomials
`P_1..P_legendre` of `2x − 1` (`P_0` is left out: a constant bias cancels in the softmax).
`max_len` is required; a sequence longer than `max_len` is an `InputError`.
Departure from the SPARK research code: it had no Legendre atoms, and evaluated one query at a
time it reduced the bias to a constant that the softmax cancelled."""


SPECS: tuple[OpSpec, ...] = (
    # §1.1 / §5.5 attention ------------------------------------------------------------------
    OpSpec(
        "attention",
        "1.1",
        "multi-head attention with grouped-query heads",
        (Port("x", "float", rank=3),),
        (
            Hyper("heads", "int", check="pos"),
            Hyper("kv_heads", "int", Derived("heads", lambda ctx: ctx.hp["heads"]), check="pos"),
            CAUSAL,
            Hyper("rope", "bool", False, doc="apply RoPE to q and k"),
            Hyper("rope_base", "float", 10000.0, check="pos"),
            Hyper(
                "basis",
                "basis",
                None,
                nullable=True,
                doc="procedural score bias: basis(freqs=4, legendre=4, over=distance, max_len=L)",
            ),
        ),
        (OutSpec("y"),),
        _attention_infer,
        _attention_params,
        category="mixing",
        causal=causal_hp,
        runtime_rules=lambda hp: (
            (MaxLenRule("x", int(dict(hp["basis"])["max_len"])),) if hp.get("basis") else ()
        ),
        kernel="attention",
        gemm_tail=True,
        flops=_attention_flops,
        backward_factor=2.5,
        doc_variants=(DocVariant("basis=basis(...)", (("basis", BASIS_EXAMPLE),)),),
        semantics=_ATTENTION,
    ),
    OpSpec(
        "basis",
        "5.5",
        "procedural attention-bias spec (a value for attention's basis=)",
        (),
        (
            Hyper("freqs", "int", 4, check="nonneg"),
            Hyper("legendre", "int", 4, check="nonneg"),
            Hyper("over", "choice", "distance", choices=("distance", "key")),
            Hyper("max_len", "int", check="pos"),
        ),
        (),
        lambda ctx: (),
        category="config",
        validate=_basis_validate,
        flops=no_flops,
        semantics=_BASIS,
    ),
)
