"""Code-generation rules of the SPARK procedural blocks: `demopack_linear` (SPEC §5.3),
`lora_linear` (SPEC §5.4), `opcode_tape` (SPEC §5.1, one call of procedural_opcode_tape.py.jinja's
fragment) and `routed_mlp` (SPEC §5.2, procedural_routed_mlp.py.jinja); docs/kernels/procedural.md
and docs/kernels/procedural_routed_mlp.md have the designs and the FLOP counts.

Consumes a fusion `Group` of kind "demopack_linear", "lora_linear", "opcode_tape" or "routed_mlp" and the `Emitter` of
`codegen/emit.py`; produces the lines of `_forward_triton`:
- demopack_linear, the lookup form, never writing the decoded weight W [out, in]:
      P = x · codebookᵀ                                   [M, codewords]  (GEMM fragment)
      y = P · Gᵀ + bias, G_rc = scale_r/per_row · #{j: index_rj = c}   (GEMM fragment, bias fused)
  2·M·codewords·(in + out) FLOPs on tensor cores instead of 2·M·in·out (0.31× at in = 1024,
  out = 4096, 256 codewords); G [out, codewords] comes from procedural_demopack.py.jinja.
- lora_linear: the hypernetwork in one kernel (four GEMM fragments with fused bias/gelu
  epilogues when gen_dim > 128), then one GEMM of x with the base weight that forms T = x A_bᵀ in its main loop and adds
  T Bm_bᵀ in its epilogue (procedural_lora_linear.py.jinja; the hypernetwork: procedural_lora_hyper.py.jinja); no
  [B, out, in] weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...ir.ops import OPS
from ..emit import Emitter, gemm_call, last_dim, ports_of

if TYPE_CHECKING:
    from ...passes.fuse import Group


def rule_demopack_linear(e: Emitter, group: Group) -> None:
    """P = x·codebookᵀ and y = P·Gᵀ + bias as GEMM fragments, G the index table's mixing matrix
    from procedural_demopack.py.jinja (differentiable in scale)."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    d_in, out = last_dim(e.graph, ports["x"]), int(node.attr("out"))
    codebook, index = e.v(params["codebook"]), e.v(params["index"])
    scale, bias = e.v(params["scale"]), e.v(params["bias"])
    y = e.out(node)
    fn = e.kernels.use("procedural_demopack.py.jinja", "demopack")
    e.emit(f"{y}_p = {gemm_call(e, x, d_in, [codebook], None, [], [])}")
    codewords = int(node.attr("codewords"))
    e.emit(f"{y}_g = {fn}_mixing({scale}, {index}, {codewords}, {y}_p.dtype)")
    e.emit(f"{y} = {gemm_call(e, f'{y}_p', codewords, [f'{y}_g'], bias, [], [])}")
    e.emit(f"{y} = {y}.view({x}.shape[:-1] + ({out},))")


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


# The hypernetwork runs as one kernel while gen2's [gen_dim, gen_dim] weight and a
# [128, gen_dim] block of gen_a/gen_b sit in registers; larger generators use GEMM fragments.
HYPER_MAX_GEN = 128
GEN_LAYERS = ("gen1", "gen2", "gen_a", "gen_b")


def rule_lora_linear(e: Emitter, group: Group) -> None:
    """The hypernetwork in one kernel (forward; three backward), then one GEMM of x with the base weight whose main loop
    also forms T = x A_bᵀ and whose epilogue adds T Bm_bᵀ (procedural_lora_linear.py.jinja)."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x, meta = e.v(ports["x"]), e.v(ports["meta"])
    d_in, d_meta = last_dim(e.graph, ports["x"]), last_dim(e.graph, ports["meta"])
    out, rank, gen = int(node.attr("out")), int(node.attr("rank")), int(node.attr("gen_dim"))
    y = e.out(node)

    fn = e.kernels.use("procedural_lora_linear.py.jinja", "lora")
    gens = [e.v(params[f"{layer}.{part}"]) for layer in GEN_LAYERS for part in ("weight", "bias")]
    if gen <= HYPER_MAX_GEN:
        hyper = e.kernels.use("procedural_lora_hyper.py.jinja", "lorah")
        e.emit(f"{y}_a, {y}_b = {hyper}({meta}.reshape(-1, {d_meta}), {', '.join(gens)})")
    else:  # gen2's weight no longer fits on chip: four GEMM fragments with fused epilogues
        w1, b1, w2, b2, wa, ba, wb, bb = gens
        e.emit(f"{y}_h = {gemm_call(e, meta, d_meta, [w1], b1, ['act:gelu'], [])}")
        e.emit(f"{y}_h = {gemm_call(e, f'{y}_h', gen, [w2], b2, ['act:gelu'], [])}")
        e.emit(f"{y}_a = {gemm_call(e, f'{y}_h', gen, [wa], ba, [], [])}")
        e.emit(f"{y}_b = {gemm_call(e, f'{y}_h', gen, [wb], bb, [], [])}")
    e.emit(f"{y}_a = {y}_a.view(-1, {rank}, {d_in})")
    e.emit(f"{y}_b = {y}_b.view(-1, {out}, {rank})")
    base_w, base_b = e.v(params["base.weight"]), e.v(params["base.bias"])
    e.emit(f"{y} = {fn}({x}, {base_w}, {base_b}, {y}_a, {y}_b)")


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


PROCEDURAL_RULES = {
    "demopack_linear": rule_demopack_linear,
    "lora_linear": rule_lora_linear,
    "opcode_tape": rule_opcode_tape,
    "routed_mlp": rule_routed_mlp,
}
