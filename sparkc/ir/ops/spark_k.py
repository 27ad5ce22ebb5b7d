"""§2 SPaR-K: fk_attention, spd_router, verifier_stack.

Consumes the schema; produces `SPECS` (this family's op specs in table order).
"""

from __future__ import annotations

import math

from .schema import (
    CAUSAL,
    Derived,
    Hyper,
    Init,
    OpContext,
    OpSpec,
    OutSpec,
    ParamSpec,
    Port,
    attention_core_flops,
    causal_hp,
    float_type,
    gemm_flops,
    head_width,
    layernorm_params,
    linear_params,
    seq_dims,
)

# --------------------------------------------------------------------------------------------
# §2 SPaR-K


def _fk_infer(ctx: OpContext):
    _b, _n, d_model = seq_dims(ctx)
    head_width(ctx, d_model)
    return (ctx.t("x"),)


def _fk_params(ctx: OpContext):
    d = ctx.last("x")
    return (
        linear_params("wq", d, d, bias=False)
        + linear_params("wk", d, d, bias=False)
        + linear_params("wv", d, d, bias=False)
        + linear_params("wo", d, d, bias=True)
    )


def _spd_infer(ctx: OpContext):
    b, n, d = seq_dims(ctx)
    if d < 4:
        ctx.fail("x", f"spd_router needs D >= 4, got D={d}", code="E0304")
    ds, dp = ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    return (float_type((b, n, d)), float_type((b, n, ds)), float_type((b, n, dp)), float_type(()))


def _spd_params(ctx: OpContext):
    d = ctx.last("x")
    ds, dp = ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    h2, h4 = d // 2, d // 4
    return (
        linear_params("gate_s1", d, h2)
        + linear_params("gate_s2", h2, ds)
        + linear_params("gate_p1", d, h2)
        + linear_params("gate_p2", h2, dp)
        + [ParamSpec("basis.weight", (ds, d), Init("normal", (1.0 / math.sqrt(d),)))]
        + linear_params("coeffs", ds, ds)
        + linear_params("proc_s1", ds, ds)
        + layernorm_params("proc_s_norm", ds)
        + linear_params("proc_s2", ds, ds)
        + linear_params("pseudo_proj", d, dp)
        + linear_params("proc_p1", dp, 2 * dp)
        + linear_params("proc_p2", 2 * dp, dp)
        + layernorm_params("proc_p_norm", dp)
        + linear_params("reconstruct", ds + dp, d)
        + linear_params("pred1", ds, h4)
        + linear_params("pred2", h4, d)
    )


def _stack_infer(ctx: OpContext):
    b, n, d = seq_dims(ctx, "h")
    if d < 4:
        ctx.fail("h", f"verifier_stack needs D >= 4, got D={d}", code="E0304")
    return (
        float_type((b, n, ctx.hp["elem"])),
        float_type((b, n, ctx.hp["signals"])),
        float_type((b, n)),
        float_type(()),
    )


