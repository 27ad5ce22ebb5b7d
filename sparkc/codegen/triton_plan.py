"""Fusion plan → the Triton path of the generated module and its kernels file.

Consumes the graph and its `FusionPlan` (sparkc/passes/fuse.py); produces
- the lines of `_forward_triton` (straight-line calls of kernel fragments, in a topological
  order of the groups), and
- `kernels.py`: the prelude plus one rendered fragment per distinct (template, context); two
  groups that need the same specialisation share one fragment.

`GROUP_RULES` maps a group kind to the function that emits its code (a rule table: adding a
kernel family is adding an entry). Every fragment entry point is differentiable (an
autograd.Function with Triton backward kernels), so `loss.backward()` runs generated kernels.
Kinds whose kernels do not exist yet (`reference`) call the op's reference rule inside the Triton
path; `KernelSet.reference_ops` lists them and the module reports them in `TRITON_COVERAGE`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

from ..ir.graph import Graph, Node, Value
from ..ir.ops import exact_key
from ..passes.fuse import FusionPlan, Group, fusion_plan
from .module import ValueNames, param_comment, split_ports
from .names import comment_text
from .pointwise import add_program, build_program
from .render import pyrepr, render
from .rules_hspmn import HSPMN_RULES
from .rules_procedural import PROCEDURAL_RULES
from .rules_spark_k import SPARK_K_RULES
from .rules_spd import SPD_RULES
from .rules_splat import SPLAT_RULES


@dataclass
class KernelSet:
    """The fragments of one generated module, deduplicated by (template, context)."""

    fragments: list[tuple[str, str, dict]] = field(default_factory=list)  # (name, template, ctx)
    reference_ops: list[str] = field(default_factory=list)
    _index: dict[tuple, str] = field(default_factory=dict)

    def use(self, template: str, family: str, **context) -> str:
        key = (template, tuple(sorted((k, _freeze(v)) for k, v in context.items())))
        if key not in self._index:
            name = f"{family}{len(self.fragments)}"
            self._index[key] = name
            self.fragments.append((name, template, context))
        return "_k." + self._index[key]

    def render(self, header: dict) -> str:
        parts = [render("prelude.py.jinja", **header)]
        for name, template, ctx in self.fragments:
            parts.append(render(template, name=name, **ctx))
        parts.append(render("kernels_tail.py.jinja"))
        return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _freeze(v):
    """A fragment context value as a key: dicts by sorted items, lists like tuples, scalars
    apart where they compare equal but print differently (1, 1.0, True)."""
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, (list, tuple)):
        return ("seq", tuple(_freeze(x) for x in v))
    return exact_key(v)


@dataclass
class Emitter:
    graph: Graph
    names: ValueNames
    kernels: KernelSet
    param_index: dict[str, int]
    used_outside: dict[str, set[Value]]  # group id -> values read outside the group
    lines: list[str] = field(default_factory=list)
    units: list[tuple[tuple[str, ...], list[str]]] = field(default_factory=list)

    def unit(self, node_ids: tuple[str, ...]) -> None:
        """Start collecting the lines of the units' next group (for loss-only guarding)."""
        self.lines = []
        self.units.append((tuple(node_ids), self.lines))

    def v(self, value: Value) -> str:
        return self.names[value]

    def out(self, node: Node, index: int = 0) -> str:
        return self.names[Value(node.id, index)]

    def emit(self, line: str) -> None:
        self.lines.append(line)


def _ports(node: Node) -> tuple[dict[str, Value], dict[str, Value]]:
    ports, params = split_ports(node)
    return dict(ports), dict(params)


def _width(graph: Graph, v: Value) -> int:
    return int(graph.type_of(v).shape[-1])


