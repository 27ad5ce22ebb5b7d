"""§5 SPARK procedural blocks: opcode_tape, routed_mlp, demopack_linear, lora_linear.

Consumes the schema and `act_hyper` (primitives_elementwise); produces `SPECS`.
"""

from __future__ import annotations

from ..types import DType, TensorType, fmt_shape
from .primitives_elementwise import act_hyper
from .schema import (
    DocVariant,
    Hyper,
    Init,
    OpContext,
    OpSpec,
    OutSpec,
    ParamSpec,
    Port,
    RangeRule,
    float_type,
    gemm_flops,
    linear_params,
    seq_dims,
    want_shape,
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
            "args",
            f"args must be {want_shape(('B', 'T', 'D'), (b, t, 'D'))}, got {fmt_shape(a.shape)}",
        )
    if h.shape != (b, t):
        ctx.fail(
            "has_arg",
            f"has_arg must be bool {want_shape(('B', 'T'), (b, t))}, got {fmt_shape(h.shape)}",
        )
    d = ctx.last("args")
    i32 = DType.I32
    return (
        float_type((b, d)),
        TensorType(i32, (b,)),
        TensorType(i32, (b,)),
        TensorType(i32, (b,)),
        float_type((b, t, d)),
        TensorType(i32, (b, t)),
    )


def _routed_validate(ctx: OpContext):
    hp = ctx.hp
    if hp["hidden"] % hp["groups"]:
        ctx.fail("groups", f"groups={hp['groups']} must divide hidden={hp['hidden']}", code="E0304")
    if hp["active"] > hp["groups"]:
        ctx.fail("active", f"active={hp['active']} exceeds groups={hp['groups']}", code="E0302")


def _routed_infer(ctx: OpContext):
    b, n, _d = seq_dims(ctx)
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
                f"tokens must be int {want_shape(('B', 'N'), (b, n))}, got {fmt_shape(tok.shape)}",
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
    return (float_type(t.shape[:-1] + (ctx.hp["out"],)),)


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


def _routed_flops(ctx) -> float:
    d, hid, g, a = ctx.width(), ctx.hp["hidden"], ctx.hp["groups"], ctx.hp["active"]
    gate = (d, g) if ctx.hp["route"] == "learned" else (0, 0)
    return gemm_flops(ctx, gate) + 2.0 * ctx.rows() * 2 * d * hid * a / g


def _lora_flops(ctx) -> float:
    i, o, r = ctx.width(), ctx.hp["out"], ctx.hp["rank"]
    return gemm_flops(ctx, (i, o), (i, r), (r, o))


# Exact definitions (Markdown for docs/ops.md and `sparkc ops`; the operator contract).

_TAPE = """\
A batched stack machine that runs one instruction tape per sequence with the SPARK opcode set
and a step budget.

- Inputs: `ops` int32 `[B, T]` with values 0–8 (`PLAN RETR ASSUME EXEC LEMMA CHECK BRANCH MERGE
  CITE`, in this order) or −1 (end of tape); `args [B, T, D]`; `has_arg` bool `[B, T]`. An
  opcode outside −1..8 is an `InputError`.
- Parameter: `branch [D]`, zeros.
- Outputs: `top [B, D]` (the top of the stack after the run, zeros when empty), `depth` int32
  `[B]`, `status` int32 `[B]` (0 ok, 1 stack underflow, 2 budget exceeded, 3 capacity
  exceeded), `steps` int32 `[B]` (instructions executed), `checks [B, T, D]` (the value of the
  CHECK at position `i`, zeros elsewhere), `trace` int32 `[B, T]` (the opcode executed at `i`,
  −1 where none ran).
- Each sequence runs `i = 0..T−1` in order: stop at `ops_i = −1`; at `i ≥ budget` set status 2
  and stop; otherwise execute. An error sets its status and stops the run; the stack keeps its
  state from before the failing instruction, which counts in neither `steps` nor `trace`.
  The argument is `a_i = args_i` when `has_arg_i`, else 0.

  | opcode | effect |
  |---|---|
  | PLAN | push `a_i` if `has_arg_i`, else nothing |
  | RETR, ASSUME, LEMMA | push `a_i` |
  | EXEC | pop; on an empty stack, status 1 |
  | CHECK | pop if the stack is not empty, else use `a_i` if `has_arg_i`, else status 1; the value goes to `checks_i` |
  | BRANCH | push `a_i + branch` |
  | MERGE | replace the whole stack by one element, the mean of its elements (an empty stack becomes one zero element) |
  | CITE | nothing |

  A push onto a full stack (`capacity` elements) sets status 3.
- Differentiable in `args` and `branch` (for fixed opcodes the outputs are linear in them).
- `sparkc.runtime.tape` ships the same machine on strings with the SPARK log format (`PLAN: x`,
  `PLAN: no-op`, `RETRIEVE: x`, `ASSUME: x`, `EXEC: popped`, `LEMMA: x`, `CHECK: x`, `BRANCH`,
  `MERGE: a, b`, `CITE: x`, `Budget exceeded`) and helpers that encode a list of
  `(opcode, text)` pairs into the three input tensors given a text → vector function (MERGE
  joins bottom to top with ", "; BRANCH pushes `branch::text`; a missing text is ""; an error
  logs nothing). On every tape the two machines agree on status, steps and depth; e.g.
  `[PLAN "factor problem", CHECK "result"]` logs `PLAN: factor problem`, then
  `CHECK: factor problem`."""

