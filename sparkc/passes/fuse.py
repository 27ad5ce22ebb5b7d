"""Operator fusion: partition the op nodes of the graph into kernel groups.

Consumes a verified, optimised graph; produces a `FusionPlan` (stored in `graph.meta["fusion"]`
by the pipeline's `fuse` stage): an ordered list of `Group`s, each one generated kernel family
invocation (anchor op plus the nodes it absorbs). The graph itself is not rewritten, so the IR
text, the verifier and the reference path see the same graph; code generation,
`sparkc compile --emit fused` and `sparkc graph --after fuse` read the plan.

Fusion rules, in the order they are applied (each is a table lookup, never an op ladder):
1. `embed` → `pos_embed` (single use): one gather kernel adding the position rows.
2. `linear` → `cross_entropy` (the logits' only use): the fused LM-head loss; [B, N, V] logits
   are never stored.
3. A residual `add` of two same-shape tensors read by a norm: the norm kernel takes both
   operands, stores their sum (still readable by other users) and normalises it.
4. GEMM tails (`KERNELS[op].tail`): a GEMM whose output has one use absorbs, as its epilogue, an
   activation (only right after a bare `linear`), then any number of `mul` by a same-shape
   tensor, then one residual `add` of a same-shape tensor.
5. Elementwise chains (`pointwise` kind) of one output shape merge into one kernel when no path
   leaves the group and comes back (no cycle through the contracted graph); values used outside
   the group become its outputs. Inputs may broadcast (a bias row).
6. Everything else is a group of one node; ops with no kernel yet, and elementwise ops whose
   result is an integer or bool tensor, run their reference rule inside the Triton path (listed
   by `--emit fused` as `reference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..ir.graph import SPECIAL_OPS, Graph, Node
from ..ir.types import DType


@dataclass(frozen=True)
class KernelRule:
    kind: str  # the code generator's rule name for a group anchored at this op
    tail: str = ""  # "gemm": the op ends in a GEMM that can take an epilogue


ELEMENTWISE = ("relu", "gelu", "silu", "sigmoid", "tanh", "neg", "add", "sub", "mul", "div")
ACTIVATIONS = ("relu", "gelu", "silu", "sigmoid", "tanh")

KERNELS: dict[str, KernelRule] = {
    "linear": KernelRule("gemm", tail="gemm"),
    "mlp": KernelRule("mlp", tail="gemm"),
    "swiglu": KernelRule("swiglu", tail="gemm"),
    "attention": KernelRule("attention", tail="gemm"),
    "embed": KernelRule("embed"),
    "pos_embed": KernelRule("pos_embed"),
    "rmsnorm": KernelRule("rownorm"),
    "layernorm": KernelRule("rownorm"),
    "softmax": KernelRule("softmax"),
    "conv1d": KernelRule("conv1d"),
    "rope": KernelRule("rope"),
    "split_heads": KernelRule("view"),
    "merge_heads": KernelRule("view"),
    "concat": KernelRule("concat"),
    "mean": KernelRule("mean"),
    "cross_entropy": KernelRule("cross_entropy"),
    **{op: KernelRule("pointwise") for op in ELEMENTWISE},
    "fk_attention": KernelRule("fk_attention", tail="gemm"),
    "verifier_stack": KernelRule("verifier_stack"),
    "spd_router": KernelRule("spd_router"),
    "token_router": KernelRule("token_router"),
    "trajectory": KernelRule("trajectory"),
    "splat_attention": KernelRule("splat_attention", tail="gemm"),
    "demopack_linear": KernelRule("demopack_linear"),
    # Block ops whose kernels come with their own issues run their reference rule for now.
    **{
        op: KernelRule("reference")
        for op in (
            "sqdk_attention",
            "opcode_tape",
            "routed_mlp",
            "lora_linear",
        )
    },
}


@dataclass(frozen=True)
class Group:
    id: str
    kind: str
    nodes: tuple[str, ...]  # anchor first, then absorbed nodes in topological order
    epilogue: tuple[tuple[str, str], ...] = ()  # (node id, step) absorbed by a GEMM tail

    @property
    def anchor(self) -> str:
        return self.nodes[0]


@dataclass
class FusionPlan:
    groups: list[Group] = field(default_factory=list)

    def group_of(self) -> dict[str, str]:
        return {n: g.id for g in self.groups for n in g.nodes}

    def describe(self, graph: Graph) -> str:
        """The `--emit fused` text: one line per kernel group."""
        lines = [f"fused {graph.name} ({len(self.groups)} groups)"]
        for g in self.groups:
            nodes = [graph.node(n) for n in g.nodes]
            members = ", ".join(f"{n.op}" + (f" [{n.scope}]" if n.scope else "") for n in nodes)
            extra = ""
            if g.epilogue:
                extra = "  epilogue: " + ", ".join(step for _, step in g.epilogue)
            lines.append(f"  {g.id} {g.kind}: {members}{extra}")
        return "\n".join(lines) + "\n"


def _single_user(graph: Graph, node: Node, index: int = 0) -> Node | None:
    """The one op that reads output `index` of `node`, if exactly one node reads it once."""
    readers = [u for u in graph.users(node.id) for v in u.inputs if v == node.out(index)]
    if len(readers) != 1 or readers[0].op in SPECIAL_OPS:
        return None
    return readers[0]


def _other_operand(node: Node, value) -> object | None:
    others = [v for v in node.inputs if v != value]
    return others[0] if len(others) == 1 else None


def _absorb_tail(graph: Graph, anchor: Node, taken: set[str]) -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    cur = anchor
    out_type = anchor.types[0]
    allow_act = anchor.op == "linear"
    while True:
        user = _single_user(graph, cur)
        if user is None or user.id in taken or user.types[0] != out_type:
            break
        if allow_act and user.op in ACTIVATIONS:
            steps.append((user.id, f"act:{user.op}"))
            allow_act = False
        elif user.op in ("mul", "add"):
            other = _other_operand(user, cur.out())
            if other is None or graph.type_of(other) != out_type:
                break
            steps.append((user.id, user.op))
            allow_act = False
            if user.op == "add":
                cur = user
                break
        else:
            break
        cur = user
    return steps


def plan_fusion(graph: Graph, enabled: bool = True) -> FusionPlan:
    """The kernel groups of `graph`; `enabled=False` gives one group per op node (the unfused
    plan the property tests compare against)."""
    ops = [n for n in graph.topo_order() if n.op not in SPECIAL_OPS]
    if not enabled:
        return FusionPlan([Group(f"k{k}", _kind(n), (n.id,)) for k, n in enumerate(ops)])
    taken: set[str] = set()
    groups: list[tuple[str, list[str], list[tuple[str, str]]]] = []  # (kind, nodes, epilogue)
    member: dict[str, int] = {}

    def new_group(kind: str, nodes: list[str], epilogue=()) -> None:
        for n in nodes:
            taken.add(n)
            member[n] = len(groups)
        groups.append((kind, nodes, list(epilogue)))

    for node in ops:
        if node.id in taken:
            continue
        rule = KERNELS[node.op]
        if _kind(node) == "reference":
            new_group("reference", [node.id])
            continue
        user = _single_user(graph, node)
        if node.op == "embed" and user is not None and user.op == "pos_embed":
            new_group("embed_pos", [node.id, user.id])
        elif (
            node.op == "linear"
            and user is not None
            and user.op == "cross_entropy"
            and user.inputs[0] == node.out()
        ):
            new_group("linear_ce", [node.id, user.id])
        elif node.op == "add" and _norm_reader(graph, node, taken) is not None:
            new_group("rownorm_residual", [node.id, _norm_reader(graph, node, taken).id])
        elif rule.tail == "gemm":
            steps = _absorb_tail(graph, node, taken)
            new_group(rule.kind, [node.id, *(s[0] for s in steps)], steps)
        elif rule.kind == "pointwise":
            _merge_pointwise(graph, node, groups, member, new_group)
        else:
            new_group(rule.kind, [node.id])
    plan = FusionPlan()
    # Number groups by the position of their anchor in topological order.
    for k, (kind, nodes, epilogue) in enumerate(groups):
        plan.groups.append(Group(f"k{k}", kind, tuple(nodes), tuple(epilogue)))
    return plan


def _kind(node: Node) -> str:
    """The kernel kind of a node. Elementwise ops on integers or bools (`-t`, `t + 1`, `m * m`)
    run their reference rule: the pointwise kernels compute in float32, which would change the
    result's dtype and round large integers, and integer values take no gradient."""
    kind = KERNELS[node.op].kind
    if kind == "pointwise" and node.types[0].dtype is not DType.FLOAT:
        return "reference"
    return kind


