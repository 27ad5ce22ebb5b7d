"""§1 primitives: linear, embeddings, norms, elementwise and arithmetic ops, softmax, the MLPs,
conv1d, rope, head views, concat, mean, cross_entropy.

Consumes the schema (`sparkc.ir.ops.schema`) and the elementwise specs
(`primitives_elementwise`: activations and arithmetic); produces `SPECS`, this family's op specs
in table order.
"""

from __future__ import annotations

from ..types import fmt_shape
from .primitives_elementwise import ACTIVATIONS, ARITHMETIC, act_hyper
from .schema import (
    CAUSAL,
    DocVariant,
    Hyper,
    Init,
    MaxLenRule,
    OpContext,
    OpSpec,
    OutSpec,
    PairRule,
    ParamSpec,
    Port,
    RangeRule,
    causal_hp,
    elementwise_flops,
    float_type,
    gemm_flops,
    head_width,
    linear_params,
    no_flops,
    same_as_x,
    seq_dims,
)

# §1 Primitives


def _linear_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank < 1:
        ctx.fail("x", "linear needs at least one dimension")
    return (float_type(t.shape[:-1] + (ctx.hp["out"],)),)


def _linear_params(ctx: OpContext):
    i, o = ctx.last("x"), ctx.hp["out"]
    if ctx.hp.get("tie"):
        # The weight belongs to the tied embedding; only the bias is this instance's own.
        return [ParamSpec("bias", (o,), Init("linear_bias"), fan_in=i)] if ctx.hp["bias"] else []
    return linear_params("", i, o, ctx.hp["bias"])


def _strip(ps: list[ParamSpec]) -> list[ParamSpec]:
    """`linear_params('')` gives '.weight'; a bare linear owns 'weight' and 'bias'."""
    return [
        ParamSpec(p.name.lstrip("."), p.shape, p.init, p.trainable, p.dtype, p.fan_in) for p in ps
    ]


def _embed_infer(ctx: OpContext):
    t = ctx.t("tokens")
    return (float_type(t.shape + (ctx.hp["dim"],)),)


def _pos_embed_infer(ctx: OpContext):
    seq_dims(ctx)
    return (ctx.t("x"),)


def _norm_params(bias: bool):
    def params(ctx: OpContext):
        d = ctx.last("x")
        ps = [ParamSpec("weight", (d,), Init("ones"))]
        if bias:
            ps.append(ParamSpec("bias", (d,), Init("zeros")))
        return ps

    return params


def _softmax_infer(ctx: OpContext):
    t = ctx.t("x")
    dim = ctx.hp["dim"]
    if not -t.rank <= dim < max(t.rank, 1):
        ctx.fail("dim", f"dim={dim} is out of range for a tensor of rank {t.rank}")
    return (t,)


def _mlp_params(ctx: OpContext):
    d, h = ctx.last("x"), ctx.hp["hidden"]
    return linear_params("fc1", d, h) + linear_params("fc2", h, d)


def _swiglu_params(ctx: OpContext):
    d, h = ctx.last("x"), ctx.hp["hidden"]
    return (
        linear_params("w_gate", d, h, bias=False)
        + linear_params("w_up", d, h, bias=False)
        + linear_params("w_down", h, d, bias=False)
    )


def _conv_validate(ctx: OpContext):
    if not ctx.hp["causal"] and ctx.hp["kernel"] % 2 == 0:
        ctx.fail(
            "kernel",
            f"a non-causal conv1d needs an odd kernel, got {ctx.hp['kernel']}",
            help="use an odd kernel (symmetric padding) or causal=true",
            code="E0304",
        )


def _conv_params(ctx: OpContext):
    d, k = ctx.last("x"), ctx.hp["kernel"]
    return [
        ParamSpec("weight", (d, 1, k), Init("linear_weight"), fan_in=k),
        ParamSpec("bias", (d,), Init("linear_bias"), fan_in=k),
    ]


def _rope_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank != 4:
        ctx.fail(
            "x",
            f"rope needs [B, N, H, d], got {fmt_shape(t.shape)}",
            help="split the heads first: rope(split_heads(x, heads=H))",
        )
    if ctx.last("x") % 2:
        ctx.fail("x", f"rope needs an even head width, got d={ctx.last('x')}", code="E0304")
    return (t,)


def _split_heads_infer(ctx: OpContext):
    b, n, d = seq_dims(ctx)
    hd = head_width(ctx, d)
    return (float_type((b, n, ctx.hp["heads"], hd)),)


