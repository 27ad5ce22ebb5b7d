"""Code-generation rules of the primitive ops: GEMMs, norms, softmax, pointwise, embeddings, ...

Consumes a fusion `Group` of one of the kinds in `PRIMITIVE_RULES` (see `sparkc/passes/fuse.py`)
and the `Emitter` of `codegen/emit.py`; produces the lines of `_forward_triton` that run the
group on generated kernels (and registers the fragments they call):
- gemm / mlp / swiglu: `primitives_matmul.py.jinja` GEMMs whose epilogue takes the group's absorbed
  elementwise tail (mlp's activation and swiglu's gating are the first GEMM's epilogue);
- rownorm (+ a residual add before it), softmax, fused pointwise programs, embeddings (with a
  fused positional add), conv1d, rope, mean, cross entropy and linear + cross entropy on their
  own templates; views and concat as torch calls;
- reference: ops without a kernel call their reference rule inside the Triton path and are
  listed in `KernelSet.reference_ops` (the module's `TRITON_COVERAGE`).
"""

from __future__ import annotations

from collections.abc import Callable

from ...ir.graph import Node
from ...passes.fuse import Group
from ..emit import Emitter, gemm_call, gemm_epilogue, last_dim, ports_of, shape_of
from ..module import split_ports
from ..names import comment_text
from ..pointwise import add_program, build_program
from ..render import pyrepr


