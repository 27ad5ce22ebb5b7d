"""What a code-generation rule writes with: the emitter, the kernel set and the GEMM helpers.

Consumes a fusion `Group` (sparkc/passes/fuse.py) and the IR graph it belongs to; produces, for
the rules of `codegen/rules/` (one module per op family),
- `Emitter`: the lines of `_forward_triton`, collected per compute unit (a group), with the
  generated names of the graph's values (`e.v(value)`, `e.out(node, i)`), and how a prefill
  fills each sequence mixer's decoding state from the group's tensors (`e.fill`);
- `KernelSet`: the kernel fragments the lines call, one per distinct (template, context), named
  `<family><k>` and reached as `_k.<name>`; `render` writes `kernels.py`;
- the helpers every family shares: a node's ports (`ports_of`), a value's last dimension
  (`last_dim`), a GEMM call with a fused epilogue (`gemm_call`, `gemm_epilogue`), the output
  shape of a projection (`shape_of`) and the q/k/v projections of an attention-like op
  (`project_heads`).
This module imports no rule and no planner: the rules import it, the hub
(`codegen/triton_plan.py`) drives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value
from ..ir.ops import exact_key
from ..passes.fuse import Group
from .module import ValueNames, split_ports
from .render import render


@dataclass
class KernelSet:
    """The fragments of one generated module, deduplicated by (template, context)."""

    fragments: list[tuple[str, str, dict]] = field(default_factory=list)  # (name, template, ctx)
    reference_ops: list[str] = field(default_factory=list)
    _index: dict[tuple, str] = field(default_factory=dict)

    def use(self, template: str, family: str, **context) -> str:
        key = (template, tuple(sorted((k, freeze(v)) for k, v in context.items())))
        if key not in self._index:
            name = f"{family}{len(self.fragments)}"
            self._index[key] = name
            self.fragments.append((name, template, context))
        return "_k." + self._index[key]

    def use_matmul(self, **context) -> str:
        """A GEMM fragment (primitives_matmul.py.jinja) bound to the module's one shared strided
        GEMM / column-sum / tile-chooser fragment (primitives_gemm_shared.py.jinja)."""
        tf32 = {k: v for k, v in context.items() if k == "allow_tf32"}  # the one shared choice
        shared = self.use("primitives_gemm_shared.py.jinja", "gemm", **tf32)
        return self.use("primitives_matmul.py.jinja", "mm", shared=shared[len("_k.") :], **context)

    def render(self, header: dict) -> str:
        parts = [render("prelude.py.jinja", **header)]
        for name, template, ctx in self.fragments:
            parts.append(render(template, name=name, **ctx))
        parts.append(render("kernels_tail.py.jinja"))
        return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def freeze(v):
    """A fragment context value as a key: dicts by sorted items, lists like tuples, scalars
    apart where they compare equal but print differently (1, 1.0, True)."""
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, freeze(x)) for k, x in v.items())))
    if isinstance(v, (list, tuple)):
        return ("seq", tuple(freeze(x) for x in v))
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
    fills: dict[str, dict[str, str]] = field(default_factory=dict)  # node id -> fill tensors
    # (unit index, line index) -> the line a prefill runs instead (`emit(..., prefill=...)`)
    prefill_lines: dict[tuple[int, int], str] = field(default_factory=dict)

    def unit(self, node_ids: tuple[str, ...]) -> None:
        """Start collecting the lines of the units' next group (for loss-only guarding)."""
        self.lines = []
        self.units.append((tuple(node_ids), self.lines))

    def v(self, value: Value) -> str:
        return self.names[value]

    def out(self, node: Node, index: int = 0) -> str:
        return self.names[Value(node.id, index)]

    def emit(self, line: str, prefill: str | None = None) -> None:
        """Append `line`; `prefill`: the line the prefill body runs in its place (a kernel call
        that also returns what the group's fill needs, e.g. intermediates the forward drops)."""
        if prefill is not None:
            self.prefill_lines[(len(self.units) - 1, len(self.lines))] = prefill
        self.lines.append(line)

    def fill(self, node: Node, tensors: dict[str, str]) -> None:
        """How a prefill (a cache's first call on the Triton path, codegen/decode.py) fills the
        decoding state of `node`, a sequence mixer of this group, from tensors the group's
        lines already computed: names or expressions by the keys of the op's fill rule
        (`DECODE_FILLS` of sparkc.runtime.reference; `{}`: nothing to keep). A mixer whose
        rule records none runs its cached step rule in the prefill instead of its kernels."""
        self.fills[node.id] = tensors


