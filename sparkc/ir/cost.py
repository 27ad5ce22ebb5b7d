"""Cost model: the floating-point operations and the minimum bytes of every op.

Consumes an IR graph and a binding of its symbolic dimensions (`{"B": 8, "N": 2048}`); produces
per-node and total forward FLOPs and the minimum bytes a kernel must move (every input and
parameter read once, every output written once). Each op's FLOP rule is a trait of its spec
(`OpSpec.flops`, in its family module under sparkc/ir/ops/), evaluated on a `Ctx`. `sparkc
bench` divides these by measured times to report achieved TFLOP/s and GB/s, and by the measured
ceilings to report the roofline floor.

FLOPs count multiply-adds as two operations and count only the dominant terms (GEMMs, score
matrices, scans, elementwise work); causal attention counts half of the score matrix. The
backward of a GEMM-dominated op costs about twice its forward (`OpSpec.backward_factor`), the
convention FlashAttention and most benchmark tables use (attention recomputes the scores: 2.5×).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .graph import SPECIAL_OPS, Graph, Node
from .ops import OPS
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


def node_flops(graph: Graph, node: Node, sizes: Mapping[str, int]) -> float:
    """A node's forward FLOPs, by its op's cost rule (`OpSpec.flops`)."""
    return OPS[node.op].flops(Ctx(graph, node, sizes))


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
        bwd += f * OPS[node.op].backward_factor

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
