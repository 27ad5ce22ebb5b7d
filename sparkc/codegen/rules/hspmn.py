"""Code-generation rule of `token_router` (SPEC §4.1) on generated kernels.

Consumes a fusion `Group` of kind "token_router" and the `Emitter` of `codegen/emit.py`;
produces the lines of `_forward_triton`:
- the router logit ℓ = w(x) as a GEMM with a bias epilogue ([B·N, 1]);
- ℓ̃ = ℓ + logistic noise (training with noise=true; drawn by the reference path's helper, in its
  order and shape, so both paths route identically from one seed) as a fused program;
- the mask: `ℓ̃ > 0` (threshold) or the k largest ℓ̃ per sequence, ties to the lower index (a
  stable sort; selection only, no arithmetic to differentiate);
- the straight-through gate as a fused program whose forward value is exactly the mask and whose
  backward is g · σ'(ℓ̃), so the router learns from the task loss;
- the sparsity loss aux_weight · (mean σ(ℓ) − sparsity)² through the sigmoid program and the
  deterministic mean kernel.
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


HSPMN_RULES = {"token_router": rule_token_router}