def _merge_heads_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank != 4 or not isinstance(t.shape[2], int) or not isinstance(t.shape[3], int):
        ctx.fail(
            "x", f"merge_heads needs [B, N, H, d] with constant H and d, got {fmt_shape(t.shape)}"
        )
    return (float_type((t.shape[0], t.shape[1], t.shape[2] * t.shape[3])),)


def _concat_infer(ctx: OpContext):
    a, b = ctx.t("a"), ctx.t("b")
    if a.rank != b.rank or a.shape[:-1] != b.shape[:-1]:
        ctx.fail(
            "b",
            f"concat needs equal leading dimensions, got {fmt_shape(a.shape)} and {fmt_shape(b.shape)}",
        )
    la, lb = ctx.last("a"), ctx.last("b")
    return (float_type(a.shape[:-1] + (la + lb,)),)


def _ce_infer(ctx: OpContext):
    lg, tg = ctx.t("logits"), ctx.t("targets")
    if lg.rank < 2 or tg.shape != lg.shape[:-1]:
        ctx.fail(
            "targets",
            f"targets must have the shape of logits without the last dimension: "
            f"expected {fmt_shape(lg.shape[:-1])}, got {fmt_shape(tg.shape)}",
        )
    return (float_type(()),)


def _mean_infer(ctx: OpContext):
    return (float_type(()),)


# --------------------------------------------------------------------------------------------
# The table


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_LINEAR = """\
`y = x Wᵀ + b` over the last dimension of `x` (any number of leading dimensions). With
`bias=false` there is no `b`. With `tie=E` the weight is `E.weight` (`[vocab, dim]`) and the op
owns only its bias; see the conventions for the initialisation of a shared weight."""

_EMBED = """\
`y[..., :] = weight[tokens[...], :]`, a row gather. Ids must lie in `[0, vocab)`; an id outside
is an `InputError` on the host before anything runs, never a silent read of another row (inside
a CUDA-graph capture, which cannot synchronise, an out-of-range id reads a zero row and sets the
kernel's error flag instead). The weight is N(0, 1), or N(0, 1/dim) when a `linear` ties to it."""

_POS_EMBED = """\
`y[b, t, :] = x[b, t, :] + weight[t, :]` for `t = 0..N−1` (shifted by the cache length when
decoding). `N > max_len` is an `InputError`. The table is N(0, 0.02²)."""

_RMSNORM = """\
`y = x / sqrt(mean(x²) + eps) ⊙ weight`, the mean over the last dimension, computed in at least
float32."""

_LAYERNORM = """\
`y = (x − mean(x)) / sqrt(var(x) + eps) ⊙ weight + bias` over the last dimension, with the
biased variance: exactly `torch.nn.functional.layer_norm(x, (D,), weight, bias, eps)`."""

_SOFTMAX = """\
`y_i = exp(x_i − max x) / Σ_j exp(x_j − max x)` along dimension `dim` (negative values count
from the end), computed in at least float32."""

_MLP = """\
`fc2(act(fc1 x))` with `fc1 = Linear(D→hidden)` and `fc2 = Linear(hidden→D)`; `act` is one of
relu, gelu (erf form), silu, sigmoid, tanh."""

_SWIGLU = """\
`w_down(silu(w_gate x) ⊙ w_up x)` with `w_gate, w_up = Linear(D→hidden, bias=False)` and
`w_down = Linear(hidden→D, bias=False)`."""

_CONV1D = """\
A depthwise convolution over the sequence (each channel has its own filter), weight
`[D, 1, kernel]` and bias `[D]` initialised like a depthwise `torch.nn.Conv1d`.
Causal: the input is padded with `kernel − 1` zeros on the left, so
`y_t = b + Σ_{j<kernel} w[j] · x_{t−kernel+1+j}` (positions before 0 read 0). Non-causal: the
padding is `(kernel − 1)/2` on each side and `kernel` must be odd."""

_ROPE = """\
Rotary position embedding in the rotate-half layout on `[B, N, H, d]` (`d` even). For
`i < d/2`, `θ_i = base^(−2i/d)`; at position `t` (offset by the cache length when decoding) the
pair `(x_i, x_{i+d/2})` becomes `(x_i cos tθ_i − x_{i+d/2} sin tθ_i, x_i sin tθ_i +
x_{i+d/2} cos tθ_i)`. The angles are computed in float64."""

_SPLIT = "`[B, N, D] → [B, N, heads, D/heads]`, a reshape of the last dimension (no copy)."

