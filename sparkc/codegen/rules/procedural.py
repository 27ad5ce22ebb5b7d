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


def rule_lora_linear(e: Emitter, group: Group) -> None:
    """The hypernetwork as four small GEMMs with fused epilogues (gen1 and gen2 with bias and
    gelu, gen_a and gen_b with bias), then one GEMM of x with the base weight whose main loop
    also forms T = x A_bᵀ and whose epilogue adds T Bm_bᵀ (procedural_lora_linear.py.jinja)."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x, meta = e.v(ports["x"]), e.v(ports["meta"])
    d_in, d_meta = last_dim(e.graph, ports["x"]), last_dim(e.graph, ports["meta"])
    out, rank, gen = int(node.attr("out")), int(node.attr("rank")), int(node.attr("gen_dim"))
    y = e.out(node)

    def gen_layer(src: str, k: int, layer: str, steps: list[str]) -> str:
        w, b = e.v(params[f"{layer}.weight"]), e.v(params[f"{layer}.bias"])
        return gemm_call(e, src, k, [w], b, steps, [])

    e.emit(f"{y}_h = {gen_layer(meta, d_meta, 'gen1', ['act:gelu'])}")
    e.emit(f"{y}_h = {gen_layer(f'{y}_h', gen, 'gen2', ['act:gelu'])}")
    e.emit(f"{y}_a = {gen_layer(f'{y}_h', gen, 'gen_a', [])}.view(-1, {rank}, {d_in})")
    e.emit(f"{y}_b = {gen_layer(f'{y}_h', gen, 'gen_b', [])}.view(-1, {out}, {rank})")
    fn = e.kernels.use("procedural_lora_linear.py.jinja", "lora")
    base_w, base_b = e.v(params["base.weight"]), e.v(params["base.bias"])
    e.emit(f"{y} = {fn}({x}, {base_w}, {base_b}, {y}_a, {y}_b)")


PROCEDURAL_RULES = {"demopack_linear": rule_demopack_linear, "lora_linear": rule_lora_linear}
