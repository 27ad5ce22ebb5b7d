"""The IR container: a typed dataflow graph held in a networkx DiGraph.

Nodes are `Node` payloads (frozen dataclasses); an edge u→v exists when v reads an output of u.
Nothing outside this module touches the networkx node dicts: every pass goes through `Graph`.

Node ids are `n0, n1, ...` in creation order; iteration order (`topo_order`) is the
lexicographic topological sort keyed by creation index, so printing and code generation are
deterministic.

Special op names besides the op table (`sparkc.ir.ops.OPS`):
- `input`:  a model input; attrs `name`, `source_dtype` (the spelling in the program).
- `param`:  a parameter or buffer; attrs `name` (full state_dict key), `init` (ops.Init),
            `trainable` (False for buffers), `tied_to` (None).
- `const`:  a scalar constant; attrs `value` (float or int). Type `float[]` / `i64[]`.
- `output`: a named model output; attrs `name`, `kind` ('output' | 'loss'), `weight` (loss only).
- `aux_sum`: the sum of all auxiliary losses (inputs: every op output marked is_loss).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from ..diagnostics import CompilerBug, Span
from .types import TensorType

SPECIAL_OPS = ("input", "param", "const", "output", "aux_sum")


@dataclass(frozen=True)
class Value:
    """One output of one node: what an op input refers to."""

    node: str
    index: int = 0

    def __str__(self) -> str:
        return f"%{self.node[1:]}" + (f".{self.index}" if self.index else "")


@dataclass(frozen=True)
class Node:
    id: str
    op: str
    inputs: tuple[Value, ...]
    attrs: tuple[tuple[str, Any], ...]
    types: tuple[TensorType, ...]
    scope: str = ""  # instance path: 'layers.0.h_attention' (params are named under it)
    span: Span | None = None
    # Which of the op's ports each input feeds; params follow the ports, in ParamSpec order.
    port_names: tuple[str, ...] = ()

    def attr(self, name: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    def out(self, index: int = 0) -> Value:
        return Value(self.id, index)


@dataclass
class Graph:
    """A model's dataflow graph. `name` is the model name; `hyper` its resolved hyperparameters."""

    name: str = "model"
    hyper: tuple[tuple[str, Any], ...] = ()
    _g: nx.DiGraph = field(default_factory=nx.DiGraph)
    _counter: int = 0
    # Analysis results attached by stages (e.g. "fusion": the fuse stage's FusionPlan). Not part
    # of the printed IR; a pass that rewrites the graph drops what it invalidates.
    meta: dict[str, Any] = field(default_factory=dict)
    # The node ids in `topo_order`, kept while nodes are only added (a new node sorts last);
    # a rewiring or a removal (other than of the newest node) drops it.
    _topo: list[str] | None = field(default=None, repr=False, compare=False)
    # The node payloads in that order (None until asked for; dropped with `_topo`).
    _topo_nodes: list[Node] | None = field(default=None, repr=False, compare=False)
    # Bumped by every change (add, rewire, remove): `verify` skips a graph it already verified.
    version: int = field(default=0, repr=False, compare=False)

    # -- construction -------------------------------------------------------------------------

    def add(
        self,
        op: str,
        inputs: Iterable[Value] = (),
        attrs: Iterable[tuple[str, Any]] | dict[str, Any] = (),
        types: Iterable[TensorType] = (),
        scope: str = "",
        span: Span | None = None,
        port_names: Iterable[str] = (),
    ) -> Node:
        if isinstance(attrs, dict):
            attrs = tuple(attrs.items())
        nid = f"n{self._counter}"
        self._counter += 1
        node = Node(
            nid, op, tuple(inputs), tuple(attrs), tuple(types), scope, span, tuple(port_names)
        )
        for v in node.inputs:
            if v.node not in self._g:
                raise CompilerBug(f"{nid} ({op}) reads {v}, which does not exist", "ir")
        self.version += 1
        self._g.add_node(nid, node=node, order=self._counter)
        for v in node.inputs:
            self._g.add_edge(v.node, nid)
        if self._topo is not None:
            # Every older node has an older available one until all are placed, so the newest
            # node comes last in the lexicographic order.
            self._topo.append(nid)
            if self._topo_nodes is not None:
                self._topo_nodes.append(node)
        return node

    def replace_node(self, node: Node) -> None:
        """Swap the payload of an existing node (same id), rewiring its input edges."""
        old = self.node(node.id)
        self._topo = self._topo_nodes = None
        self.version += 1
        for v in old.inputs:
            if self._g.has_edge(v.node, node.id):
                self._g.remove_edge(v.node, node.id)
        self._g.nodes[node.id]["node"] = node
        for v in node.inputs:
            self._g.add_edge(v.node, node.id)

    def update(self, node_id: str, **changes: Any) -> Node:
        new = replace(self.node(node_id), **changes)
        self.replace_node(new)
        return new

    def remove(self, node_id: str) -> None:
        if any(True for _ in self._g.successors(node_id)):
            raise CompilerBug(f"removing {node_id}, which still has users", "ir")
        self._g.remove_node(node_id)
        self.version += 1
        if self._topo is not None and self._topo[-1] == node_id:
            self._topo.pop()
            if self._topo_nodes is not None:
                self._topo_nodes.pop()
        else:
            self._topo = self._topo_nodes = None

    def replace_uses(self, old: Value, new: Value) -> int:
        """Make every reader of `old` read `new` instead; returns how many inputs changed."""
        changed = 0
        for user in list(self._g.successors(old.node)):
            node = self.node(user)
            ins = tuple(new if v == old else v for v in node.inputs)
            if ins != node.inputs:
                changed += sum(1 for v in node.inputs if v == old)
                self.replace_node(replace(node, inputs=ins))
        return changed

    # -- queries ------------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        try:
            return self._g._node[node_id]["node"]  # the node dict itself: no view per call
        except KeyError:
            raise CompilerBug(f"no node {node_id}", "ir") from None

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._g

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def type_of(self, v: Value) -> TensorType:
        return self.node(v.node).types[v.index]

    def users(self, node_id: str) -> list[Node]:
        return [self.node(n) for n in sorted(self._g.successors(node_id), key=self._order)]

    def producers(self, node_id: str) -> list[Node]:
        return [self.node(n) for n in sorted(self._g.predecessors(node_id), key=self._order)]

    def user_ids(self, node_id: str) -> set[str]:
        """The ids of the nodes with an edge from `node_id` (unordered)."""
        return set(self._g._succ[node_id])

    def producer_ids(self, node_id: str) -> set[str]:
        """The ids of the nodes with an edge into `node_id` (unordered)."""
        return set(self._g._pred[node_id])

    def ancestors(self, roots: Iterable[str]) -> set[str]:
        """`roots` and every node they read, transitively (one walk over the predecessor lists:
        linear in the graph however many roots there are)."""
        pred = self._g._pred
        seen = set(roots)
        stack = list(seen)
        while stack:
            for p in pred[stack.pop()]:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def _order(self, node_id: str) -> int:
        return self._g._node[node_id]["order"]

    def topo_order(self, fresh: bool = False) -> list[Node]:
        """Nodes in the lexicographic topological order keyed by creation index (Kahn's
        algorithm with a heap; the result is kept until the next rewiring).

        The payloads are kept too; `fresh` reads them again from the node dicts (the verifier
        does, so that a payload swapped behind the API's back is still seen)."""
        if self._topo is None:
            self._topo = self._lex_topo()
            self._topo_nodes = None
        if self._topo_nodes is None or fresh:
            nodes = self._g._node
            self._topo_nodes = [nodes[n]["node"] for n in self._topo]
        return list(self._topo_nodes)

    def _lex_topo(self) -> list[str]:
        nodes, succ = self._g._node, self._g._succ
        indeg = {n: len(p) for n, p in self._g._pred.items()}
        heap = [(nodes[n]["order"], n) for n, k in indeg.items() if k == 0]
        heapq.heapify(heap)
        out: list[str] = []
        while heap:
            _, n = heapq.heappop(heap)
            out.append(n)
            for s in succ[n]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    heapq.heappush(heap, (nodes[s]["order"], s))
        if len(out) != len(indeg):
            raise nx.NetworkXUnfeasible("the graph has a cycle")
        return out

    def __iter__(self) -> Iterator[Node]:
        return iter(self.topo_order())

    def nodes_of(self, op: str) -> list[Node]:
        return [n for n in self.topo_order() if n.op == op]

    def is_acyclic(self) -> bool:
        if self._topo is not None:
            return True  # only `add` kept it, and adding a node cannot close a cycle
        try:
            self._topo = self._lex_topo()
        except nx.NetworkXUnfeasible:
            return False
        return True

    @property
    def nx(self) -> nx.DiGraph:
        """Read-only view for algorithms (dominators, components); never mutate it directly."""
        return self._g.copy(as_view=True)

    def copy(self) -> Graph:
        g = Graph(self.name, self.hyper)
        g._g = self._g.copy()
        g._topo = None if self._topo is None else list(self._topo)
        g._counter = self._counter
        g.version = self.version
        g.meta = dict(self.meta)
        return g

    # -- conveniences used by lowering and codegen ----------------------------------------------

    def inputs(self) -> list[Node]:
        return self.nodes_of("input")

    def params(self) -> list[Node]:
        return self.nodes_of("param")

    def outputs(self) -> list[Node]:
        return self.nodes_of("output")

    # -- op instances (used by lowering, passes and tests) -------------------------------------

    def add_instance(
        self,
        op: str,
        ports: Mapping[str, Value],
        hp: Mapping[str, Any],
        scope: str = "",
        span: Span | None = None,
    ) -> Node:
        """Add one op-table instance: its parameter nodes (named `scope.<spec name>`) and the op.

        Follows the IR conventions: inputs are the given ports in op-table order followed by the
        parameters in ParamSpec order, attrs are every hyperparameter in op-table order with
        defaults resolved, types come from the op's shape rule. Raises `ops.ShapeFailure` when
        the shape rule rejects the arguments (the checker should have caught that first).
        """
        from . import ops as _ops

        spec = _ops.OPS[op]
        order = [p.name for p in spec.inputs if p.name in ports]
        types = {name: self.type_of(ports[name]) for name in order}
        inst = _ops.instantiate(op, types, dict(hp))
        inputs = [ports[name] for name in order]
        for ps in inst.params:
            param = self.add(
                "param",
                attrs=(
                    ("name", qualified(scope, ps.name)),
                    ("init", ps.init),
                    ("trainable", ps.trainable),
                    ("tied_to", None),
                    ("fan_in", ps.fan_in),
                ),
                types=(TensorType(ps.dtype, ps.shape),),
                scope=scope,
                span=span,
            )
            inputs.append(param.out())
        attrs = tuple((k, freeze_hyper(spec, k, v)) for k, v in inst.hp)
        names = [*order, *(ps.name for ps in inst.params)]
        tie = dict(inst.hp).get("tie")
        if tie:
            # A tied linear reads the embed's weight param as its last input (it owns no weight).
            weight = next(n for n in self.params() if n.attr("name") == f"{tie}.weight")
            self.tie_weight(weight.id)
            inputs.append(weight.out())
            names.append("weight")
        return self.add(op, inputs, attrs, inst.outputs, scope, span, port_names=names)

    def tie_weight(self, param_id: str) -> Node:
        """Re-initialise an `embed` weight `[vocab, dim]` that a tied `linear` reads as its LM
        head: `ops.tied_embed_init(dim)` (N(0, 1/dim)) instead of the embedding's N(0, 1)."""
        from . import ops as _ops

        param = self.node(param_id)
        init = _ops.tied_embed_init(int(param.types[0].shape[1]))
        attrs = tuple((k, init if k == "init" else v) for k, v in param.attrs)
        return self.update(param_id, attrs=attrs)


def qualified(scope: str, name: str) -> str:
    """The state_dict key of parameter `name` of the instance at `scope`."""
    return f"{scope}.{name}" if scope else name


def freeze_hyper(spec: Any, name: str, value: Any) -> Any:
    """Store a hyperparameter in a node: a `basis` spec (a mapping) becomes a tuple of pairs in
    the order of the `basis` op's hyperparameters, so attrs stay hashable and ordered."""
    h = spec.hyper(name)
    if h is not None and h.type == "basis" and isinstance(value, Mapping):
        from .ops import OPS

        order = [b.name for b in OPS["basis"].hypers]
        keys = sorted(value, key=lambda k: (order.index(k) if k in order else len(order), k))
        return tuple((k, value[k]) for k in keys)
    return value


def rule_hparams(node: Node) -> dict[str, Any]:
    """A node's hyperparameters as the op table's rules read them (a `basis` spec as a dict)."""
    from .ops import OPS

    spec = OPS[node.op]
    out: dict[str, Any] = {}
    for k, v in node.attrs:
        h = spec.hyper(k)
        if h is not None and h.type == "basis" and isinstance(v, tuple):
            v = dict(v)
        out[k] = v
    return out
