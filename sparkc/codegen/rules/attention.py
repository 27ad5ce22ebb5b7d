"""Code-generation rule of `attention` (causal/bidirectional, GQA, RoPE, the basis gains).

Consumes a fusion `Group` of kind "attention" (the op and the elementwise tail absorbed by its
output GEMM, see `sparkc/passes/fuse.py`) and the `Emitter` of `codegen/emit.py`; produces the
lines of `_forward_triton`: one horizontally fused q/k/v projection GEMM (`primitives_matmul.py.jinja`,
strided [B, N, H, d] views), the flash-attention fragment (`attention.py.jinja`, specialised on
causality, the GQA group, RoPE and the basis), a position check when the basis bounds the
sequence length, and the output GEMM `wo` with the group's epilogue.
"""

from __future__ import annotations

from collections.abc import Callable

from ...passes.fuse import Group
from ..emit import Emitter, gemm_call, gemm_epilogue, last_dim, ports_of, project_heads
from ..render import pyrepr


def rule_attention(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    hp = node.attr_dict
    x = e.v(ports["x"])
    d_model = last_dim(e.graph, ports["x"])
    heads, kv = int(hp["heads"]), int(hp["kv_heads"])
    o = e.out(node)
    proj = project_heads(e, node, heads, kv, fused=True)
    basis = hp.get("basis")
    fn = e.kernels.use(
        "attention.py.jinja",
        "attn",
        causal=bool(hp["causal"]),
        group=heads // kv,
        rope=bool(hp["rope"]),
        rope_base=float(hp["rope_base"]),
        basis=dict(basis) if basis else None,
        layout="bnhd",
    )
    if basis:  # the table's max_len rule names the model input; this covers computed inputs
        limit = int(dict(basis)["max_len"])
        e.emit(f"_ms.check_positions({x}.shape[1], {limit}, {pyrepr(node.scope)})")
    gains = e.v(params["basis.gains"]) if basis else "None"
    e.emit(f"{o}_a = {fn}({proj['wq']}, {proj['wk']}, {proj['wv']}, {gains})")
    e.fill(node, {"k": proj["wk"], "v": proj["wv"]})  # a prefill caches them (RoPE there)
    steps, operands, last = gemm_epilogue(e, group, node.out())
    call = gemm_call(e, f"{o}_a", d_model, [e.v(params["wo.weight"])], None, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


ATTENTION_RULES: dict[str, Callable[[Emitter, Group], None]] = {"attention": rule_attention}