_MERGE = "`[B, N, H, d] → [B, N, H·d]`, the inverse of `split_heads` (no copy)."

_CONCAT = "Concatenation of `a` and `b` along the last dimension; the other dimensions must match."

_MEAN = "The mean of all elements, a 0-d tensor (useful to turn a tensor into a loss term)."

_CROSS_ENTROPY = """\
`loss = mean over positions with targets ≠ ignore_index of (logsumexp(logits_p) −
logits_p[target_p])`, computed in at least float32; `0` (with a zero gradient) when every
position is ignored. `logits` is `[..., V]` and `targets` the matching integer tensor; a target
outside `[0, V)` that is not `ignore_index` is an `InputError`. When `logits` comes straight
from a `linear` (and nothing else reads it), the compiler fuses the two so that the `[B, N, V]`
logits are never stored."""


SPECS: tuple[OpSpec, ...] = (
    # §1 primitives --------------------------------------------------------------------------
    OpSpec(
        "linear",
        "1",
        "x Wᵀ + b",
        (Port("x", "float", min_rank=1),),
        (
            Hyper("out", "int", check="pos", doc="output features"),
            Hyper("bias", "bool", True, doc="add a bias"),
            Hyper(
                "tie",
                "ref",
                None,
                nullable=True,
                doc="name of an `embed` instance whose weight [vocab, dim] this layer reuses "
                "(a tied LM head: out = vocab, in = dim)",
            ),
        ),
        (OutSpec("y"),),
        _linear_infer,
        lambda ctx: _strip(_linear_params(ctx)),
        kernel="gemm",
        gemm_tail=True,
        pairs=(PairRule("cross_entropy", "linear_ce", port=0),),
        flops=lambda c: gemm_flops(c, (c.width(), c.hp["out"])),
        doc_variants=(
            DocVariant("bias=false", (("bias", False),)),
            DocVariant("tie=<embed>", (("tie", "tok"),)),
        ),
        semantics=_LINEAR,
    ),
    OpSpec(
        "embed",
        "1",
        "row gather from a [vocab, dim] table; out-of-range ids are a runtime error",
        (Port("tokens", "int"),),
        (Hyper("vocab", "int", check="pos"), Hyper("dim", "int", check="pos")),
        (OutSpec("y"),),
        _embed_infer,
        lambda ctx: [ParamSpec("weight", (ctx.hp["vocab"], ctx.hp["dim"]), Init("normal", (1.0,)))],
        runtime_rules=lambda hp: (
            RangeRule("tokens", "token ids (vocab={high})", 0, int(hp["vocab"])),
        ),
        kernel="embed",
        pairs=(PairRule("pos_embed", "embed_pos"),),
        flops=no_flops,
        semantics=_EMBED,
    ),
    OpSpec(
        "pos_embed",
        "1",
        "x + weight[0:N]; N > max_len is a runtime error",
        (Port("x", "float", rank=3),),
        (Hyper("max_len", "int", check="pos"),),
        (OutSpec("y"),),
        _pos_embed_infer,
        lambda ctx: [
            ParamSpec("weight", (ctx.hp["max_len"], ctx.last("x")), Init("normal", (0.02,)))
        ],
        runtime_rules=lambda hp: (MaxLenRule("x", int(hp["max_len"])),),
        kernel="pos_embed",
        flops=elementwise_flops(1),
        semantics=_POS_EMBED,
    ),
    OpSpec(
        "rmsnorm",
        "1",
        "x / sqrt(mean(x²) + eps) ⊙ weight",
        (Port("x", "float", min_rank=1),),
        (Hyper("eps", "float", 1e-6, check="pos"),),
        (OutSpec("y"),),
        same_as_x,
        _norm_params(False),
        category="reduction",
        kernel="rownorm",
        flops=elementwise_flops(4),
        semantics=_RMSNORM,
    ),
    OpSpec(
        "layernorm",
        "1",
        "torch.nn.functional.layer_norm over the last dimension",
        (Port("x", "float", min_rank=1),),
        (Hyper("eps", "float", 1e-5, check="pos"),),
        (OutSpec("y"),),
        same_as_x,
        _norm_params(True),
        category="reduction",
        kernel="rownorm",
        flops=elementwise_flops(7),
        semantics=_LAYERNORM,
    ),
    *ACTIVATIONS,
    *ARITHMETIC,
    OpSpec(
        "softmax",
        "1",
        "softmax over one dimension",
        (Port("x", "float", min_rank=1),),
        (Hyper("dim", "int", -1),),
        (OutSpec("y"),),
        _softmax_infer,
        category="reduction",
        kernel="softmax",
        flops=elementwise_flops(5),
        semantics=_SOFTMAX,
    ),
    OpSpec(
        "mlp",
        "1",
        "fc2(act(fc1 x))",
        (Port("x", "float", min_rank=1),),
        (Hyper("hidden", "int", check="pos"), act_hyper()),
        (OutSpec("y"),),
        same_as_x,
        _mlp_params,
        kernel="mlp",
        gemm_tail=True,
        flops=lambda c: gemm_flops(c, (c.width(), c.hp["hidden"]), (c.hp["hidden"], c.width())),
        semantics=_MLP,
    ),
    OpSpec(
        "swiglu",
        "1",
        "w_down(silu(w_gate x) ⊙ w_up x)",
        (Port("x", "float", min_rank=1),),
        (Hyper("hidden", "int", check="pos"),),
        (OutSpec("y"),),
        same_as_x,
        _swiglu_params,
        kernel="swiglu",
        gemm_tail=True,
        flops=lambda c: gemm_flops(
            c, (c.width(), c.hp["hidden"]), (c.width(), c.hp["hidden"]), (c.hp["hidden"], c.width())
        ),
        semantics=_SWIGLU,
    ),
    OpSpec(
        "conv1d",
        "1",
        "depthwise convolution over N (causal: left padding kernel-1)",
        (Port("x", "float", rank=3),),
        (Hyper("kernel", "int", 3, check="pos"), CAUSAL),
        (OutSpec("y"),),
        lambda ctx: (seq_dims(ctx), ctx.t("x"))[1:],
        _conv_params,
        category="mixing",
        causal=causal_hp,
        validate=_conv_validate,
        kernel="conv1d",
        flops=lambda c: 2.0 * c.out_size() * c.hp["kernel"],
        semantics=_CONV1D,
    ),
    OpSpec(
        "rope",
        "1",
        "rotate-half rotary position embedding of [B, N, H, d]",
        (Port("x", "float", rank=4),),
        (Hyper("base", "float", 10000.0, check="pos"),),
        (OutSpec("y"),),
        _rope_infer,
        kernel="rope",
        flops=elementwise_flops(6),
        semantics=_ROPE,
    ),
    OpSpec(
        "split_heads",
        "1",
        "[B, N, D] → [B, N, heads, D/heads] (a view)",
        (Port("x", "float", rank=3),),
        (Hyper("heads", "int", check="pos"),),
        (OutSpec("y"),),
        _split_heads_infer,
        kernel="view",
        flops=no_flops,
        semantics=_SPLIT,
    ),
    OpSpec(
        "merge_heads",
        "1",
        "[B, N, H, d] → [B, N, H·d] (a view)",
        (Port("x", "float", rank=4),),
        (),
        (OutSpec("y"),),
        _merge_heads_infer,
        kernel="view",
        flops=no_flops,
        semantics=_MERGE,
    ),
    OpSpec(
        "concat",
        "1",
        "concatenation along the last dimension",
        (Port("a", "float", min_rank=1), Port("b", "float", min_rank=1)),
        (),
        (OutSpec("y"),),
        _concat_infer,
        kernel="concat",
        flops=no_flops,
        semantics=_CONCAT,
    ),
    OpSpec(
        "mean",
        "1",
        "mean of all elements (a 0-d tensor)",
        (Port("x", "float"),),
        (),
        (OutSpec("y"),),
        _mean_infer,
        category="reduction",
        decodable=lambda hp: False,  # one value over every position
        kernel="mean",
        flops=lambda c: float(c.size("x")),
        semantics=_MEAN,
    ),
    OpSpec(
        "cross_entropy",
        "1",
        "mean token cross-entropy over non-ignored positions (0 when all are ignored)",
        (Port("logits", "float", min_rank=2), Port("targets", "int")),
        (Hyper("ignore_index", "int", -100),),
        (OutSpec("loss"),),
        _ce_infer,
        category="reduction",
        runtime_rules=lambda hp: (
            RangeRule(
                "targets",
                "targets (V={high})",
                0,
                ("dim", "logits", -1),
                int(hp["ignore_index"]),
                "ignore_index",
            ),
        ),
        kernel="cross_entropy",
        flops=lambda c: 5.0 * c.size("logits"),
        semantics=_CROSS_ENTROPY,
    ),
)