def rule_gemm(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    k_in, n_out = last_dim(e.graph, ports["x"]), int(node.attr("out"))
    bias = e.v(params["bias"]) if "bias" in params else None
    steps, operands, last = gemm_epilogue(e, group, node.out())
    call = gemm_call(e, x, k_in, [e.v(params["weight"])], bias, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({shape_of(e, x, n_out)})")


def _ffn(
    e: Emitter,
    group: Group,
    first: list[str],
    first_bias: str | None,
    steps1: list[str],
    second: str,
    second_bias: str | None,
    dual: bool = False,
) -> None:
    """A two-GEMM feed-forward op (mlp, swiglu): the hidden activation is the first GEMM's
    epilogue (or the SwiGLU dual product); the group's epilogue goes on the second GEMM."""
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    d, hidden = last_dim(e.graph, ports["x"]), int(node.attr("hidden"))
    h = f"{e.out(node)}_h"
    weights = [e.v(params[w]) for w in first]
    bias1 = e.v(params[first_bias]) if first_bias else None
    e.emit(f"{h} = {gemm_call(e, x, d, weights, bias1, steps1, [], dual=dual)}")
    steps, operands, last = gemm_epilogue(e, group, node.out())
    bias2 = e.v(params[second_bias]) if second_bias else None
    call = gemm_call(e, h, hidden, [e.v(params[second])], bias2, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


def rule_mlp(e: Emitter, group: Group) -> None:
    act = e.graph.node(group.anchor).attr("act")
    _ffn(e, group, ["fc1.weight"], "fc1.bias", [f"act:{act}"], "fc2.weight", "fc2.bias")


def rule_swiglu(e: Emitter, group: Group) -> None:
    _ffn(e, group, ["w_gate.weight", "w_up.weight"], None, [], "w_down.weight", None, dual=True)


def rule_rownorm(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    kind = "rms" if node.op == "rmsnorm" else "layer"
    fn = e.kernels.use("primitives_rownorm.py.jinja", "norm", kind=kind, residual=False)
    args = [e.v(ports["x"]), e.v(params["weight"])]
    if kind == "layer":
        args.append(e.v(params["bias"]))
    e.emit(f"{e.out(node)} = {fn}({', '.join(args)}, {pyrepr(float(node.attr('eps')))})")


def rule_rownorm_residual(e: Emitter, group: Group) -> None:
    add, norm = (e.graph.node(n) for n in group.nodes)
    _, params = ports_of(norm)
    kind = "rms" if norm.op == "rmsnorm" else "layer"
    fn = e.kernels.use("primitives_rownorm.py.jinja", "norm", kind=kind, residual=True)
    a, b = (e.v(v) for v in add.inputs)
    args = [a, b, e.v(params["weight"])] + ([e.v(params["bias"])] if kind == "layer" else [])
    eps = pyrepr(float(norm.attr("eps")))
    e.emit(
        f"{e.out(norm)}, {e.out(add)} = {fn}({a}.contiguous(), {b}.contiguous(), "
        f"{', '.join(args[2:])}, {eps})"
    )


def rule_softmax(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    x = e.v(node.inputs[0])
    dim = int(node.attr("dim"))
    fn = e.kernels.use("primitives_softmax.py.jinja", "softmax")
    if dim in (-1, e.graph.type_of(node.inputs[0]).rank - 1):
        e.emit(f"{e.out(node)} = {fn}({x}.contiguous())")
    else:
        e.emit(f"{e.out(node)} = {fn}({x}.movedim({dim}, -1).contiguous()).movedim(-1, {dim})")


def rule_pointwise(e: Emitter, group: Group) -> None:
    prog = build_program(e.graph, group.nodes, "", e.used_outside[group.id])
    ctx = prog.context()
    ctx.pop("name")
    fn = e.kernels.use("primitives_fused_pointwise.py.jinja", "pw", **ctx)
    args = [e.v(v) for v in prog.inputs] + [pyrepr(c) for c in prog.scalars]
    outs = [e.v(v) for v, _ in prog.outputs]
    target = outs[0] if len(outs) == 1 else ", ".join(outs)
    e.emit(f"{target} = {fn}({', '.join(args)})")


def _ids_unchecked(e: Emitter, embed: Node) -> bool:
    """Whether the embedding's launcher must check the ids itself: ids straight from a model
    input were checked by `checks.check_inputs` (RULES), computed ids were not."""
    return e.graph.node(ports_of(embed)[0]["tokens"].node).op != "input"


def rule_embed_pos(e: Emitter, group: Group) -> None:
    emb, pos = (e.graph.node(n) for n in group.nodes)
    tokens = e.v(ports_of(emb)[0]["tokens"])
    fn = e.kernels.use("primitives_embedding.py.jinja", "emb", pos=True)
    w, p = e.v(ports_of(emb)[1]["weight"]), e.v(ports_of(pos)[1]["weight"])
    check = _ids_unchecked(e, emb)
    e.emit(f"{e.out(pos)} = {fn}({tokens}, {w}, {p}, check_ids={check})")


def rule_embed(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    fn = e.kernels.use("primitives_embedding.py.jinja", "emb", pos=False)
    check = _ids_unchecked(e, node)
    e.emit(
        f"{e.out(node)} = {fn}({e.v(ports['tokens'])}, {e.v(params['weight'])}, check_ids={check})"
    )


def rule_pos_embed(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    x, w = e.v(ports["x"]), e.v(params["weight"])
    e.emit(f"_ms.check_positions({x}.shape[1], {w}.shape[0], {pyrepr(node.scope)})")
    fn = e.kernels.use("primitives_fused_pointwise.py.jinja", "pw", **add_program())
    e.emit(f"{e.out(node)} = {fn}({x}, {w}[: {x}.shape[1]])")


def rule_conv1d(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    fn = e.kernels.use(
        "primitives_conv1d.py.jinja",
        "conv",
        kernel=int(node.attr("kernel")),
        causal=bool(node.attr("causal")),
    )
    e.emit(
        f"{e.out(node)} = {fn}({e.v(ports['x'])}, {e.v(params['weight'])}, {e.v(params['bias'])})"
    )
    e.fill(node, {"x": e.v(ports["x"])})  # a causal conv's prefill keeps the last kernel−1 rows


def rule_rope(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    fn = e.kernels.use("primitives_rope.py.jinja", "rope")
    e.emit(f"{e.out(node)} = {fn}({e.v(node.inputs[0])}, {pyrepr(float(node.attr('base')))})")


def rule_view(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    x = e.v(node.inputs[0])
    if node.op == "split_heads":
        heads = int(node.attr("heads"))
        e.emit(f"{e.out(node)} = {x}.view({x}.shape[0], {x}.shape[1], {heads}, -1)")
    else:
        e.emit(f"{e.out(node)} = {x}.reshape({x}.shape[0], {x}.shape[1], -1)")


def rule_concat(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    a, b = (e.v(v) for v in node.inputs)
    e.emit(f"{e.out(node)} = _torch.cat([{a}, {b}], dim=-1)")


def rule_mean(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    fn = e.kernels.use("primitives_mean.py.jinja", "mean")
    e.emit(f"{e.out(node)} = {fn}({e.v(node.inputs[0])})")


def rule_cross_entropy(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    logits, targets = (e.v(v) for v in node.inputs)
    v = last_dim(e.graph, node.inputs[0])
    fn = e.kernels.use("primitives_cross_entropy.py.jinja", "ce")
    e.emit(
        f"{e.out(node)} = {fn}({logits}.reshape(-1, {v}), {targets}.reshape(-1), "
        f"{int(node.attr('ignore_index'))})"
    )


def rule_linear_ce(e: Emitter, group: Group) -> None:
    lin, ce = (e.graph.node(n) for n in group.nodes)
    ports, params = ports_of(lin)
    h = e.v(ports["x"])
    d = last_dim(e.graph, ports["x"])
    targets = e.v(ce.inputs[1])
    bias = e.v(params["bias"]) if "bias" in params else "None"
    fn = e.kernels.use("primitives_linear_cross_entropy.py.jinja", "lce")
    e.emit(
        f"{e.out(ce)} = {fn}({h}.reshape(-1, {d}), {e.v(params['weight'])}, {bias}, "
        f"{targets}.reshape(-1), {int(ce.attr('ignore_index'))})"
    )


def rule_reference(e: Emitter, group: Group) -> None:
    for nid in group.nodes:
        node = e.graph.node(nid)
        if node.op not in e.kernels.reference_ops:
            e.kernels.reference_ops.append(node.op)
        ports, params = split_ports(node)
        ins = "{" + ", ".join(f"{pyrepr(k)}: {e.v(v)}" for k, v in ports) + "}"
        prm = "{" + ", ".join(f"{pyrepr(k)}: {e.v(v)}" for k, v in params) + "}"
        outs = [e.out(node, i) for i in range(len(node.types))]
        target = outs[0] + "," if len(outs) == 1 else ", ".join(outs)
        e.emit(
            f"{target} = _REF[{pyrepr(node.op)}]({ins}, {prm}, {pyrepr(dict(node.attrs))}, _ctx)"
            f"  # {comment_text(node.scope)} (no kernel yet)"
        )


PRIMITIVE_RULES: dict[str, Callable[[Emitter, Group], None]] = {
    "gemm": rule_gemm,
    "mlp": rule_mlp,
    "swiglu": rule_swiglu,
    "rownorm": rule_rownorm,
    "rownorm_residual": rule_rownorm_residual,
    "softmax": rule_softmax,
    "pointwise": rule_pointwise,
    "embed_pos": rule_embed_pos,
    "embed": rule_embed,
    "pos_embed": rule_pos_embed,
    "conv1d": rule_conv1d,
    "rope": rule_rope,
    "view": rule_view,
    "concat": rule_concat,
    "mean": rule_mean,
    "cross_entropy": rule_cross_entropy,
    "linear_ce": rule_linear_ce,
    "reference": rule_reference,
}