def ports_of(node: Node) -> tuple[dict[str, Value], dict[str, Value]]:
    """(tensor ports by name, parameters by name) of an op instance."""
    ports, params = split_ports(node)
    return dict(ports), dict(params)


def last_dim(graph: Graph, v: Value) -> int:
    return int(graph.type_of(v).shape[-1])


def gemm_epilogue(e: Emitter, group: Group, anchor_out: Value) -> tuple[list[str], list[str], Node]:
    """Epilogue steps and operand expressions of a GEMM tail; returns the last absorbed node."""
    steps, operands = [], []
    cur_val, last = anchor_out, e.graph.node(group.anchor)
    for k, (nid, step) in enumerate(group.epilogue):
        node = e.graph.node(nid)
        if step.startswith("act:"):
            steps.append(step)
        else:
            other = next(v for v in node.inputs if v != cur_val)
            n = last_dim(e.graph, other)
            steps.append(f"{step}:r{k}")
            operands.append(f"{e.v(other)}.reshape(-1, {n})")
        cur_val, last = node.out(), node
    return steps, operands, last


def gemm_call(
    e: Emitter,
    x: str,
    k_in: int,
    weights: list[str],
    bias: str | None,
    steps: list[str],
    operands: list[str],
    dual: bool = False,
) -> str:
    """A call of the GEMM fragment `x [.., k_in] @ weightsᵀ` with the bias and `steps` fused."""
    fused = (["bias"] if bias else []) + steps
    fn = e.kernels.use_matmul(epilogue=fused, dual=dual)
    args = [f"{x}.reshape(-1, {k_in})", *weights] + ([bias] if bias else []) + operands
    return f"{fn}({', '.join(args)})"


def shape_of(e: Emitter, x: str, n_out: int) -> str:
    return f"{x}.shape[:-1] + ({n_out},)"


def project_heads(
    e: Emitter, node: Node, heads: int, kv_heads: int, fused: bool = False
) -> dict[str, str]:
    """q, k, v projections of an attention-like op as [B, N, heads, d] views (GEMM fragments);
    returns the local names by weight ('wq', 'wk', 'wv'). `fused` (for consumers that take
    strided q, k, v): one horizontally fused GEMM over the three weights, whose outputs are
    column blocks of one [B·N, (heads + 2·kv_heads)·d] buffer; otherwise three GEMMs with
    contiguous outputs."""
    ports, params = ports_of(node)
    x = e.v(ports["x"])
    d_model = last_dim(e.graph, ports["x"])
    hd = d_model // heads
    names = ("wq", "wk", "wv")
    proj = {w: f"{e.out(node)}_{w[1]}" for w in names}
    nh = {"wq": heads, "wk": kv_heads, "wv": kv_heads}
    weights = {w: e.v(params[f"{w}.weight"]) for w in names}
    if fused:
        fn = e.kernels.use_matmul(epilogue=[], dual=False)
        flat = [f"{proj[w]}2" for w in names]
        args = ", ".join(weights[w] for w in names)
        e.emit(f"{', '.join(flat)} = {fn}_many({x}.reshape(-1, {d_model}), {args})")
        for w, f in zip(names, flat):
            e.emit(f"{proj[w]} = {f}.view({x}.shape[0], {x}.shape[1], {nh[w]}, {hd})")
        return proj
    for w in names:
        call = gemm_call(e, x, d_model, [weights[w]], None, [], [])
        e.emit(f"{proj[w]} = {call}.view({x}.shape[0], {x}.shape[1], {nh[w]}, {hd})")
    return proj