def _epilogue(e: Emitter, group: Group, anchor_out: Value) -> tuple[list[str], list[str], Node]:
    """Epilogue steps and operand expressions of a GEMM tail; returns the last absorbed node."""
    steps, operands = [], []
    cur_val, last = anchor_out, e.graph.node(group.anchor)
    for k, (nid, step) in enumerate(group.epilogue):
        node = e.graph.node(nid)
        if step.startswith("act:"):
            steps.append(step)
        else:
            other = next(v for v in node.inputs if v != cur_val)
            n = _width(e.graph, other)
            steps.append(f"{step}:r{k}")
            operands.append(f"{e.v(other)}.reshape(-1, {n})")
        cur_val, last = node.out(), node
    return steps, operands, last


def _gemm_call(
    e: Emitter,
    x: str,
    k_in: int,
    weights: list[str],
    bias: str | None,
    steps: list[str],
    operands: list[str],
    dual: bool = False,
) -> str:
    epilogue = (["bias"] if bias else []) + steps
    fn = e.kernels.use("matmul.py.jinja", "mm", epilogue=epilogue, dual=dual)
    args = [f"{x}.reshape(-1, {k_in})", *weights] + ([bias] if bias else []) + operands
    return f"{fn}({', '.join(args)})"


def _shape_of(e: Emitter, x: str, n_out: int) -> str:
    return f"{x}.shape[:-1] + ({n_out},)"