_ROUTED = """\
Sparse neuron-group routing: the `hidden` neurons form `groups` equal groups and each token runs
only `active` of them.

- Parameters: `fc1 = Linear(D→hidden)`, `fc2 = Linear(hidden→D)` (group `g` owns rows/columns
  `[g·hidden/groups, (g+1)·hidden/groups)`), and with `route=learned` `gate = Linear(D→groups)`.
- `route=learned`: `sel(t)` is the top-`active` groups of `gate(x_t)` (ties to the lower index),
  weighted by `w_tg = softmax_g(gate(x_t))_g`, the softmax over all groups and not renormalised
  over `sel(t)` (so the gate learns even with `active = 1`).
- `route=hash`: `sel(t)` is the groups `(h(tokens_t) + j) mod groups`, `j = 0..active−1`, with
  `h(v) = ((v · 2654435761) mod 2³²) >> 16` in unsigned arithmetic (ids must be ≥ 0), weights
  `1/active`; needs the `tokens` input. The choice depends only on the token id.
- `y_t = fc2.bias + Σ_{g∈sel(t)} w_tg · act(fc1_g x_t) W2_gᵀ`, with `fc1_g` the rows of group
  `g` of fc1 (weight and bias) and `W2_g` its columns of fc2's weight.
- Work scales with `active/groups` of the dense MLP (a grouped GEMM over tokens sorted by group),
  never a dense MLP under a mask.
- Departure from the SPARK research code: it drew random scores independent of the input and
  returned `k` scaled copies of each token, which summed back to the identity."""

_DEMOPACK = """\
A linear layer whose weight is synthesised from a vector-quantised codebook and a fixed
procedural index table.

- Parameters: `codebook [codewords, in]` (N(0, 0.02²) truncated at ±0.04; a buffer when
  `learnable=false`), `scale [out]` ones, `bias [out]` zeros. A persistent buffer (in
  `state_dict`): `index` int64 `[out, per_row]`, made by
  `g = torch.Generator().manual_seed(seed); torch.randint(0, codewords, (out, per_row),
  generator=g)`, so it depends only on `seed`.
- `W_r = scale_r / per_row · Σ_j codebook[index_rj]`; `y = x Wᵀ + bias`.
- A kernel never writes `W` to memory: it either decodes weight tiles on chip and multiplies,
  or uses the lookup form `P = x codebookᵀ`, `y_r = scale_r / per_row · Σ_j P[index_rj] +
  bias_r`.
- Departure from the SPARK research code: it decoded the whole weight on the host at every
  forward and averaged `in_features` random codewords per row (a nearly rank-1 weight)."""

_LORA = """\
A linear layer plus a low-rank delta generated per sample from metadata by a small network.

- Inputs: `x [B, N, in]`, `meta [B, M]`.
- Parameters: `base = Linear(in→out)`, `gen1 = Linear(M→gen_dim)`,
  `gen2 = Linear(gen_dim→gen_dim)`, `gen_a = Linear(gen_dim→rank·in)`,
  `gen_b = Linear(gen_dim→out·rank)` with weight and bias zero (the delta starts at 0).
- `h_b = gelu(gen2(gelu(gen1(meta_b))))`, `A_b = reshape(gen_a h_b, [rank, in])`,
  `Bm_b = reshape(gen_b h_b, [out, rank])`; `y_bn = base(x_bn) + Bm_b (A_b x_bn)`.
- Departure from the SPARK research code: it averaged the delta over the batch and wrote it into
  a weight's `.data` outside autograd, so the generator never trained and deltas piled up
  across calls."""


SPECS: tuple[OpSpec, ...] = (
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
        kernel="opcode_tape",
        flops=lambda c: 4.0 * c.size("args"),
        semantics=_TAPE,
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
            act_hyper(),
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
        kernel="routed_mlp",
        flops=_routed_flops,
        doc_variants=(DocVariant("route=hash", (("route", "hash"),), ("tokens",)),),
        semantics=_ROUTED,
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
        kernel="demopack_linear",
        flops=lambda c: gemm_flops(c, (c.width(), c.hp["out"])),
        doc_variants=(DocVariant("learnable=false", (("learnable", False),)),),
        semantics=_DEMOPACK,
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
        kernel="lora_linear",
        flops=_lora_flops,
        semantics=_LORA,
    ),
)
