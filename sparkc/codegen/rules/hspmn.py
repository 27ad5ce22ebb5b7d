"""Code-generation rules of `token_router` (SPEC §4.1) and `sqdk_attention` (§4.2) on generated
kernels.

Consumes a fusion `Group` of kind "token_router" or "sqdk_attention" and the `Emitter` of
`codegen/emit.py`; produces the lines of `_forward_triton`. token_router:
- the router logit ℓ = w(x) as a GEMM with a bias epilogue ([B·N, 1]);
- ℓ̃ = ℓ + logistic noise (training with noise=true; drawn by the reference path's helper, in its
  order and shape, so both paths route identically from one seed) as a fused program;
- the mask: `ℓ̃ > 0` (threshold) or the k largest ℓ̃ per sequence, ties to the lower index (a
  stable sort; selection only, no arithmetic to differentiate);
- the straight-through gate as a fused program whose forward value is exactly the mask and whose
  backward is g · σ'(ℓ̃), so the router learns from the task loss;
- the sparsity loss aux_weight · (mean σ(ℓ) − sparsity)² through the sigmoid program and the
  deterministic mean kernel.
sqdk_attention: the key/value projections as one fused GEMM over every position, then the
routed-query fragment of `hspmn_sqdk_attention.py.jinja` (compaction, q projection of routed rows,
attention, output projection with the gate product, scatter into [B, N, D]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..emit import Emitter, gemm_call, last_dim, ports_of
from ..pointwise import add_program
from ..render import pyrepr

if TYPE_CHECKING:
    from ...passes.fuse import Group

# gate = mask + (σ(ℓ̃) − sg(σ(ℓ̃))): the value is the mask, the gradient flows through σ.
_STRAIGHT_THROUGH = {
    "inputs": ["a0", "a1"],
    "scalars": [],
    "body": ["t0 = a1"],
    "outputs": [("o0", "t0")],
    "grad_inputs": ["g0"],
    "grad_body": ["s0 = tl.sigmoid(a0)"],
    "grad_outputs": [("da0", "g0 * s0 * (1.0 - s0)"), ("da1", "0.0 * g0")],
}
_SIGMOID = {
    "inputs": ["a0"],
    "scalars": [],
    "body": ["t0 = tl.sigmoid(a0)"],
    "outputs": [("o0", "t0")],
    "grad_inputs": ["g0"],
    "grad_body": [],
    "grad_outputs": [("da0", "g0 * t0 * (1.0 - t0)")],
}


def rule_token_router(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    hp = node.attr_dict
    x = e.v(ports["x"])
    d = last_dim(e.graph, ports["x"])
    mask, gate, loss = (e.out(node, i) for i in range(3))
    t = f"{mask}_"

    def pointwise(ctx: dict, *args: str) -> str:
        return f"{e.kernels.use('primitives_fused_pointwise.py.jinja', 'pw', **ctx)}({', '.join(args)})"

    call = gemm_call(e, x, d, [e.v(params["w.weight"])], e.v(params["w.bias"]), [], [])
    e.emit(f"{t}l = {call}.view({x}.shape[:-1])")
    e.emit(f"if _self.training and {pyrepr(bool(hp['noise']))}:")
    noise = f"_ms.gate_noise('sigmoid', {t}l.shape, {t}l, _ctx)"
    e.emit(f"    {t}n = {pointwise(add_program(), t + 'l', noise)}")
    e.emit("else:")
    e.emit(f"    {t}n = {t}l")
    if hp["mode"] == "threshold":
        e.emit(f"{mask} = {t}n.detach() > 0")
    else:
        e.emit(f"{mask} = _ms.topk_mask({t}n.detach(), {pyrepr(float(hp['sparsity']))})")
    e.emit(f"{gate} = {pointwise(_STRAIGHT_THROUGH, f'{t}n', f'{mask}.to({t}n.dtype)')}")
    mean = e.kernels.use("primitives_mean.py.jinja", "mean")
    p_mean = f"{mean}({pointwise(_SIGMOID, f'{t}l')})"
    w, sparsity = pyrepr(float(hp["aux_weight"])), pyrepr(float(hp["sparsity"]))
    e.emit(f"{loss} = ({w} * ({p_mean} - {sparsity}) ** 2).to({x}.dtype)")
    e.fill(node, {})  # routing is per token: a prefill keeps nothing


def rule_sqdk_attention(e: Emitter, group: Group) -> None:
    """sqdk_attention (SPEC §4.2): keys and values of every position as one horizontally fused
    GEMM (two column blocks of one buffer), then the routed-query fragment
    (hspmn_sqdk_attention.py.jinja): compaction, gathered q GEMM, attention, gated scatter GEMM."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    hp = node.attr_dict
    x, gate = e.v(ports["x"]), e.v(ports["gate"])
    d_model = last_dim(e.graph, ports["x"])
    heads, kv = int(hp["heads"]), int(hp["kv_heads"])
    hd = d_model // heads
    o = e.out(node)
    mm = e.kernels.use_matmul(epilogue=[], dual=False)
    wk, wv, wq, wo = (e.v(params[f"{w}.weight"]) for w in ("wk", "wv", "wq", "wo"))
    e.emit(f"{o}_k2, {o}_v2 = {mm}_many({x}.reshape(-1, {d_model}), {wk}, {wv})")
    for t in ("k", "v"):
        e.emit(f"{o}_{t} = {o}_{t}2.view({x}.shape[0], {x}.shape[1], {kv}, {hd})")
    fn = e.kernels.use(
        "hspmn_sqdk_attention.py.jinja",
        "sqdk",
        group=heads // kv,
        rope=bool(hp["rope"]),
        rope_base=float(hp["rope_base"]),
    )
    e.emit(f"{o} = {fn}({x}, {gate}, {o}_k, {o}_v, {wq}, {wo})")
    e.fill(node, {"k": f"{o}_k", "v": f"{o}_v"})  # a prefill caches every row's key and value


HSPMN_RULES = {"token_router": rule_token_router, "sqdk_attention": rule_sqdk_attention}