def rule_gemm(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    x = e.v(ports["x"])
    k_in, n_out = _width(e.graph, ports["x"]), int(node.attr("out"))
    bias = e.v(params["bias"]) if "bias" in params else None
    steps, operands, last = _epilogue(e, group, node.out())
    call = _gemm_call(e, x, k_in, [e.v(params["weight"])], bias, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({_shape_of(e, x, n_out)})")


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
    ports, params = _ports(node)
    x = e.v(ports["x"])
    d, hidden = _width(e.graph, ports["x"]), int(node.attr("hidden"))
    h = f"{e.out(node)}_h"
    weights = [e.v(params[w]) for w in first]
    bias1 = e.v(params[first_bias]) if first_bias else None
    e.emit(f"{h} = {_gemm_call(e, x, d, weights, bias1, steps1, [], dual=dual)}")
    steps, operands, last = _epilogue(e, group, node.out())
    bias2 = e.v(params[second_bias]) if second_bias else None
    call = _gemm_call(e, h, hidden, [e.v(params[second])], bias2, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


def rule_mlp(e: Emitter, group: Group) -> None:
    act = e.graph.node(group.anchor).attr("act")
    _ffn(e, group, ["fc1.weight"], "fc1.bias", [f"act:{act}"], "fc2.weight", "fc2.bias")


def rule_swiglu(e: Emitter, group: Group) -> None:
    _ffn(e, group, ["w_gate.weight", "w_up.weight"], None, [], "w_down.weight", None, dual=True)


def project_heads(
    e: Emitter, node: Node, heads: int, kv_heads: int, fused: bool = False
) -> dict[str, str]:
    """q, k, v projections of an attention-like op as [B, N, heads, d] views (GEMM fragments);
    returns the local names by weight ('wq', 'wk', 'wv'). `fused` (for consumers that take
    strided q, k, v): one horizontally fused GEMM over the three weights, whose outputs are
    column blocks of one [B·N, (heads + 2·kv_heads)·d] buffer; otherwise three GEMMs with
    contiguous outputs."""
    ports, params = _ports(node)
    x = e.v(ports["x"])
    d_model = _width(e.graph, ports["x"])
    hd = d_model // heads
    names = ("wq", "wk", "wv")
    proj = {w: f"{e.out(node)}_{w[1]}" for w in names}
    nh = {"wq": heads, "wk": kv_heads, "wv": kv_heads}
    weights = {w: e.v(params[f"{w}.weight"]) for w in names}
    if fused:
        fn = e.kernels.use("matmul.py.jinja", "mm", epilogue=[], dual=False)
        flat = [f"{proj[w]}2" for w in names]
        args = ", ".join(weights[w] for w in names)
        e.emit(f"{', '.join(flat)} = {fn}_many({x}.reshape(-1, {d_model}), {args})")
        for w, f in zip(names, flat):
            e.emit(f"{proj[w]} = {f}.view({x}.shape[0], {x}.shape[1], {nh[w]}, {hd})")
        return proj
    for w in names:
        call = _gemm_call(e, x, d_model, [weights[w]], None, [], [])
        e.emit(f"{proj[w]} = {call}.view({x}.shape[0], {x}.shape[1], {nh[w]}, {hd})")
    return proj


def rule_attention(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    hp = node.attr_dict
    x = e.v(ports["x"])
    d_model = _width(e.graph, ports["x"])
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
    steps, operands, last = _epilogue(e, group, node.out())
    call = _gemm_call(e, f"{o}_a", d_model, [e.v(params["wo.weight"])], None, steps, operands)
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


def rule_rownorm(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    kind = "rms" if node.op == "rmsnorm" else "layer"
    fn = e.kernels.use("rownorm.py.jinja", "norm", kind=kind, residual=False)
    args = [e.v(ports["x"]), e.v(params["weight"])]
    if kind == "layer":
        args.append(e.v(params["bias"]))
    e.emit(f"{e.out(node)} = {fn}({', '.join(args)}, {pyrepr(float(node.attr('eps')))})")


def rule_rownorm_residual(e: Emitter, group: Group) -> None:
    add, norm = (e.graph.node(n) for n in group.nodes)
    _, params = _ports(norm)
    kind = "rms" if norm.op == "rmsnorm" else "layer"
    fn = e.kernels.use("rownorm.py.jinja", "norm", kind=kind, residual=True)
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
    fn = e.kernels.use("softmax.py.jinja", "softmax")
    if dim in (-1, e.graph.type_of(node.inputs[0]).rank - 1):
        e.emit(f"{e.out(node)} = {fn}({x}.contiguous())")
    else:
        e.emit(f"{e.out(node)} = {fn}({x}.movedim({dim}, -1).contiguous()).movedim(-1, {dim})")


def rule_pointwise(e: Emitter, group: Group) -> None:
    prog = build_program(e.graph, group.nodes, "", e.used_outside[group.id])
    ctx = prog.context()
    ctx.pop("name")
    fn = e.kernels.use("fused_pointwise.py.jinja", "pw", **ctx)
    args = [e.v(v) for v in prog.inputs] + [pyrepr(c) for c in prog.scalars]
    outs = [e.v(v) for v, _ in prog.outputs]
    target = outs[0] if len(outs) == 1 else ", ".join(outs)
    e.emit(f"{target} = {fn}({', '.join(args)})")


def _ids_unchecked(e: Emitter, embed: Node) -> bool:
    """Whether the embedding's launcher must check the ids itself: ids straight from a model
    input were checked by `checks.check_inputs` (RULES), computed ids were not."""
    return e.graph.node(_ports(embed)[0]["tokens"].node).op != "input"


def rule_embed_pos(e: Emitter, group: Group) -> None:
    emb, pos = (e.graph.node(n) for n in group.nodes)
    tokens = e.v(_ports(emb)[0]["tokens"])
    fn = e.kernels.use("embedding.py.jinja", "emb", pos=True)
    w, p = e.v(_ports(emb)[1]["weight"]), e.v(_ports(pos)[1]["weight"])
    check = _ids_unchecked(e, emb)
    e.emit(f"{e.out(pos)} = {fn}({tokens}, {w}, {p}, check_ids={check})")


def rule_embed(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    fn = e.kernels.use("embedding.py.jinja", "emb", pos=False)
    check = _ids_unchecked(e, node)
    e.emit(
        f"{e.out(node)} = {fn}({e.v(ports['tokens'])}, {e.v(params['weight'])}, check_ids={check})"
    )


def rule_pos_embed(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    x, w = e.v(ports["x"]), e.v(params["weight"])
    e.emit(f"_ms.check_positions({x}.shape[1], {w}.shape[0], {pyrepr(node.scope)})")
    fn = e.kernels.use("fused_pointwise.py.jinja", "pw", **add_program())
    e.emit(f"{e.out(node)} = {fn}({x}, {w}[: {x}.shape[1]])")


def rule_conv1d(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    fn = e.kernels.use(
        "conv1d.py.jinja", "conv", kernel=int(node.attr("kernel")), causal=bool(node.attr("causal"))
    )
    e.emit(
        f"{e.out(node)} = {fn}({e.v(ports['x'])}, {e.v(params['weight'])}, {e.v(params['bias'])})"
    )


def rule_rope(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    fn = e.kernels.use("rope.py.jinja", "rope")
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
    fn = e.kernels.use("mean.py.jinja", "mean")
    e.emit(f"{e.out(node)} = {fn}({e.v(node.inputs[0])})")


def rule_cross_entropy(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    logits, targets = (e.v(v) for v in node.inputs)
    v = _width(e.graph, node.inputs[0])
    fn = e.kernels.use("cross_entropy.py.jinja", "ce")
    e.emit(
        f"{e.out(node)} = {fn}({logits}.reshape(-1, {v}), {targets}.reshape(-1), "
        f"{int(node.attr('ignore_index'))})"
    )


def rule_linear_ce(e: Emitter, group: Group) -> None:
    lin, ce = (e.graph.node(n) for n in group.nodes)
    ports, params = _ports(lin)
    h = e.v(ports["x"])
    d = _width(e.graph, ports["x"])
    targets = e.v(ce.inputs[1])
    bias = e.v(params["bias"]) if "bias" in params else "None"
    fn = e.kernels.use("linear_cross_entropy.py.jinja", "lce")
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


GROUP_RULES: dict[str, Callable[[Emitter, Group], None]] = {
    "gemm": rule_gemm,
    "mlp": rule_mlp,
    "swiglu": rule_swiglu,
    "attention": rule_attention,
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
GROUP_RULES.update(SPARK_K_RULES)
GROUP_RULES.update(SPD_RULES)
GROUP_RULES.update(HSPMN_RULES)
GROUP_RULES.update(SPLAT_RULES)
GROUP_RULES.update(PROCEDURAL_RULES)


def group_order(graph: Graph, plan: FusionPlan) -> list[Group]:
    """Groups in a topological order of the contracted graph (ties: anchor order)."""
    of = plan.group_of()
    dag = nx.DiGraph()
    order = {g.id: i for i, g in enumerate(plan.groups)}
    dag.add_nodes_from(order)
    for u, v in graph.nx.edges():
        gu, gv = of.get(u), of.get(v)
        if gu and gv and gu != gv:
            dag.add_edge(gu, gv)
    by_id = {g.id: g for g in plan.groups}
    return [by_id[g] for g in nx.lexicographical_topological_sort(dag, key=order.__getitem__)]


def used_outside(graph: Graph, plan: FusionPlan) -> dict[str, set[Value]]:
    of = plan.group_of()
    out: dict[str, set[Value]] = {g.id: set() for g in plan.groups}
    for node in graph.topo_order():
        for v in node.inputs:
            gid = of.get(v.node)
            if gid is not None and of.get(node.id) != gid:
                out[gid].add(v)
    return out


def triton_units(graph: Graph, names: ValueNames) -> tuple[list, KernelSet, FusionPlan]:
    """(compute units of the Triton path, its kernels, the fusion plan)."""
    plan = fusion_plan(graph)
    kernels = KernelSet()
    e = Emitter(
        graph,
        names,
        kernels,
        {n.id: i for i, n in enumerate(graph.params())},
        used_outside(graph, plan),
    )
    for node in graph.topo_order():
        if node.op == "param":
            e.unit((node.id,))
            e.emit(f"{e.out(node)} = _p[{e.param_index[node.id]}]  # {param_comment(node)}")
        elif node.op == "const":
            e.unit((node.id,))
            e.emit(f"{e.out(node)} = {pyrepr(node.attr('value'))}")
    for group in group_order(graph, plan):
        e.unit(group.nodes)
        GROUP_RULES[group.kind](e, group)
    return e.units, kernels, plan
