"""Operator fusion: partition the op nodes of the graph into kernel groups.

Consumes a verified, optimised graph; produces a `FusionPlan`: an ordered list of `Group`s, each
one generated kernel family invocation (anchor op plus the nodes it absorbs). Fusion is the
pipeline's named `fuse` stage (sparkc/pipeline.py stores the plan in `graph.meta["fusion"]`),
not a registered pass: it annotates the graph and never rewrites it, so the IR text, the
verifier and the reference path see the same graph. `sparkc compile --emit fused` and `sparkc
graph --after fuse` show the plan; code generation reads it through `fusion_plan(graph)`, which
never computes one (a graph that skipped the stage is a CompilerBug). `generate(...,
fuse=False)` replaces the stored plan by the one-op-per-group `plan_fusion(graph,
enabled=False)`.

Every decision reads traits of the op specs (sparkc/ir/ops/), never an op name. In the order
they are applied:
1. Pair rules (`OpSpec.pairs`, keyed by the reader's kernel kind): `embed` → `pos_embed` (the
   sole reader): one gather kernel adding the position rows; `linear` → `cross_entropy` (the
   logits' only use): the fused LM-head loss, [B, N, V] logits are never stored; a residual
   `add` of two same-shape tensors read by a norm (`rownorm` kind): the norm kernel takes both
   operands, stores their sum (still readable by other users) and normalises it.
2. GEMM tails (`OpSpec.gemm_tail`): a GEMM whose output has one use absorbs, as its epilogue
   (`OpSpec.epilogue` of the readers), an activation (only right after a bare `linear`, kind
   `gemm`; role `act`), then any number of `mul` by a same-shape tensor (role `scale`), then one
   `add` of a same-shape tensor (role `residual`).
3. Elementwise chains (`pointwise` kind) of one output shape merge into one kernel when no path
   leaves the group and comes back (no cycle through the contracted graph); values used outside
   the group become its outputs. Inputs may broadcast (a bias row).
4. Everything else is a group of one node of its op's kernel kind (`OpSpec.kernel`); ops with no
   kernel yet (kind `reference`), and elementwise ops whose result is an integer or bool tensor,
   run their reference rule inside the Triton path (listed by `--emit fused` as `reference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..diagnostics import CompilerBug
from ..ir.graph import SPECIAL_OPS, Graph, Node
from ..ir.ops import OPS, PairRule
from ..ir.types import DType


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
    allow_act = OPS[anchor.op].kernel == "gemm"  # a bare linear
    while True:
        user = _single_user(graph, cur)
        if user is None or user.id in taken or user.types[0] != out_type:
            break
        role = OPS[user.op].epilogue
        if allow_act and role == "act":
            steps.append((user.id, f"act:{user.op}"))
            allow_act = False
        elif role in ("scale", "residual"):
            other = _other_operand(user, cur.out())
            if other is None or graph.type_of(other) != out_type:
                break
            steps.append((user.id, user.op))
            allow_act = False
            if role == "residual":
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
        spec = OPS[node.op]
        kind = _kind(node)
        if kind == "reference":
            new_group("reference", [node.id])
            continue
        pair = _pair(graph, node, spec.pairs, taken)
        if pair is not None:
            rule, reader = pair
            new_group(rule.group, [node.id, reader.id])
        elif spec.gemm_tail:
            steps = _absorb_tail(graph, node, taken)
            new_group(kind, [node.id, *(s[0] for s in steps)], steps)
        elif kind == "pointwise":
            _merge_pointwise(graph, node, groups, member, new_group)
        else:
            new_group(kind, [node.id])
    plan = FusionPlan()
    # Number groups by the position of their anchor in topological order.
    for k, (kind, nodes, epilogue) in enumerate(groups):
        plan.groups.append(Group(f"k{k}", kind, tuple(nodes), tuple(epilogue)))
    return plan


def _kind(node: Node) -> str:
    """The kernel kind of a node. Elementwise ops on integers or bools (`-t`, `t + 1`, `m * m`)
    run their reference rule: the pointwise kernels compute in float32, which would change the
    result's dtype and round large integers, and integer values take no gradient."""
    kind = OPS[node.op].kernel
    if kind == "pointwise" and node.types[0].dtype is not DType.FLOAT:
        return "reference"
    return kind


def _pair(
    graph: Graph, node: Node, rules: tuple[PairRule, ...], taken: set[str]
) -> tuple[PairRule, Node] | None:
    """The first pair rule of `node`'s op that a reader of its output satisfies, with that
    reader. A rule names the reader's kernel kind (`PairRule`): a sole reader (at a given port),
    or, for a residual `add` of two same-shape tensors, any untaken reader taking the sum as its
    first input (the norm kernel computes the sum as its prologue and stores it once, the
    residual stream, beside its output)."""
    for rule in rules:
        if rule.residual:
            reader = _residual_reader(graph, node, rule.reader, taken)
        else:
            reader = _single_user(graph, node)
            if (
                reader is None
                or OPS[reader.op].kernel != rule.reader
                or rule.port is not None
                and reader.inputs[rule.port] != node.out()
            ):
                reader = None
        if reader is not None:
            return rule, reader
    return None


def _residual_reader(graph: Graph, add: Node, kind: str, taken: set[str]) -> Node | None:
    t = add.types[0]
    if any(graph.type_of(v) != t for v in add.inputs):
        return None
    for user in graph.users(add.id):
        if (
            user.op in OPS  # not an `output` or another special node
            and OPS[user.op].kernel == kind
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
    """The plan the `fuse` stage stored (the only place fusion runs; code generation reads it)."""
    plan = graph.meta.get("fusion")
    if plan is None:
        raise CompilerBug(
            "code generation needs the fuse stage's plan (run the pipeline through 'fuse')",
            "fuse",
        )
    return plan
