"""The op table: every built-in op of the language and of the IR, as data.

One `OpSpec` per op (SPEC.md is the contract): its tensor inputs, hyperparameters (type, default,
range), outputs and their shape rule, the parameters it owns (names exactly as in SPEC, shapes,
initialisers), its category and whether it mixes the sequence causally. The checker, the
lowering, the IR verifier, `sparkc ops`, `docs/ops.md` and the code generators all read this one
table; nothing else knows an op's signature.

Shape rules receive an `OpContext` and either return the output types or call `ctx.fail(...)`
with the name of the argument at fault, so that the front end can point at it.

This module imports nothing heavy (no torch, no lark): it is data plus small functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .types import Dim, DType, TensorType, broadcast, fmt_shape, promote

# --------------------------------------------------------------------------------------------
# Schema


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Derived:
    """A default computed from the input shapes, e.g. `D/2` (written as `text` in docs)."""

    text: str
    fn: Callable[[OpContext], Any]


@dataclass(frozen=True)
class Hyper:
    """A compile-time hyperparameter of an op.

    type: 'int' | 'float' | 'bool' | 'choice' | 'ref' (the name of another op instance) |
    'basis' (a `basis(...)` spec or none).
    check: 'pos' (> 0), 'nonneg' (>= 0), 'open01' (0 < v < 1), 'prob' (0 <= v <= 1), or ''.
    """

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    check: str = ""
    doc: str = ""
    nullable: bool = False  # `none` is accepted (e.g. basis=none, tie=none)


@dataclass(frozen=True)
class Port:
    """A tensor input. dtype: 'float' | 'int' | 'bool' | 'any'. rank: exact rank or None."""

    name: str
    dtype: str = "float"
    rank: int | None = None
    min_rank: int = 0
    optional: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Init:
    """How a parameter or buffer is initialised. Interpreted by runtime.init (torch side).

    kind: 'linear_weight' (nn.Linear default: kaiming-uniform a=sqrt(5) -> U(-1/sqrt(fan_in), +))
          'linear_bias'   (U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
          'normal'        (args: std)            'trunc_normal' (args: std, bound)
          'ones' 'zeros'  'const' (args: value)  'randint' (args: high, seed; int64 buffer)
    """

    kind: str
    args: tuple[float | int, ...] = ()

    def __str__(self) -> str:
        if not self.args:
            return self.kind
        return f"{self.kind}({', '.join(_fmt_num(a) for a in self.args)})"


def _fmt_num(v: float) -> str:
    if isinstance(v, float):
        return repr(round(v, 12))
    return str(v)


def tied_embed_init(dim: int) -> Init:
    """The initialiser of an `embed` weight `[vocab, dim]` that a `linear(tie=...)` also uses as
    its LM head (the lowering applies it, the verifier expects it): N(0, 1/dim) instead of
    N(0, 1), so the head's first logits have unit variance and the first loss is about
    ln(vocab) + 1/2. Why: docs/ops_decisions.md, "Tied embedding initialisation"."""
    return Init("normal", (1.0 / math.sqrt(dim),))


@dataclass(frozen=True)
class ParamSpec:
    """A parameter (trainable=True) or buffer owned by an op instance, named as in SPEC."""

    name: str
    shape: tuple[int, ...]
    init: Init
    trainable: bool = True
    dtype: DType = DType.FLOAT
    fan_in: int = 0  # for linear inits

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape else 1


@dataclass(frozen=True)
class OutSpec:
    name: str
    doc: str = ""
    is_loss: bool = False  # an auxiliary loss, summed into the module's `aux_loss`


class ShapeFailure(Exception):
    """Raised by a shape rule; the checker turns it into a Diagnostic at `arg`'s span."""

    def __init__(self, arg: str | None, message: str, help: str = "", code: str = "E0301"):
        super().__init__(message)
        self.arg = arg
        self.message = message
        self.help = help
        self.code = code


@dataclass
class OpContext:
    """What a shape/param rule sees: input types by port name and hyperparameter values."""

    op: str
    inputs: dict[str, TensorType]
    hp: dict[str, Any]

    def fail(self, arg: str | None, message: str, help: str = "", code: str = "E0301"):
        raise ShapeFailure(arg, message, help, code)

    def t(self, port: str) -> TensorType:
        return self.inputs[port]

    def last(self, port: str = "x") -> int:
        """The feature width (last dim) of an input, which must be a known integer."""
        dim = self.inputs[port].shape[-1]
        if not isinstance(dim, int):
            self.fail(port, f"the last dimension of '{port}' must be a constant, got '{dim}'")
        return dim


@dataclass(frozen=True)
class RangeRule:
    """A run-time rule on an integer port: its values lie in `[low, high)` or equal `allow`.
    `high` is an int, None (no upper bound) or `("dim", port, axis)` (a dim of another port);
    `what` is formatted with `high=` the resolved bound."""

    port: str
    what: str
    low: int
    high: int | None | tuple[str, str, int]
    allow: int | None = None
    allow_name: str | None = None


@dataclass(frozen=True)
class MaxLenRule:
    """A run-time rule on a port's sequence dim (axis 1): at most `max_len`."""

    port: str
    max_len: int


@dataclass(frozen=True)
class OpSpec:
    name: str
    section: str  # SPEC section, e.g. '1', '2.1'
    summary: str
    inputs: tuple[Port, ...]
    hypers: tuple[Hyper, ...]
    outputs: tuple[OutSpec, ...]
    infer: Callable[[OpContext], tuple[TensorType, ...]]
    params: Callable[[OpContext], list[ParamSpec]] = lambda ctx: []
    category: str = (
        "primitive"  # primitive | elementwise | arith | reduction | mixing | block | config
    )
    causal: Callable[[Mapping[str, Any]], bool | None] = lambda hp: None  # None: not a mixer
    decodable: Callable[[Mapping[str, Any]], bool] = lambda hp: True
    validate: Callable[[OpContext], None] = lambda ctx: None
    callable: bool = True  # False for internal ops spelt with operators (+, -, *, /)
    noise: Callable[[Mapping[str, Any]], bool] = lambda hp: False  # draws training noise
    # Run-time rules on the op's inputs, checked on the model input that feeds the port
    # (sparkc/codegen/input_rules.py); from the op's hyperparameters.
    runtime_rules: Callable[[Mapping[str, Any]], tuple[RangeRule | MaxLenRule, ...]] = lambda hp: ()

    def hyper(self, name: str) -> Hyper | None:
        for h in self.hypers:  # a plain loop: called per node by the verifier and codegen
            if h.name == name:
                return h
        return None

    def port(self, name: str) -> Port | None:
        for p in self.inputs:
            if p.name == name:
                return p
        return None

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def loss_outputs(self) -> tuple[int, ...]:
        return tuple(i for i, o in enumerate(self.outputs) if o.is_loss)

    def signature(self) -> str:
        parts = [p.name + ("?" if p.optional else "") for p in self.inputs if not p.optional]
        for p in self.inputs:
            if p.optional:
                parts.append(f"{p.name}=none")
        for h in self.hypers:
            if h.default is REQUIRED:
                parts.append(h.name)
            else:
                parts.append(f"{h.name}={default_text(h)}")
        return f"{self.name}({', '.join(parts)})"


def default_text(h: Hyper) -> str:
    d = h.default
    if isinstance(d, Derived):
        return d.text
    if d is None:
        return "none"
    if isinstance(d, bool):
        return "true" if d else "false"
    return str(d)


# --------------------------------------------------------------------------------------------
# Small builders shared by the rules


def linear_params(prefix: str, i: int, o: int, bias: bool = True) -> list[ParamSpec]:
    ps = [ParamSpec(f"{prefix}.weight", (o, i), Init("linear_weight"), fan_in=i)]
    if bias:
        ps.append(ParamSpec(f"{prefix}.bias", (o,), Init("linear_bias"), fan_in=i))
    return ps


def layernorm_params(prefix: str, d: int) -> list[ParamSpec]:
    return [
        ParamSpec(f"{prefix}.weight", (d,), Init("ones")),
        ParamSpec(f"{prefix}.bias", (d,), Init("zeros")),
    ]


def _f(shape: tuple[Dim, ...]) -> TensorType:
    return TensorType(DType.FLOAT, tuple(shape))


def _same(ctx: OpContext) -> tuple[TensorType, ...]:
    return (ctx.t("x"),)


def _seq(ctx: OpContext, port: str = "x") -> tuple[Dim, Dim, int]:
    """Check a [B, N, D] activation and return its dims."""
    t = ctx.t(port)
    if t.rank != 3:
        ctx.fail(port, f"'{port}' must be [B, N, D], got {fmt_shape(t.shape)}")
    return t.shape[0], t.shape[1], ctx.last(port)


def _heads(ctx: OpContext, d_model: int, heads: str = "heads") -> int:
    h = ctx.hp[heads]
    if d_model % h:
        ctx.fail(
            heads,
            f"{heads}={h} does not divide the model width D={d_model}",
            help=f"choose {heads} among the divisors of {d_model}: "
            + ", ".join(str(k) for k in range(1, min(d_model, 64) + 1) if d_model % k == 0),
            code="E0304",
        )
    return d_model // h


def _gqa(ctx: OpContext, d_model: int) -> tuple[int, int]:
    d = _heads(ctx, d_model)
    h, kv = ctx.hp["heads"], ctx.hp.get("kv_heads") or ctx.hp["heads"]
    if kv > h or h % kv:
        ctx.fail("kv_heads", f"kv_heads={kv} must divide heads={h}", code="E0304")
    return d, kv


def _rope_even(ctx: OpContext, d: int, flag: str = "rope") -> None:
    if ctx.hp.get(flag) and d % 2:
        ctx.fail(flag, f"RoPE needs an even head width, got d={d}", code="E0304")


ACTS = ("relu", "gelu", "silu", "sigmoid", "tanh")

_BOOL_CAUSAL = Hyper("causal", "bool", True, doc="output t depends on inputs <= t only")


def _causal(hp: Mapping[str, Any]) -> bool:
    return bool(hp.get("causal", True))


# --------------------------------------------------------------------------------------------
# §1 Primitives


def _linear_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank < 1:
        ctx.fail("x", "linear needs at least one dimension")
    return (_f(t.shape[:-1] + (ctx.hp["out"],)),)


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
    return (_f(t.shape + (ctx.hp["dim"],)),)


def _pos_embed_infer(ctx: OpContext):
    _seq(ctx)
    return (ctx.t("x"),)


def _norm_params(bias: bool):
    def params(ctx: OpContext):
        d = ctx.last("x")
        ps = [ParamSpec("weight", (d,), Init("ones"))]
        if bias:
            ps.append(ParamSpec("bias", (d,), Init("zeros")))
        return ps

    return params


def _binary_infer(ctx: OpContext):
    a, b = ctx.t("a"), ctx.t("b")
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        ctx.fail(
            None,
            f"shapes {fmt_shape(a.shape)} and {fmt_shape(b.shape)} do not broadcast",
            help="elementwise operands must have equal dimensions, or 1, from the right",
        )
    if ctx.op == "div":  # true division, as in PyTorch: ints and bools give floats
        return (TensorType(DType.FLOAT, shape),)
    if ctx.op == "sub":
        for port, t in (("a", a), ("b", b)):
            if t.dtype is DType.BOOL:
                _no_bool_minus(ctx, port, t, "subtract")
    return (TensorType(promote(a, b), shape),)


def _neg_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.dtype is DType.BOOL:
        _no_bool_minus(ctx, "x", t, "negate")
    return (t,)


def _no_bool_minus(ctx: OpContext, port: str, t: TensorType, verb: str) -> None:
    """`-` on a bool tensor is refused, as in PyTorch (where it raises at run time)."""
    ctx.fail(
        port,
        f"cannot {verb} a bool tensor ({t})",
        help="'-' is not defined on bools (as in PyTorch); turn the mask into numbers first: "
        "m * 1 gives integers, m * 1.0 floats",
        code="E0232",
    )


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
    b, n, d = _seq(ctx)
    hd = _heads(ctx, d)
    return (_f((b, n, ctx.hp["heads"], hd)),)


def _merge_heads_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank != 4 or not isinstance(t.shape[2], int) or not isinstance(t.shape[3], int):
        ctx.fail(
            "x", f"merge_heads needs [B, N, H, d] with constant H and d, got {fmt_shape(t.shape)}"
        )
    return (_f((t.shape[0], t.shape[1], t.shape[2] * t.shape[3])),)


def _concat_infer(ctx: OpContext):
    a, b = ctx.t("a"), ctx.t("b")
    if a.rank != b.rank or a.shape[:-1] != b.shape[:-1]:
        ctx.fail(
            "b",
            f"concat needs equal leading dimensions, got {fmt_shape(a.shape)} and {fmt_shape(b.shape)}",
        )
    la, lb = ctx.last("a"), ctx.last("b")
    return (_f(a.shape[:-1] + (la + lb,)),)


def _ce_infer(ctx: OpContext):
    lg, tg = ctx.t("logits"), ctx.t("targets")
    if lg.rank < 2 or tg.shape != lg.shape[:-1]:
        ctx.fail(
            "targets",
            f"targets must have the shape of logits without the last dimension: "
            f"expected {fmt_shape(lg.shape[:-1])}, got {fmt_shape(tg.shape)}",
        )
    return (_f(()),)


def _mean_infer(ctx: OpContext):
    return (_f(()),)


# --------------------------------------------------------------------------------------------
# §1.1 attention and §5.5 basis


def _attention_infer(ctx: OpContext):
    _b, _n, d_model = _seq(ctx)
    d, _ = _gqa(ctx, d_model)
    _rope_even(ctx, d)
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


# --------------------------------------------------------------------------------------------
# §2 SPaR-K


def _fk_infer(ctx: OpContext):
    _b, _n, d_model = _seq(ctx)
    _heads(ctx, d_model)
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
    b, n, d = _seq(ctx)
    if d < 4:
        ctx.fail("x", f"spd_router needs D >= 4, got D={d}", code="E0304")
    ds, dp = ctx.hp["struct_dim"], ctx.hp["pseudo_dim"]
    return (_f((b, n, d)), _f((b, n, ds)), _f((b, n, dp)), _f(()))


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
    b, n, d = _seq(ctx, "h")
    if d < 4:
        ctx.fail("h", f"verifier_stack needs D >= 4, got D={d}", code="E0304")
    return (_f((b, n, ctx.hp["elem"])), _f((b, n, ctx.hp["signals"])), _f((b, n)), _f(()))


def _stack_params(ctx: OpContext):
    d, e = ctx.last("h"), ctx.hp["elem"]
    return (
        linear_params("ctrl1", d, d // 2)
        + linear_params("ctrl2", d // 2, 3)
        + linear_params("enc", d, e)
        + linear_params("head1", d + e, d // 4)
        + linear_params("head2", d // 4, ctx.hp["signals"])
    )


# --------------------------------------------------------------------------------------------
# §3 SplatFlow


def _splat_infer(ctx: OpContext):
    _b, _n, d = _seq(ctx)
    _heads(ctx, d)
    return (ctx.t("x"),)


def _splat_params(ctx: OpContext):
    d_model = ctx.last("x")
    h, k = ctx.hp["heads"], ctx.hp["splats"]
    d = d_model // h
    return (
        linear_params("wa", d_model, d_model, bias=False)
        + linear_params("wv", d_model, d_model, bias=False)
        + linear_params("wo", d_model, d_model, bias=False)
        + [
            ParamSpec("centers", (h, k, d), Init("normal", (1.0,))),
            ParamSpec("log_scale", (h, k), Init("const", (0.5 * math.log(d),))),
            ParamSpec("log_amp", (h, k), Init("zeros")),
        ]
    )


# The stencil kernels unroll one tap per window step (kernels.py grows ~19 KB per tap).
TRAJECTORY_MAX_WINDOW = 64


def _traj_validate(ctx: OpContext):
    if ctx.hp["window"] < 2:
        ctx.fail(
            "window",
            f"'window' must be >= 2, got {ctx.hp['window']} (in trajectory)",
            help="the trajectory averages at least two steps: window=2 or more",
            code="E0302",
        )
    if ctx.hp["window"] > TRAJECTORY_MAX_WINDOW:
        ctx.fail(
            "window",
            f"'window' must be <= {TRAJECTORY_MAX_WINDOW}, got {ctx.hp['window']} (in trajectory)",
            help=f"the kernels unroll one tap per step of the window: window={TRAJECTORY_MAX_WINDOW} "
            "or less",
            code="E0302",
        )


# --------------------------------------------------------------------------------------------
# §4 HSPMN


def _router_infer(ctx: OpContext):
    b, n, _d = _seq(ctx)
    return (TensorType(DType.BOOL, (b, n)), _f((b, n)), _f(()))


def _want(names: tuple[str, ...], dims: tuple[Dim, ...]) -> str:
    """'[B, N]', or '[B, N] = [2, N]' when some dims are known numbers."""
    sym = fmt_shape(names)
    return sym if tuple(names) == tuple(dims) else f"{sym} = {fmt_shape(dims)}"


def _sqdk_infer(ctx: OpContext):
    b, n, d_model = _seq(ctx)
    g = ctx.t("gate")
    if g.shape != (b, n):
        ctx.fail(
            "gate",
            f"gate must be {_want(('B', 'N'), (b, n))} like x, got {fmt_shape(g.shape)}",
            help="pass token_router(x).gate",
        )
    d, _ = _gqa(ctx, d_model)
    _rope_even(ctx, d)
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


# --------------------------------------------------------------------------------------------
# §5 SPARK procedural


def _tape_infer(ctx: OpContext):
    o, a, h = ctx.t("ops"), ctx.t("args"), ctx.t("has_arg")
    if o.rank != 2:
        ctx.fail("ops", f"ops must be int [B, T], got {fmt_shape(o.shape)}")
    b, t = o.shape
    if a.rank != 3 or a.shape[:2] != (b, t):
        ctx.fail(
            "args", f"args must be {_want(('B', 'T', 'D'), (b, t, 'D'))}, got {fmt_shape(a.shape)}"
        )
    if h.shape != (b, t):
        ctx.fail(
            "has_arg", f"has_arg must be bool {_want(('B', 'T'), (b, t))}, got {fmt_shape(h.shape)}"
        )
    d = ctx.last("args")
    i32 = DType.I32
    return (
        _f((b, d)),
        TensorType(i32, (b,)),
        TensorType(i32, (b,)),
        TensorType(i32, (b,)),
        _f((b, t, d)),
        TensorType(i32, (b, t)),
    )


def _routed_validate(ctx: OpContext):
    hp = ctx.hp
    if hp["hidden"] % hp["groups"]:
        ctx.fail("groups", f"groups={hp['groups']} must divide hidden={hp['hidden']}", code="E0304")
    if hp["active"] > hp["groups"]:
        ctx.fail("active", f"active={hp['active']} exceeds groups={hp['groups']}", code="E0302")


def _routed_infer(ctx: OpContext):
    b, n, _d = _seq(ctx)
    if ctx.hp["route"] == "hash":
        tok = ctx.inputs.get("tokens")
        if tok is None:
            ctx.fail(
                None,
                "route=hash needs the token ids: pass tokens=<int [B, N] tensor>",
                code="E0305",
            )
        if tok.shape != (b, n):
            ctx.fail(
                "tokens",
                f"tokens must be int {_want(('B', 'N'), (b, n))}, got {fmt_shape(tok.shape)}",
            )
    return (ctx.t("x"),)


def _routed_params(ctx: OpContext):
    d, h = ctx.last("x"), ctx.hp["hidden"]
    ps = linear_params("fc1", d, h) + linear_params("fc2", h, d)
    if ctx.hp["route"] == "learned":
        ps += linear_params("gate", d, ctx.hp["groups"])
    return ps


def _linear_like_infer(ctx: OpContext):
    t = ctx.t("x")
    if t.rank < 1:
        ctx.fail("x", "needs at least one dimension")
    ctx.last("x")
    return (_f(t.shape[:-1] + (ctx.hp["out"],)),)


def _demopack_params(ctx: OpContext):
    i, o, hp = ctx.last("x"), ctx.hp["out"], ctx.hp
    return [
        ParamSpec(
            "codebook",
            (hp["codewords"], i),
            Init("trunc_normal", (0.02, 0.04)),
            trainable=bool(hp["learnable"]),
        ),
        ParamSpec("scale", (o,), Init("ones")),
        ParamSpec("bias", (o,), Init("zeros")),
        ParamSpec(
            "index",
            (o, hp["per_row"]),
            Init("randint", (hp["codewords"], hp["seed"])),
            trainable=False,
            dtype=DType.I64,
        ),
    ]


def _lora_infer(ctx: OpContext):
    t, m = ctx.t("x"), ctx.t("meta")
    if t.rank != 3:
        ctx.fail("x", f"x must be [B, N, in], got {fmt_shape(t.shape)}")
    if m.rank != 2 or m.shape[0] != t.shape[0]:
        ctx.fail("meta", f"meta must be [B, M] with B = {t.shape[0]}, got {fmt_shape(m.shape)}")
    ctx.last("meta")
    return _linear_like_infer(ctx)


def _lora_params(ctx: OpContext):
    i, o, m = ctx.last("x"), ctx.hp["out"], ctx.last("meta")
    r, g = ctx.hp["rank"], ctx.hp["gen_dim"]
    gen_b = [
        ParamSpec("gen_b.weight", (o * r, g), Init("zeros")),
        ParamSpec("gen_b.bias", (o * r,), Init("zeros")),
    ]
    return (
        linear_params("base", i, o)
        + linear_params("gen1", m, g)
        + linear_params("gen2", g, g)
        + linear_params("gen_a", g, r * i)
        + gen_b
    )


# --------------------------------------------------------------------------------------------
# The table


def _act_hyper(default: str = "gelu") -> Hyper:
    return Hyper("act", "choice", default, choices=ACTS, doc="activation")


def _unary(name: str, summary: str) -> OpSpec:
    return OpSpec(
        name,
        "1",
        summary,
        (Port("x", "float"),),
        (),
        (OutSpec("y"),),
        _same,
        category="elementwise",
    )


def _binary(name: str, symbol: str) -> OpSpec:
    return OpSpec(
        name,
        "1",
        f"elementwise a {symbol} b with broadcasting",
        (Port("a", "any"), Port("b", "any")),
        (),
        (OutSpec("y"),),
        _binary_infer,
        category="arith",
        callable=False,
    )


_HALF_D = Derived("D/2", lambda ctx: ctx.last(ctx_port(ctx)) // 2)


def ctx_port(ctx: OpContext) -> str:
    return "h" if "h" in ctx.inputs else "x"


_OPS: list[OpSpec] = [
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
    ),
    OpSpec(
        "rmsnorm",
        "1",
        "x / sqrt(mean(x²) + eps) ⊙ weight",
        (Port("x", "float", min_rank=1),),
        (Hyper("eps", "float", 1e-6, check="pos"),),
        (OutSpec("y"),),
        _same,
        _norm_params(False),
        category="reduction",
    ),
    OpSpec(
        "layernorm",
        "1",
        "torch.nn.functional.layer_norm over the last dimension",
        (Port("x", "float", min_rank=1),),
        (Hyper("eps", "float", 1e-5, check="pos"),),
        (OutSpec("y"),),
        _same,
        _norm_params(True),
        category="reduction",
    ),
    _unary("relu", "max(x, 0)"),
    _unary("gelu", "x·Φ(x) (erf form)"),
    _unary("silu", "x·σ(x)"),
    _unary("sigmoid", "σ(x)"),
    _unary("tanh", "tanh(x)"),
    OpSpec(
        "neg",
        "1",
        "-x",
        (Port("x", "any"),),
        (),
        (OutSpec("y"),),
        _neg_infer,
        category="arith",
        callable=False,
    ),
    _binary("add", "+"),
    _binary("sub", "-"),
    _binary("mul", "*"),
    _binary("div", "/"),
    OpSpec(
        "softmax",
        "1",
        "softmax over one dimension",
        (Port("x", "float", min_rank=1),),
        (Hyper("dim", "int", -1),),
        (OutSpec("y"),),
        _softmax_infer,
        category="reduction",
    ),
    OpSpec(
        "mlp",
        "1",
        "fc2(act(fc1 x))",
        (Port("x", "float", min_rank=1),),
        (Hyper("hidden", "int", check="pos"), _act_hyper()),
        (OutSpec("y"),),
        _same,
        _mlp_params,
    ),
    OpSpec(
        "swiglu",
        "1",
        "w_down(silu(w_gate x) ⊙ w_up x)",
        (Port("x", "float", min_rank=1),),
        (Hyper("hidden", "int", check="pos"),),
        (OutSpec("y"),),
        _same,
        _swiglu_params,
    ),
    OpSpec(
        "conv1d",
        "1",
        "depthwise convolution over N (causal: left padding kernel-1)",
        (Port("x", "float", rank=3),),
        (Hyper("kernel", "int", 3, check="pos"), _BOOL_CAUSAL),
        (OutSpec("y"),),
        lambda ctx: (_seq(ctx), ctx.t("x"))[1:],
        _conv_params,
        category="mixing",
        causal=_causal,
        validate=_conv_validate,
    ),
    OpSpec(
        "rope",
        "1",
        "rotate-half rotary position embedding of [B, N, H, d]",
        (Port("x", "float", rank=4),),
        (Hyper("base", "float", 10000.0, check="pos"),),
        (OutSpec("y"),),
        _rope_infer,
    ),
    OpSpec(
        "split_heads",
        "1",
        "[B, N, D] → [B, N, heads, D/heads] (a view)",
        (Port("x", "float", rank=3),),
        (Hyper("heads", "int", check="pos"),),
        (OutSpec("y"),),
        _split_heads_infer,
    ),
    OpSpec(
        "merge_heads",
        "1",
        "[B, N, H, d] → [B, N, H·d] (a view)",
        (Port("x", "float", rank=4),),
        (),
        (OutSpec("y"),),
        _merge_heads_infer,
    ),
    OpSpec(
        "concat",
        "1",
        "concatenation along the last dimension",
        (Port("a", "float", min_rank=1), Port("b", "float", min_rank=1)),
        (),
        (OutSpec("y"),),
        _concat_infer,
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
    ),
    # §1.1 / §5.5 attention ------------------------------------------------------------------
    OpSpec(
        "attention",
        "1.1",
        "multi-head attention with grouped-query heads",
        (Port("x", "float", rank=3),),
        (
            Hyper("heads", "int", check="pos"),
            Hyper("kv_heads", "int", Derived("heads", lambda ctx: ctx.hp["heads"]), check="pos"),
            _BOOL_CAUSAL,
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
        causal=_causal,
        runtime_rules=lambda hp: (
            (MaxLenRule("x", int(dict(hp["basis"])["max_len"])),) if hp.get("basis") else ()
        ),
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
    ),
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
            _BOOL_CAUSAL,
            Hyper("normalize", "bool", False),
        ),
        (OutSpec("y"),),
        _fk_infer,
        _fk_params,
        category="mixing",
        causal=_causal,
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
    ),
    # §3 SplatFlow -------------------------------------------------------------------------------
    OpSpec(
        "splat_attention",
        "3.1",
        "token mixing through K Gaussian splats, O(N·K)",
        (Port("x", "float", rank=3),),
        (
            Hyper("splats", "int", 16, check="pos"),
            Hyper("heads", "int", 1, check="pos"),
            _BOOL_CAUSAL,
            Hyper("normalize", "bool", True),
        ),
        (OutSpec("y"),),
        _splat_infer,
        _splat_params,
        category="mixing",
        causal=_causal,
    ),
    OpSpec(
        "trajectory",
        "3.2",
        "causal trajectory signal x + strength·T",
        (Port("x", "float", rank=3),),
        (Hyper("window", "int", 6, check="pos"),),
        (OutSpec("y"),),
        lambda ctx: (_seq(ctx), ctx.t("x"))[1:],
        lambda ctx: [ParamSpec("strength", (), Init("const", (0.2,)))],
        category="mixing",
        causal=lambda hp: True,
        validate=_traj_validate,
    ),
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
    ),
    # §5 SPARK procedural ------------------------------------------------------------------------
    OpSpec(
        "opcode_tape",
        "5.1",
        "batched stack machine over instruction tapes",
        (
            Port("ops", "int", rank=2),
            Port("args", "float", rank=3),
            Port("has_arg", "bool", rank=2),
        ),
        (Hyper("budget", "int", 32, check="pos"), Hyper("capacity", "int", 32, check="pos")),
        (
            OutSpec("top"),
            OutSpec("depth"),
            OutSpec("status"),
            OutSpec("steps"),
            OutSpec("checks"),
            OutSpec("trace"),
        ),
        _tape_infer,
        lambda ctx: [ParamSpec("branch", (ctx.last("args"),), Init("zeros"))],
        category="block",
        # Opcodes are -1 (end of tape) or 0..8 (PLAN .. CITE).
        runtime_rules=lambda hp: (RangeRule("ops", "opcodes (-1 ends the tape)", -1, 9),),
    ),
    OpSpec(
        "routed_mlp",
        "5.2",
        "MLP whose hidden neurons are split into groups; each token runs `active` groups",
        (Port("x", "float", rank=3), Port("tokens", "int", rank=2, optional=True)),
        (
            Hyper("hidden", "int", check="pos"),
            Hyper("groups", "int", 8, check="pos"),
            Hyper("active", "int", 2, check="pos"),
            Hyper("route", "choice", "learned", choices=("learned", "hash")),
            _act_hyper(),
        ),
        (OutSpec("y"),),
        _routed_infer,
        _routed_params,
        category="block",
        validate=_routed_validate,
        runtime_rules=lambda hp: (
            (RangeRule("tokens", "token ids (hash routing)", 0, None),)
            if hp.get("route") == "hash"
            else ()
        ),
    ),
    OpSpec(
        "demopack_linear",
        "5.3",
        "linear layer with a codebook-synthesised weight",
        (Port("x", "float", min_rank=1),),
        (
            Hyper("out", "int", check="pos"),
            Hyper("codewords", "int", 256, check="pos"),
            Hyper("per_row", "int", 4, check="pos"),
            Hyper("seed", "int", 0, check="nonneg"),
            Hyper("learnable", "bool", True),
        ),
        (OutSpec("y"),),
        _linear_like_infer,
        _demopack_params,
        category="block",
    ),
    OpSpec(
        "lora_linear",
        "5.4",
        "linear layer plus a per-sample low-rank delta from metadata",
        (Port("x", "float", rank=3), Port("meta", "float", rank=2)),
        (
            Hyper("out", "int", check="pos"),
            Hyper("rank", "int", 4, check="pos"),
            Hyper("gen_dim", "int", 64, check="pos"),
        ),
        (OutSpec("y"),),
        _lora_infer,
        _lora_params,
        category="block",
    ),
]

OPS: dict[str, OpSpec] = {op.name: op for op in _OPS}

# Ops a program may call by name (the rest are spelt with operators).
CALLABLE: tuple[str, ...] = tuple(sorted(n for n, op in OPS.items() if op.callable))

# The infix operators of the language and the ops they denote.
BINARY_OPERATORS: dict[str, str] = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


def check_hyper_value(h: Hyper, value: Any) -> str | None:
    """Range check of one hyperparameter value; returns an error message or None."""
    if value is None:
        return None if h.nullable else f"'{h.name}' cannot be none"
    if h.check == "pos" and not value > 0:
        return f"'{h.name}' must be positive, got {value}"
    if h.check == "nonneg" and not value >= 0:
        return f"'{h.name}' must be >= 0, got {value}"
    if h.check == "open01" and not 0 < value < 1:
        return f"'{h.name}' must lie in (0, 1), got {value}"
    if h.check == "prob" and not 0 <= value <= 1:
        return f"'{h.name}' must lie in [0, 1], got {value}"
    if h.type == "choice" and value not in h.choices:
        return f"'{h.name}' must be one of {', '.join(h.choices)}; got '{value}'"
    return None


@dataclass(frozen=True)
class InstanceSpec:
    """An op applied to concrete input types and hyperparameters (what lowering records)."""

    op: str
    hp: tuple[tuple[str, Any], ...]
    inputs: tuple[tuple[str, TensorType], ...]
    outputs: tuple[TensorType, ...]
    params: tuple[ParamSpec, ...] = field(default=())


def instantiate(op: str, inputs: dict[str, TensorType], hp: dict[str, Any]) -> InstanceSpec:
    """Run an op's validate, shape and param rules (raises ShapeFailure on a user error).

    `hp` must already hold every hyperparameter except Derived defaults, which are filled here.
    The rules are pure, so results are kept by (op, input types, hyperparameters): a model of
    10,000 identical layers runs each layer's rules once, in the checker and in the verifier.
    """
    try:
        key = (op, tuple(inputs.items()), tuple((k, exact_key(v)) for k, v in hp.items()))
        kept = _KEPT.get(key)
    except TypeError:  # an unhashable hyperparameter value: compute it every time
        return _instantiate(op, inputs, hp)
    if kept is None:
        if len(_KEPT) >= 4096:
            _KEPT.clear()
        kept = _KEPT[key] = _instantiate(op, inputs, hp)
    return kept


_KEPT: dict[tuple, InstanceSpec] = {}


def exact_key(v: Any) -> Any:
    """A hashable key that tells apart values that compare equal (1, 1.0, True; 0.0, -0.0), at
    every nesting level; raises TypeError for an unhashable leaf."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(exact_key(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((exact_key(k), exact_key(x)) for k, x in v.items()))
    return (type(v).__name__, repr(v) if isinstance(v, float) else v)


def _instantiate(op: str, inputs: dict[str, TensorType], hp: dict[str, Any]) -> InstanceSpec:
    spec = OPS[op]
    ctx = OpContext(op, dict(inputs), dict(hp))
    for h in spec.hypers:
        if h.name not in ctx.hp or ctx.hp[h.name] is REQUIRED:
            if isinstance(h.default, Derived):
                ctx.hp[h.name] = h.default.fn(ctx)
                msg = check_hyper_value(h, ctx.hp[h.name])
                if msg:
                    ctx.fail(h.name, msg + f" (its default is {h.default.text})", code="E0302")
            elif h.default is REQUIRED:
                ctx.fail(None, f"{op} needs the hyperparameter '{h.name}'", code="E0205")
            else:
                ctx.hp[h.name] = h.default
    spec.validate(ctx)
    outs = spec.infer(ctx)
    params = spec.params(ctx)
    ordered_hp = tuple((h.name, ctx.hp[h.name]) for h in spec.hypers)
    return InstanceSpec(op, ordered_hp, tuple(inputs.items()), tuple(outs), tuple(params))
