"""Cost model: the floating-point operations and the minimum bytes of every op, as a rule table.

Consumes an IR graph and a binding of its symbolic dimensions (`{"B": 8, "N": 2048}`); produces
per-node and total forward FLOPs and the minimum bytes a kernel must move (every input and
parameter read once, every output written once). `sparkc bench` divides these by measured times
to report achieved TFLOP/s and GB/s, and by the measured ceilings to report the roofline floor.

FLOPs count multiply-adds as two operations and count only the dominant terms (GEMMs, score
matrices, scans, elementwise work); causal attention counts half of the score matrix. The
backward of a GEMM-dominated op costs about twice its forward (`BACKWARD_FACTOR`), the convention
FlashAttention and most benchmark tables use (attention's backward: 2.5×).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .graph import SPECIAL_OPS, Graph, Node
from .types import DType, TensorType

BYTES = {DType.FLOAT: 2, DType.I64: 8, DType.I32: 4, DType.BOOL: 1}  # FLOAT at bf16 by default


def _dims(t: TensorType, sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else int(sizes[d]) for d in t.shape)


def numel(t: TensorType, sizes: Mapping[str, int]) -> int:
    return math.prod(_dims(t, sizes))


class Ctx:
    """What a cost rule sees: the node's input/output shapes (bound), its attrs, its params."""

    def __init__(self, graph: Graph, node: Node, sizes: Mapping[str, int]):
        self.node, self.sizes, self.hp = node, sizes, node.attr_dict
        self.ins = {n: _dims(graph.type_of(v), sizes) for n, v in zip(node.port_names, node.inputs)}
        self.outs = [_dims(t, sizes) for t in node.types]

    def rows(self, port: str = "x") -> int:
        """Tokens: the product of all but the last dim of an input."""
        return math.prod(self.ins[port][:-1])

    def width(self, port: str = "x") -> int:
        return self.ins[port][-1]

    def size(self, port: str) -> int:
        return math.prod(self.ins[port])

    def out_size(self, i: int = 0) -> int:
        return math.prod(self.outs[i])


def _gemm(ctx: Ctx, *pairs: tuple[int, int]) -> float:
    """2·rows·Σ in·out over a chain of linear layers applied to every token."""
    return 2.0 * ctx.rows() * sum(i * o for i, o in pairs)


def _attention_core(b: int, heads: int, n: int, d: int, causal: bool) -> float:
    return 4.0 * b * heads * n * n * d * (0.5 if causal else 1.0)


def _attention(ctx: Ctx) -> float:
    b, n, dm = ctx.ins["x"]
    h, kv = ctx.hp["heads"], ctx.hp["kv_heads"]
    d = dm // h
    proj = _gemm(ctx, (dm, dm), (dm, kv * d), (dm, kv * d), (dm, dm))
    return proj + _attention_core(b, h, n, d, bool(ctx.hp["causal"]))