def _stack_params(ctx: OpContext):
    d, e = ctx.last("h"), ctx.hp["elem"]
    return (
        linear_params("ctrl1", d, d // 2)
        + linear_params("ctrl2", d // 2, 3)
        + linear_params("enc", d, e)
        + linear_params("head1", d + e, d // 4)
        + linear_params("head2", d // 4, ctx.hp["signals"])
    )


_HALF_D = Derived("D/2", lambda ctx: ctx.last(ctx_port(ctx)) // 2)


def ctx_port(ctx: OpContext) -> str:
    return "h" if "h" in ctx.inputs else "x"


def _fk_flops(ctx) -> float:
    b, n, dm = ctx.ins["x"]
    h = ctx.hp["heads"]
    proj = gemm_flops(ctx, (dm, dm), (dm, dm), (dm, dm), (dm, dm))
    return proj + ctx.hp["hops"] * attention_core_flops(b, h, n, dm // h, bool(ctx.hp["causal"]))


def _spd_flops(ctx) -> float:
    d, ds, dp = ctx.width(), ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    h2, h4 = d // 2, d // 4
    pairs = [
        (d, h2),
        (h2, ds),
        (d, h2),
        (h2, dp),
        (d, ds),
        (ds, ds),
        (ds, ds),
        (ds, ds),
        (d, dp),
        (dp, 2 * dp),
        (2 * dp, dp),
        (ds + dp, d),
        (ds, h4),
        (h4, d),
    ]
    return gemm_flops(ctx, *pairs) + 20.0 * ctx.rows() * (ds + dp)


def _stack_flops(ctx) -> float:
    d, e, s = ctx.width("h"), ctx.hp["elem"], ctx.hp["stack"]
    rows = ctx.rows("h")
    mlps = (
        2.0
        * rows
        * (d * (d // 2) + (d // 2) * 3 + d * e + (d + e) * (d // 4) + (d // 4) * ctx.hp["signals"])
    )
    return mlps + 6.0 * rows * s * e  # the memory update and the read, per step


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_FK = """\
Feynman–Kac multi-hop attention: the resolvent `(I − βA)⁻¹ V` truncated after `hops` terms.

- Parameters: `wq, wk, wv = Linear(D→D, bias=False)`, `wo = Linear(D→D)` (with bias).
- Per head, `A = softmax_j(q_i · k_j / √d)` (restricted to `j ≤ i` when causal). Then
  `P_0 = V`, `P_k = β · A · P_{k−1}` for `k = 1..hops`, and `R = Σ_{k=0..hops} P_k`.
- `normalize=true` multiplies `R` by `(1 − β) / (1 − β^{hops+1})`, so every row of the total
  operator sums to 1; the default `false` keeps the original scale (row sums near `1/(1 − β)`).
- `y = wo(merge_heads(R))`. Requires `0 < beta < 1` and `hops ≥ 1`.
- Kernels never store `A` (`[B, H, N, N]`): each hop is an attention-shaped pass that reuses the
  row statistics (max, log-sum-exp) of the first. Under causal masking the `P_k` of past
  positions never change, so decoding caches them.
- Departures from the SPaR-K research code: it had no causal mask (a next-token model trained
  with it saw its targets); `causal=false` gives that bidirectional operator. Its Chebyshev and
  dense-inverse variants, attention dropout and per-hop early exit are not part of this op."""

_SPD = """\
Structure / pseudo-randomness decomposition. Outputs `(y, x_struct, x_pseudo, loss)`; a program
binds any of them (`r.y`, or `y, xs, xp, l = spd_router(x)`). With `Ds = struct_dim`,
`Dp = pseudo_dim` (both default `⌊D/2⌋`; `D ≥ 4`; `D/2` and `D/4` round down):

- Parameters: `gate_s1 = Linear(D→D/2)`, `gate_s2 = Linear(D/2→Ds)`, `gate_p1 = Linear(D→D/2)`,
  `gate_p2 = Linear(D/2→Dp)`, `basis = Linear(D→Ds, bias=False)` (weight N(0, 1/D)),
  `coeffs = Linear(Ds→Ds)`, `proc_s1 = Linear(Ds→Ds)`, `proc_s_norm = LayerNorm(Ds)`,
  `proc_s2 = Linear(Ds→Ds)`, `pseudo_proj = Linear(D→Dp)`, `proc_p1 = Linear(Dp→2Dp)`,
  `proc_p2 = Linear(2Dp→Dp)`, `proc_p_norm = LayerNorm(Dp)`, `reconstruct = Linear(Ds+Dp→D)`,
  `pred1 = Linear(Ds→D/4)`, `pred2 = Linear(D/4→D)`.
- Gate logits `ℓ_s = gate_s2(relu(gate_s1 x))`, `ℓ_p = gate_p2(relu(gate_p1 x))`.
  `gate=sigmoid` (default): `g_s = σ(ℓ_s)`, `g_p = σ(ℓ_p)`. `gate=softmax` (the original):
  `g_s` is the softmax over the `Ds` features of `log σ(ℓ_s)`, likewise `g_p`.
  `gate_noise=true` (training only): the sigmoid gate becomes `σ(ℓ + ln u − ln(1 − u))`,
  `u ~ U(0, 1)`; the softmax gate becomes `softmax(log σ(ℓ) + G)`, `G` iid Gumbel(0, 1)
  (temperature 1).
- `x_struct = basis(x) ⊙ g_s`, `x_pseudo = pseudo_proj(x) ⊙ g_p`,
  `y_s = proc_s2(relu(proc_s_norm(proc_s1(coeffs(x_struct)))))`,
  `y_p = proc_p_norm(proc_p2(relu(proc_p1(x_pseudo))))`, `y = reconstruct(concat(y_s, y_p))`.
- `loss = sep_weight · (mean((pred2(relu(pred1 x_struct)) − x)²) − 0.1 · H(x_pseudo))`, the
  mean over all `B·N·D` elements, with `H(z) = −mean over (b, n) of Σ_f |z_f| · log(|z_f| +
  1e-8)`.
- Departures from the SPaR-K research code: its separation loss was a Python float without
  gradient; it drew gate noise at evaluation too; its softmax gate spread each token's gate
  mass over all features and so shrank the signal about `D/2`-fold (hence the sigmoid
  default)."""

_VERIFIER = """\
A differentiable stack driven by the sequence. Outputs `(read, signals, pointer, loss)`:
`read [B, N, elem]`, `signals [B, N, signals]` in (0, 1), `pointer [B, N]`, a scalar `loss`.
`S = stack`; `elem` defaults to `⌊D/2⌋`.

- Parameters: `ctrl1 = Linear(D→D/2)`, `ctrl2 = Linear(D/2→3)`, `enc = Linear(D→elem)`,
  `head1 = Linear(D+elem→D/4)`, `head2 = Linear(D/4→signals)`.
- Per token, `(push_t, pop_t, noop_t) = softmax(ctrl2(relu(ctrl1 h_t)))`; with `op_noise=true`
  in training, `softmax(log π + G)` with Gumbel noise `G` (temperature 1), and these noisy values
  drive everything below. `e_t = enc(h_t)`.
- Start with memory `M_0 = 0 ∈ R^{S×elem}` and pointer `p_0 = 0`. For `t = 1..N` (sequential in
  `t`, parallel over batch and `elem`):
  `w_t[s] = exp(−(s − p_{t−1})²/2) / Σ_{s'} exp(−(s' − p_{t−1})²/2)` for `s = 0..S−1`;
  `M_t = M_{t−1} ⊙ (1 − push_t w_t)[:, None] + (push_t w_t)[:, None] · e_t[None, :]`;
  `p_t = clamp(p_{t−1} + push_t − pop_t, 0, S−1)` (with `torch.clamp`'s gradient).
  `read=top`: `u_t[s] = exp(−(s − (p_t − 1))²/2) / Σ_{s'} (same)` and `r_t = Σ_s u_t[s] M_t[s]`;
  `read=mean` (the original): `r_t = mean_s M_t[s]`.
- `signals_t = σ(head2(relu(head1 concat(h_t, r_t))))`, `pointer_t = p_t`, `read_t = r_t`.
- `loss = penalty · (mean_{b,t} pop_t · relu(1 − p_{t−1}) + mean_{b,t} push_t ·
  relu(p_{t−1} − (S − 2)))` (underflow and overflow pressure).
- Kernel: the per-token networks run in parallel, the pointer is a cheap scalar scan, and given
  the pointers the memory is a diagonal linear recurrence `M_t = a_t ⊙ M_{t−1} + b_t` scanned in
  one kernel, never one launch per step.
- Departures from the SPaR-K research code: its pop read the wrong slot, its under/overflow
  penalties were always zero, its loss grew with `N`, it drew noise at inference, and its result
  never reached the model output; here `read` is an output a program can add to its stream."""


SPECS: tuple[OpSpec, ...] = (
    # §2 SPaR-K --------------------------------------------------------------------------------
    OpSpec(
        "fk_attention",
        "2.1",
        "Feynman–Kac multi-hop attention Σ_k (βA)^k V",
        (Port("x", "float", rank=3),),
        (
            Hyper("heads", "int", check="pos"),
            Hyper("hops", "int", 10, check="pos"),
            Hyper("beta", "float", 0.5, check="open01"),
            CAUSAL,
            Hyper("normalize", "bool", False),
        ),
        (OutSpec("y"),),
        _fk_infer,
        _fk_params,
        category="mixing",
        causal=causal_hp,
        kernel="fk_attention",
        gemm_tail=True,
        flops=_fk_flops,
        backward_factor=2.5,
        semantics=_FK,
    ),
    OpSpec(
        "spd_router",
        "2.2",
        "structure / pseudo-randomness decomposition",
        (Port("x", "float", rank=3),),
        (
            Hyper("struct_dim", "int", _HALF_D, check="pos"),
            Hyper("pseudo_dim", "int", _HALF_D, check="pos"),
            Hyper("gate", "choice", "sigmoid", choices=("sigmoid", "softmax")),
            Hyper("gate_noise", "bool", False),
            Hyper("sep_weight", "float", 0.1, check="nonneg"),
        ),
        (
            OutSpec("y"),
            OutSpec("x_struct"),
            OutSpec("x_pseudo"),
            OutSpec("loss", "separation loss (weighted by sep_weight)", is_loss=True),
        ),
        _spd_infer,
        _spd_params,
        category="block",
        noise=lambda hp: bool(hp["gate_noise"]),
        kernel="spd_router",
        flops=_spd_flops,
        semantics=_SPD,
    ),
    OpSpec(
        "verifier_stack",
        "2.3",
        "differentiable stack driven by the sequence",
        (Port("h", "float", rank=3),),
        (
            Hyper("stack", "int", 16, check="pos"),
            Hyper("elem", "int", _HALF_D, check="pos"),
            Hyper("signals", "int", 1, check="pos"),
            Hyper("read", "choice", "top", choices=("top", "mean")),
            Hyper("op_noise", "bool", False),
            Hyper("penalty", "float", 1.0, check="nonneg"),
        ),
        (
            OutSpec("read"),
            OutSpec("signals"),
            OutSpec("pointer"),
            OutSpec("loss", "under/overflow penalty (weighted by penalty)", is_loss=True),
        ),
        _stack_infer,
        _stack_params,
        category="mixing",
        causal=lambda hp: True,
        noise=lambda hp: bool(hp["op_noise"]),
        kernel="verifier_stack",
        flops=_stack_flops,
        semantics=_VERIFIER,
    ),
)
