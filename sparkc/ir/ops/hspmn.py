"""§4 HSPMN: token_router, sqdk_attention.

Consumes the schema; produces `SPECS`.
"""

from __future__ import annotations

from ..types import DType, TensorType, fmt_shape
from .schema import (
    Derived,
    Hyper,
    OpContext,
    OpSpec,
    OutSpec,
    Port,
    attention_core_flops,
    check_rope_even,
    float_type,
    gemm_flops,
    gqa_width,
    linear_params,
    seq_dims,
    want_shape,
)

# --------------------------------------------------------------------------------------------
# §4 HSPMN


def _router_infer(ctx: OpContext):
    b, n, _d = seq_dims(ctx)
    return (TensorType(DType.BOOL, (b, n)), float_type((b, n)), float_type(()))


def _sqdk_infer(ctx: OpContext):
    b, n, d_model = seq_dims(ctx)
    g = ctx.t("gate")
    if g.shape != (b, n):
        ctx.fail(
            "gate",
            f"gate must be {want_shape(('B', 'N'), (b, n))} like x, got {fmt_shape(g.shape)}",
            help="pass token_router(x).gate",
        )
    d, _ = gqa_width(ctx, d_model)
    check_rope_even(ctx, d)
    return (ctx.t("x"),)


def _sqdk_params(ctx: OpContext):
    d_model = ctx.last("x")
    d = d_model // ctx.hp["heads"]
    kv = ctx.hp.get("kv_heads") or ctx.hp["heads"]
    return (
        linear_params("wq", d_model, d_model, bias=False)
        + linear_params("wk", d_model, kv * d, bias=False)
        + linear_params("wv", d_model, kv * d, bias=False)
        + linear_params("wo", d_model, d_model, bias=False)
    )


def _sqdk_flops(ctx) -> float:
    # Upper bound: every token routed (the kernel's work scales with the routed count).
    b, n, dm = ctx.ins["x"]
    h, kv = ctx.hp["heads"], ctx.hp["kv_heads"]
    d = dm // h
    return gemm_flops(ctx, (dm, dm), (dm, kv * d), (dm, kv * d), (dm, dm)) + attention_core_flops(
        b, h, n, d, True
    )


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_TOKEN_ROUTER = """\
Chooses which tokens take the expensive contextual path. Outputs `(mask, gate, loss)`: `mask`
bool `[B, N]`, `gate` float `[B, N]`, a scalar `loss`. Pass `.gate` to `sqdk_attention`.

- Parameter: `w = Linear(D→1)`; logits `ℓ_t = w(x_t)`, probabilities `p_t = σ(ℓ_t)`.
- Training with `noise=true`: `ℓ̃_t = ℓ_t + ln u − ln(1 − u)`, `u ~ U(0, 1)` clamped to
  `[tiny, 1 − eps]` of float32 (logistic noise: a token is routed with probability exactly
  `p_t`). Otherwise `ℓ̃ = ℓ`.
- `mode=threshold` (causal): `mask_t = [ℓ̃_t > 0]`. `mode=topk` (not causal): per sequence
  `k = max(1, ⌊sparsity · N + 1e-9⌋)` (in float64) and `mask` marks the `k` largest `ℓ̃_t`, ties
  going to the lower index.
- `gate_t = mask_t + (σ(ℓ̃_t) − sg(σ(ℓ̃_t)))`: straight-through, exactly 0 or 1 in the forward
  pass, with the sigmoid's gradient, so the router learns from the task loss.
- `loss = aux_weight · (mean_{b,t} p_t − sparsity)²`.
- Departures from the HSPMN research code: v2's single Gumbel sample routed with probability
  `1 − exp(−e^ℓ)` while its loss regularised `σ(ℓ)`; v2.1's top-k router got no task gradient."""

_SQDK = """\
Sparse-query, dense-key attention: only routed tokens ask questions, every token can answer.
Always causal.

- Parameters: `wq = Linear(D→D, bias=False)`, `wk, wv = Linear(D→kv_heads·d, bias=False)`,
  `wo = Linear(D→D, bias=False)`; `G = heads / kv_heads`.
- Keys and values at every position: `k_s = rope(wk x_s, s)`, `v_s = wv x_s` (RoPE when
  `rope=true`, base `rope_base`).
- For a routed `t` (`gate_t ≠ 0`): `q_t = rope(wq x_t, t)`; query head `h` reads key/value head
  `⌊h/G⌋`; `o_t = Σ_{s≤t} softmax_s(q_t·k_s / √d) v_s`; `y_t = gate_t · wo(merge_heads(o_t))`.
  For an unrouted `t`: `y_t = 0`.
- Gradients reach `x` through keys and values at every position and through queries at routed
  positions; they reach the router through `gate` at routed positions only.
- Work and memory scale with the number of routed tokens: routed queries are gathered, attend,
  and are scattered back; nothing is computed for unrouted rows.
- Departures from the HSPMN research code: v2.1's kernel indexed keys and values with the query
  head (the wrong head, and 1–3 future tokens, when `kv_heads < heads`); v2's kernel had no
  backward pass, so its projections never trained."""


SPECS: tuple[OpSpec, ...] = (
    # §4 HSPMN -------------------------------------------------------------------------------------
    OpSpec(
        "token_router",
        "4.1",
        "decides which tokens take the contextual path",
        (Port("x", "float", rank=3),),
        (
            Hyper("sparsity", "float", 0.2, check="prob"),
            Hyper("mode", "choice", "threshold", choices=("threshold", "topk")),
            Hyper("noise", "bool", True),
            Hyper("aux_weight", "float", 0.1, check="nonneg"),
        ),
        (
            OutSpec("mask"),
            OutSpec("gate"),
            OutSpec("loss", "sparsity regulariser (weighted by aux_weight)", is_loss=True),
        ),
        _router_infer,
        lambda ctx: linear_params("w", ctx.last("x"), 1),
        category="block",
        causal=lambda hp: hp["mode"] == "threshold",
        decodable=lambda hp: hp["mode"] == "threshold",
        noise=lambda hp: bool(hp["noise"]),
        kernel="token_router",
        flops=lambda c: gemm_flops(c, (c.width(), 1)),
        semantics=_TOKEN_ROUTER,
    ),
    OpSpec(
        "sqdk_attention",
        "4.2",
        "sparse-query dense-key attention (always causal)",
        (Port("x", "float", rank=3), Port("gate", "float", rank=2)),
        (
            Hyper("heads", "int", check="pos"),
            Hyper("kv_heads", "int", Derived("heads", lambda ctx: ctx.hp["heads"]), check="pos"),
            Hyper("rope", "bool", True),
            Hyper("rope_base", "float", 10000.0, check="pos"),
        ),
        (OutSpec("y"),),
        _sqdk_infer,
        _sqdk_params,
        category="mixing",
        causal=lambda hp: True,
        kernel="sqdk_attention",
        flops=_sqdk_flops,
        backward_factor=2.5,
        semantics=_SQDK,
    ),
)
