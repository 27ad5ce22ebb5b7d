"""Code-generation rules of the SPARK procedural blocks: `demopack_linear` (SPEC §5.3) and
`opcode_tape` (SPEC §5.1, one call of procedural_opcode_tape.py.jinja's fragment).

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


def rule_opcode_tape(e: Emitter, group: Group) -> None:
    """SPEC §5.1 on the two kernels of procedural_opcode_tape.py.jinja (one launch forward, one
    backward): all six outputs come from the one call."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    fn = e.kernels.use("procedural_opcode_tape.py.jinja", "tape")
    outs = ", ".join(e.out(node, i) for i in range(len(node.types)))
    ins = ", ".join(e.v(ports[p]) for p in ("ops", "args", "has_arg"))
    budget, capacity = int(node.attr("budget")), int(node.attr("capacity"))
    # Opcodes straight from a model input were checked by the module's RULES; computed ones
    # are checked by the entry (SPEC: an opcode outside -1..8 is a run-time error).
    check = e.graph.node(ports["ops"].node).op != "input"
    tail = ", check_ops=True" if check else ""
    e.emit(f"{outs} = {fn}({ins}, {e.v(params['branch'])}, {budget}, {capacity}{tail})")


PROCEDURAL_RULES = {
    "demopack_linear": rule_demopack_linear,
    "opcode_tape": rule_opcode_tape,
}
