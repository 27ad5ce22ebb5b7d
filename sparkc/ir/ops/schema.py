"""The op schema: the dataclasses an op is described with, and the small shape helpers the
family modules share.

Consumes nothing heavy (no torch, no lark: data plus small functions); produces `OpSpec` and its
parts (`Port`, `Hyper`, `OutSpec`, `ParamSpec`, `Init`, `Derived`, run-time rules), the
`OpContext` a shape or parameter rule sees, `ShapeFailure`, `InstanceSpec`, the trait types
(`PairRule` for fusion, `DocVariant` for docs/ops.md), and builders used by several families
(`linear_params`, `seq_dims`, `head_width`, ...; FLOP rules: `gemm_flops`,
`attention_core_flops`, `elementwise_flops`). The ops themselves are in the family modules beside
this one; `sparkc.ir.ops` assembles them into `OPS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..types import Dim, DType, TensorType, fmt_shape

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
class PairRule:
    """Fusion of an op with one reader of its output, keyed by the reader's kernel kind.

    `reader`: the reader's kernel kind; `group`: the kind of the two-node group. Unless
    `residual`, the reader must be the only reader of the output (at `port` when given). With
    `residual` (an `add` of two same-shape tensors read by a norm), the sum may have other
    readers: the group stores it beside the reader's result."""

    reader: str
    group: str
    port: int | None = None
    residual: bool = False


@dataclass(frozen=True)
class DocVariant:
    """A hyperparameter setting whose parameter set differs from the defaults' (docs/ops.md)."""

    label: str
    hp: tuple[tuple[str, Any], ...]
    inputs: tuple[str, ...] = ()  # optional ports this setting needs


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
    # ---- Traits the passes, the cost model and the code generators read (no table elsewhere
    # is keyed by op name; tests/ir/test_op_traits.py checks each op has what its category
    # needs).
    # Fusion (sparkc/passes/fuse.py): the kernel kind of a group anchored at this op (a key of
    # the code generator's group rules; "reference": runs its reference rule, no kernel yet).
    kernel: str = ""
    gemm_tail: bool = False  # ends in a GEMM whose output can take an epilogue
    # Its role as a step of a GEMM epilogue: "act" (an activation), "scale" (times a same-shape
    # tensor), "residual" (plus a same-shape tensor; ends the epilogue) or "" (none).
    epilogue: str = ""
    pairs: tuple[PairRule, ...] = ()  # fuse with a reader of a given kernel kind
    # Cost (sparkc/ir/cost.py): forward FLOPs from a `cost.Ctx`; backward over forward FLOPs.
    flops: Callable[[Any], float] | None = None
    backward_factor: float = 2.0
    # Algebra (sparkc/passes: canonicalize, cse, fold): the op's value on Python scalars (None:
    # never folded), operand order does not matter, a right operand that leaves the left one
    # unchanged (x + 0, x * 1), op(op(x)) = x.
    fold: Callable[..., Any] | None = None
    commutative: bool = False
    right_identity: int | None = None
    involution: bool = False
    # Elementwise Triton (sparkc/codegen/pointwise.py): the expression over float32 operands
    # ({x}, or {a} and {b}) and, per port, the contribution of the output gradient {g} to that
    # operand's gradient, in terms of the operands and the op's own output {y}.
    triton: str = ""
    triton_grad: tuple[tuple[str, str], ...] = ()
    # docs/ops.md and `sparkc ops` (sparkc/tools/docs_gen.py): the exact definition, in Markdown (the
    # operator contract: edge cases, departures from the research code), and hyperparameter
    # settings whose parameters differ from the defaults'.
    semantics: str = ""
    doc_variants: tuple[DocVariant, ...] = ()

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


def float_type(shape: tuple[Dim, ...]) -> TensorType:
    return TensorType(DType.FLOAT, tuple(shape))


def same_as_x(ctx: OpContext) -> tuple[TensorType, ...]:
    return (ctx.t("x"),)


def seq_dims(ctx: OpContext, port: str = "x") -> tuple[Dim, Dim, int]:
    """Check a [B, N, D] activation and return its dims."""
    t = ctx.t(port)
    if t.rank != 3:
        ctx.fail(port, f"'{port}' must be [B, N, D], got {fmt_shape(t.shape)}")
    return t.shape[0], t.shape[1], ctx.last(port)


def head_width(ctx: OpContext, d_model: int, heads: str = "heads") -> int:
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


def gqa_width(ctx: OpContext, d_model: int) -> tuple[int, int]:
    d = head_width(ctx, d_model)
    h, kv = ctx.hp["heads"], ctx.hp.get("kv_heads") or ctx.hp["heads"]
    if kv > h or h % kv:
        ctx.fail("kv_heads", f"kv_heads={kv} must divide heads={h}", code="E0304")
    return d, kv


def check_rope_even(ctx: OpContext, d: int, flag: str = "rope") -> None:
    if ctx.hp.get(flag) and d % 2:
        ctx.fail(flag, f"RoPE needs an even head width, got d={d}", code="E0304")


CAUSAL = Hyper("causal", "bool", True, doc="output t depends on inputs <= t only")


def causal_hp(hp: Mapping[str, Any]) -> bool:
    return bool(hp.get("causal", True))


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


def want_shape(names: tuple[str, ...], dims: tuple[Dim, ...]) -> str:
    """'[B, N]', or '[B, N] = [2, N]' when some dims are known numbers."""
    sym = fmt_shape(names)
    return sym if tuple(names) == tuple(dims) else f"{sym} = {fmt_shape(dims)}"


# --------------------------------------------------------------------------------------------
# Cost-rule builders (a rule receives a `sparkc.ir.cost.Ctx`: bound input and output dims,
# hyperparameters)


def gemm_flops(ctx: Any, *pairs: tuple[int, int]) -> float:
    """2·rows·Σ in·out over a chain of linear layers applied to every token."""
    return 2.0 * ctx.rows() * sum(i * o for i, o in pairs)


def attention_core_flops(b: int, heads: int, n: int, d: int, causal: bool) -> float:
    return 4.0 * b * heads * n * n * d * (0.5 if causal else 1.0)


def elementwise_flops(per: float) -> Callable[[Any], float]:
    return lambda ctx: per * ctx.out_size()


def no_flops(ctx: Any) -> float:
    return 0.0
