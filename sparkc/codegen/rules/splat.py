"""Code-generation rules of the SplatFlow blocks (SPEC §3).

Consumes a fusion `Group` of kind "trajectory" or "splat_attention" and the `Emitter` of
`codegen/emit.py`; produces
- trajectory: one call of `splat_trajectory.py.jinja` specialised on the window, whose tap weights
  ω_i = exp(−1 + i/(window−1)) are computed here once and rendered as exact float literals;
- splat_attention: the `wa`/`wv` projections as one horizontally fused GEMM (column blocks of one
  buffer, read in place as [B, N, H, d] views), the chunked-scan mixing of
  `splat_attention.py.jinja` (specialised on causal and normalize), and the `wo` GEMM, which
  takes the group's epilogue (a residual add after the block fuses into it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..emit import Emitter, gemm_call, gemm_epilogue, last_dim, ports_of

if TYPE_CHECKING:
    from ...passes.fuse import Group


def tap_weights(window: int) -> list[str]:
    return [repr(math.exp(-1 + i / (window - 1))) for i in range(window)]


def rule_trajectory(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    window = int(node.attr("window"))
    fn = e.kernels.use(
        "splat_trajectory.py.jinja", "traj", window=window, weights=tap_weights(window)
    )
    e.emit(f"{e.out(node)} = {fn}({e.v(ports['x'])}, {e.v(params['strength'])})")
    e.fill(node, {"x": e.v(ports["x"])})  # a prefill keeps the last `window` rows


def rule_splat_attention(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    d_model = last_dim(e.graph, ports["x"])
    heads = int(node.attr("heads"))
    o = e.out(node)
    mm = e.kernels.use_matmul(epilogue=[], dual=False)
    wa, wv = e.v(params["wa.weight"]), e.v(params["wv.weight"])
    e.emit(f"{o}_u, {o}_v = {mm}_many({x}.reshape(-1, {d_model}), {wa}, {wv})")
    shape = f"{x}.shape[0], {x}.shape[1], {heads}, {d_model // heads}"
    fn = e.kernels.use(
        "splat_attention.py.jinja",
        "splat",
        causal=bool(node.attr("causal")),
        normalize=bool(node.attr("normalize")),
    )
    splats = ", ".join(e.v(params[p]) for p in ("centers", "log_scale", "log_amp"))
    e.emit(f"{o}_m = {fn}({o}_u.view({shape}), {o}_v.view({shape}), {splats})")
    e.fill(node, {"u": f"{o}_u.view({shape})", "v": f"{o}_v.view({shape})"})  # S, z from them
    steps, operands, last = gemm_epilogue(e, group, node.out())
    call = gemm_call(e, f"{o}_m", d_model, [e.v(params["wo.weight"])], None, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


SPLAT_RULES = {"trajectory": rule_trajectory, "splat_attention": rule_splat_attention}