def _norm_reader(graph: Graph, add: Node, taken: set[str]) -> Node | None:
    """A norm reading the output of a residual `add` of two same-shape tensors: the norm kernel
    computes the sum as its prologue and stores it once (the residual stream) beside its output."""
    t = add.types[0]
    if any(graph.type_of(v) != t for v in add.inputs):
        return None
    for user in graph.users(add.id):
        if (
            user.op in ("rmsnorm", "layernorm")
            and user.id not in taken
            and user.inputs[0] == add.out()
        ):
            return user
    return None


def _merge_pointwise(graph: Graph, node: Node, groups, member, new_group) -> None:
    """Put `node` into the pointwise group of one of its producers when that is legal."""
    shape = node.types[0]
    g = graph.nx
    for v in node.inputs:
        k = member.get(v.node)
        if k is None or groups[k][0] != "pointwise":
            continue
        first = graph.node(groups[k][1][0])
        if first.types[0] != shape:
            continue
        group_nodes = set(groups[k][1])
        # Legal when no other input of `node` depends on the group through outside nodes.
        if any(
            w.node not in group_nodes and (nx.ancestors(g, w.node) & group_nodes)
            for w in node.inputs
        ):
            continue
        groups[k][1].append(node.id)
        member[node.id] = k
        return
    new_group("pointwise", [node.id])


def fusion_plan(graph: Graph) -> FusionPlan:
    """The plan the `fuse` pass stored, computing it when the pass did not run."""
    plan = graph.meta.get("fusion")
    if plan is None:
        plan = plan_fusion(graph)
        graph.meta["fusion"] = plan
    return plan
