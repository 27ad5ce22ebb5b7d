"""Code-generation rules of the SPARK procedural blocks: `demopack_linear` (SPEC §5.3).

Consumes a fusion `Group` of kind "demopack_linear" and the `Emitter` of
`codegen/emit.py`; produces the lookup form on generated kernels, never writing the
decoded weight W [out, in] to memory:
    P = x · codebookᵀ                       [M, codewords]   (GEMM)
    G = counts ⊙ scale[:, None] / per_row    [out, codewords] (fused elementwise)
    y = P · Gᵀ + bias                        [M, out]         (GEMM with a bias epilogue)
where counts[r, c] is how often codeword c appears in row r of the index table (a buffer; it is
recounted each call, so a loaded index table takes effect). y_r = scale_r/per_row · Σ_j P[index_rj]
+ bias_r exactly as SPEC writes it; the two GEMMs cost 2·M·codewords·(in + out) FLOPs instead of
2·M·in·out for a decoded weight (half at in = out = 1024, codewords = 256).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...ir.ops import OPS
from ..emit import Emitter, gemm_call, last_dim, ports_of
from ..render import pyrepr

if TYPE_CHECKING:
    from ...passes.fuse import Group

# G = counts · scale · (1 / per_row); scale broadcasts along the codeword axis.
_MIXING = {
    "inputs": ["a0", "a1"],
    "scalars": ["c0"],
    "body": ["t0 = a0 * a1 * c0"],
    "outputs": [("o0", "t0")],
    "grad_inputs": ["g0"],
    "grad_body": [],
    "grad_outputs": [("da0", "g0 * a1 * c0"), ("da1", "g0 * a0 * c0")],
}


def rule_demopack_linear(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    d_in, out = last_dim(e.graph, ports["x"]), int(node.attr("out"))
    codewords, per_row = int(node.attr("codewords")), int(node.attr("per_row"))
    codebook, index = e.v(params["codebook"]), e.v(params["index"])
    scale, bias = e.v(params["scale"]), e.v(params["bias"])
    y = e.out(node)
    mix = e.kernels.use("primitives_fused_pointwise.py.jinja", "pw", **_MIXING)
    e.emit(f"{y}_cnt = _ms.index_counts({index}, {codewords}, {scale}.dtype)")
    e.emit(f"{y}_g = {mix}({y}_cnt, {scale}[:, None], {pyrepr(1.0 / per_row)})")
    e.emit(f"{y}_p = {gemm_call(e, x, d_in, [codebook], None, [], [])}")
    call = gemm_call(e, f"{y}_p", codewords, [f"{y}_g"], bias, [], [])
    e.emit(f"{y} = {call}.view({x}.shape[:-1] + ({out},))")


def rule_routed_mlp(e: Emitter, group: Group) -> None:
    """routed_mlp (SPEC §5.2): the gate scores by a GEMM fragment (learned routing), then the
    routed grouped MLP of procedural_routed_mlp.py.jinja (routing, sort, grouped GEMMs)."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    d = last_dim(e.graph, ports["x"])
    learned = node.attr("route") == "learned"
    act = OPS[str(node.attr("act"))]
    grad = dict(act.triton_grad)["x"]
    y = e.out(node)
    if learned:
        gate = gemm_call(e, x, d, [e.v(params["gate.weight"])], e.v(params["gate.bias"]), [], [])
        route = f"{y}_s"
        e.emit(f"{route} = {gate}")
    else:
        route = e.v(ports["tokens"])
    fn = e.kernels.use(
        "procedural_routed_mlp.py.jinja",
        "rmlp",
        groups=int(node.attr("groups")),
        active=int(node.attr("active")),
        learned=learned,
        act_f=act.triton.format(x="z"),
        act_df=grad.format(x="z", y="h", g="1.0"),
    )
    w1, b1 = e.v(params["fc1.weight"]), e.v(params["fc1.bias"])
    w2, b2 = e.v(params["fc2.weight"]), e.v(params["fc2.bias"])
    e.emit(f"{y} = {fn}({x}, {route}, {w1}, {b1}, {w2}, {b2})")


PROCEDURAL_RULES = {"demopack_linear": rule_demopack_linear, "routed_mlp": rule_routed_mlp}