def _fk(ctx: Ctx) -> float:
    b, n, dm = ctx.ins["x"]
    h = ctx.hp["heads"]
    proj = _gemm(ctx, (dm, dm), (dm, dm), (dm, dm), (dm, dm))
    return proj + ctx.hp["hops"] * _attention_core(b, h, n, dm // h, bool(ctx.hp["causal"]))


def _spd(ctx: Ctx) -> float:
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
    return _gemm(ctx, *pairs) + 20.0 * ctx.rows() * (ds + dp)


def _stack(ctx: Ctx) -> float:
    d, e, s = ctx.width("h"), ctx.hp["elem"], ctx.hp["stack"]
    rows = ctx.rows("h")
    mlps = (
        2.0
        * rows
        * (d * (d // 2) + (d // 2) * 3 + d * e + (d + e) * (d // 4) + (d // 4) * ctx.hp["signals"])
    )
    return mlps + 6.0 * rows * s * e  # the memory update and the read, per step


def _splat(ctx: Ctx) -> float:
    dm, k = ctx.width(), ctx.hp["splats"]
    rows = ctx.rows()
    return _gemm(ctx, (dm, dm), (dm, dm), (dm, dm)) + 2.0 * rows * k * dm * 3 + 4.0 * rows * k * dm


def _sqdk(ctx: Ctx) -> float:
    # Upper bound: every token routed (the kernel's work scales with the routed count).
    b, n, dm = ctx.ins["x"]
    h, kv = ctx.hp["heads"], ctx.hp["kv_heads"]
    d = dm // h
    return _gemm(ctx, (dm, dm), (dm, kv * d), (dm, kv * d), (dm, dm)) + _attention_core(
        b, h, n, d, True
    )


def _routed(ctx: Ctx) -> float:
    d, hid, g, a = ctx.width(), ctx.hp["hidden"], ctx.hp["groups"], ctx.hp["active"]
    gate = (d, g) if ctx.hp["route"] == "learned" else (0, 0)
    return _gemm(ctx, gate) + 2.0 * ctx.rows() * 2 * d * hid * a / g


def _lora(ctx: Ctx) -> float:
    i, o, r = ctx.width(), ctx.hp["out"], ctx.hp["rank"]
    return _gemm(ctx, (i, o), (i, r), (r, o))


def _elementwise(per: float) -> Callable[[Ctx], float]:
    return lambda ctx: per * ctx.out_size()


FLOPS: dict[str, Callable[[Ctx], float]] = {
    "linear": lambda c: _gemm(c, (c.width(), c.hp["out"])),
    "embed": lambda c: 0.0,
    "pos_embed": _elementwise(1),
    "rmsnorm": _elementwise(4),
    "layernorm": _elementwise(7),
    **{op: _elementwise(1) for op in ("relu", "neg", "add", "sub", "mul", "div")},
    **{op: _elementwise(8) for op in ("gelu", "silu", "sigmoid", "tanh")},
    "softmax": _elementwise(5),
    "mlp": lambda c: _gemm(c, (c.width(), c.hp["hidden"]), (c.hp["hidden"], c.width())),
    "swiglu": lambda c: _gemm(
        c, (c.width(), c.hp["hidden"]), (c.width(), c.hp["hidden"]), (c.hp["hidden"], c.width())
    ),
    "conv1d": lambda c: 2.0 * c.out_size() * c.hp["kernel"],
    "rope": _elementwise(6),
    "split_heads": lambda c: 0.0,
    "merge_heads": lambda c: 0.0,
    "concat": lambda c: 0.0,
    "mean": lambda c: float(c.size("x")),
    "cross_entropy": lambda c: 5.0 * c.size("logits"),
    "attention": _attention,
    "basis": lambda c: 0.0,
    "fk_attention": _fk,
    "spd_router": _spd,
    "verifier_stack": _stack,
    "splat_attention": _splat,
    "trajectory": lambda c: 12.0 * c.out_size() * c.hp["window"],
    "token_router": lambda c: _gemm(c, (c.width(), 1)),
    "sqdk_attention": _sqdk,
    "opcode_tape": lambda c: 4.0 * c.size("args"),
    "routed_mlp": _routed,
    "demopack_linear": lambda c: _gemm(c, (c.width(), c.hp["out"])),
    "lora_linear": _lora,
}

# Backward FLOPs over forward FLOPs (attention recomputes the scores: 2.5×, FA2's convention).
BACKWARD_FACTOR: dict[str, float] = {"attention": 2.5, "fk_attention": 2.5, "sqdk_attention": 2.5}
DEFAULT_BACKWARD_FACTOR = 2.0


def node_flops(graph: Graph, node: Node, sizes: Mapping[str, int]) -> float:
    return FLOPS[node.op](Ctx(graph, node, sizes))


def graph_cost(graph: Graph, sizes: Mapping[str, int], float_bytes: int = 2) -> dict[str, Any]:
    """Totals for one forward and one forward+backward of the whole model.

    bytes: the floor a perfectly fused model must move: model inputs and parameters read once,
    outputs written once (forward); the backward also reads the output gradients and writes the
    parameter and float-input gradients."""
    width = dict(BYTES, **{DType.FLOAT: float_bytes})
    fwd = bwd = 0.0
    per_op: dict[str, float] = {}
    for node in graph.topo_order():
        if node.op in SPECIAL_OPS:
            continue
        f = node_flops(graph, node, sizes)
        per_op[node.op] = per_op.get(node.op, 0.0) + f
        fwd += f
        bwd += f * BACKWARD_FACTOR.get(node.op, DEFAULT_BACKWARD_FACTOR)

    def size(n: Node) -> int:
        return numel(n.types[0], sizes) * width[n.types[0].dtype]

    ins = sum(size(n) for n in graph.inputs())
    params = sum(size(n) for n in graph.params())
    outs = sum(
        numel(graph.type_of(n.inputs[0]), sizes) * width[graph.type_of(n.inputs[0]).dtype]
        for n in graph.outputs()
    )
    float_ins = sum(size(n) for n in graph.inputs() if n.types[0].dtype is DType.FLOAT)
    return {
        "flops_fwd": fwd,
        "flops_fwd_bwd": fwd + bwd,
        "bytes_fwd": float(ins + params + outs),
        "bytes_fwd_bwd": float(ins + 2 * params + 2 * outs + float_ins + params),
        "flops_by_op": dict(sorted(per_op.items())),
    }
