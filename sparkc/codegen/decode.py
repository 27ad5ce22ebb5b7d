"""IR graph → the cached-decoding part of the generated model module (SPEC §5.6).

Consumes an optimised `Graph`, its value names and the Triton path's units and emitter
(codegen/triton_plan.py); produces the cached-decoding part of `module.py.jinja`'s context (the
cached calls run inside the two forward bodies, given a cache):
- `decode_slots`: one (instance path, op, resolved hyperparameters, input shapes by port) per
  sequence-mixing op instance (an op whose `causal` trait is set for its hyperparameters), the
  instances that keep state in a `DecodeCache` (their state and step rules are the `DECODE`
  table of sparkc.runtime.reference);
- `not_decodable`: why the program cannot decode, one sentence per op instance at fault (a
  mixer that is not causal, an op whose `decodable` trait is false, no sequence input);
  `new_cache` raises with these;
- `sequence_inputs`: the model inputs that carry the sequence dimension (dim 1 of the first
  input): a cached call brings their next positions; the other inputs are per sequence (given
  once, kept in the cache);
- `reference_units`: the reference path's units with the cached calls in them (`cached_units`):
  given a cache, the reference rule of every op, except the mixers, which call their step rule
  with their slot's state (`_st[i]`), and the ops that read only per-sequence inputs and
  parameters (`opcode_tape` on its tape), computed on a cache's first call and kept
  (`_cache.once(i, ...)`); None for a program that cannot decode;
- `triton_units`: the Triton forward's units with the prefill in them (`prefill_units`): called
  with a cache (its first call on the Triton path, the prompt), each mixer's state is filled
  after its group; `decodes` says whether the two bodies take a cache.
Only what the main outputs and the auxiliary loss need is checked; loss-only nodes run on the
new positions when their inputs are given.
"""

from __future__ import annotations

from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..ir.ops.schema import REQUIRED, Derived
from . import names as nm
from .emit import Emitter
from .module import (
    attrs_literal,
    dict_literal,
    needed_main,
    reference_units,
    split_ports,
)
from .render import pyrepr


def _shapes(graph: Graph, node: Node) -> dict[str, tuple]:
    ports, _ = split_ports(node)
    return {name: tuple(graph.type_of(v).shape) for name, v in ports}


def _changed_hypers(node: Node) -> str:
    spec = OPS[node.op]
    parts = []
    for k, v in node.attrs:
        h = spec.hyper(k)
        fixed = h is not None and not isinstance(h.default, Derived) and h.default is not REQUIRED
        if fixed and v != h.default:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def decode_context(
    graph: Graph, names, triton_units: list | None = None, emitter: Emitter | None = None
) -> dict:
    needed = needed_main(graph)
    slots, reasons, slot_of = [], [], {}
    for node in graph.topo_order():
        spec = OPS.get(node.op)
        if spec is None or node.op in ("input", "output", "aux_sum", "param", "const"):
            continue
        hp = dict(node.attrs)
        causal = spec.causal(hp)
        where = f"{node.op} '{node.scope or node.op}'"
        if node.id in needed and (causal is False or not spec.decodable(hp)):
            changed = "causal=false" if hp.get("causal") is False else _changed_hypers(node)
            where += f" with {changed}" if changed else ""
            if causal is False:
                reasons.append(f"{where} is not causal: its outputs read later positions")
            else:
                reasons.append(f"{where} reads every position of the sequence (docs/ops.md)")
        if causal:
            slot_of[node.id] = len(slots)
            slots.append((node.scope or node.op, node.op, hp, _shapes(graph, node)))
    inputs = list(graph.inputs())
    seq = None
    if inputs and len(inputs[0].types[0].shape) >= 2:
        dim = inputs[0].types[0].shape[1]
        seq = dim if isinstance(dim, str) else None
    if seq is None:
        reasons.append("the first model input has no symbolic sequence dimension (dim 1)")
        sequence_inputs = ()
    else:
        sequence_inputs = tuple(
            nm.argument_name(n.attr("name")) for n in inputs if seq in n.types[0].shape
        )
    hoisted = once_nodes(graph, set(sequence_inputs), slot_of)
    steps = decode_units(graph, names, slot_of, hoisted)
    merged, ref = triton_units, None
    if not reasons:  # decodable: the cached calls run inside the two forward bodies
        ref = cached_units(reference_units(graph, names), steps)
        if triton_units is not None and emitter is not None:
            merged = prefill_units(graph, names, triton_units, emitter, slot_of, steps)
    return {
        "decode_slots": tuple(slots),
        "not_decodable": tuple(reasons),
        "sequence_inputs": sequence_inputs,
        "reference_units": ref,
        "triton_units": merged,
        "decodes": not reasons,
    }


def cached_units(ref: list, steps: list) -> list:
    """The reference path's units with the cached calls in them (`_forward_reference` given a
    cache): per node, its reference line, or, where the cached call differs (a mixer's step
    rule on its state, a per-sequence node kept by the cache), both under `if _cache is None:`.
    `ref` and `steps` hold one unit per node, in the same order (`reference_units`)."""
    out = []
    for (ids, ref_lines), (step_ids, step_lines) in zip(ref, steps, strict=True):
        assert ids == step_ids
        same = ref_lines == step_lines
        out.append((ids, ref_lines if same else _branch("_cache is None", ref_lines, step_lines)))
    return out


def prefill_units(
    graph: Graph,
    names,
    triton_units: list,
    emitter: Emitter,
    slot_of: dict[str, int],
    steps: list,
) -> list:
    """The units of `_forward_triton` with the prefill in it: called with a cache (`_cache`, a
    cache's first call on the Triton path), the same kernels run (the positions start at 0, so
    they compute what the full forward does) and each sequence mixer's group is followed by its
    fill (`Emitter.fill`: the mixer's state written from tensors the group computed), under
    `if _cache is not None:`. A group holding a mixer without a fill runs, with a cache, its
    nodes' cached units instead (`steps`, from `decode_units`, which fill the state). A line
    the rule gave a prefill form (`Emitter.emit(..., prefill=...)`) runs that form with a
    cache. One body for both calls: the generated module does not repeat the Triton forward."""
    fills = emitter.fills
    step_of = {ids[0]: lines for ids, lines in steps}
    order = {n.id: i for i, n in enumerate(graph.topo_order())}
    literals: dict = {}
    units = []
    for u, (node_ids, lines) in enumerate(triton_units):
        mixers = [nid for nid in node_ids if nid in slot_of]
        if any(nid not in fills for nid in mixers):
            cached = [x for nid in sorted(node_ids, key=order.__getitem__) for x in step_of[nid]]
            units.append((node_ids, _branch("_cache is None", lines, cached)))
            continue
        body = []
        for i, line in enumerate(lines):
            alt = emitter.prefill_lines.get((u, i))
            body += [line] if alt is None else _branch("_cache is None", [line], [alt])
        extra = []
        for nid in mixers:
            if not fills[nid]:
                continue  # nothing to keep (a per-token op)
            node = graph.node(nid)
            _, params = split_ports(node)
            tensors = "{" + ", ".join(f"{pyrepr(k)}: {v}" for k, v in fills[nid].items()) + "}"
            prm = dict_literal([(k, names[v]) for k, v in params])
            hp = attrs_literal(node, literals)
            op = pyrepr(node.op)
            extra.append(f"_FILL[{op}]({tensors}, {prm}, {hp}, _ctx, _st[{slot_of[nid]}])")
        units.append((node_ids, body + (_branch("_cache is not None", extra) if extra else [])))
    return units


def _branch(cond: str, then: list[str], other: list[str] | None = None) -> list[str]:
    """`if cond:` over `then`, with `else:` over `other` when given (lines indented by 4)."""
    out = [f"if {cond}:"] + ["    " + x for x in then]
    if other is not None:
        out += ["else:"] + ["    " + x for x in other]
    return out


def once_nodes(graph: Graph, sequence_inputs: set[str], slot_of: dict[str, int]) -> dict[str, int]:
    """Op nodes whose value is the same at every position of a sequence: they read per-sequence
    inputs (an instruction tape, metadata) and parameters only. A cached call computes them on
    the first call of a cache and keeps them (`DecodeCache.once`): node id -> memo index."""
    fixed: dict[str, bool] = {}  # depends on no per-position input
    seeded: dict[str, bool] = {}  # depends on a per-sequence input
    out: dict[str, int] = {}
    for node in graph.topo_order():
        if node.op == "input":
            per_seq = nm.argument_name(node.attr("name")) not in sequence_inputs
            fixed[node.id], seeded[node.id] = per_seq, per_seq
            continue
        if node.op in ("param", "const"):
            fixed[node.id], seeded[node.id] = True, False
            continue
        producers = [v.node for v in node.inputs]
        fixed[node.id] = all(fixed.get(p, False) for p in producers)
        seeded[node.id] = any(seeded.get(p, False) for p in producers)
        if node.op in ("output", "aux_sum") or node.id in slot_of:
            continue
        if fixed[node.id] and seeded[node.id]:
            out[node.id] = len(out)
    return out


def decode_units(
    graph: Graph, names, slot_of: dict[str, int], hoisted: dict[str, int] | None = None
) -> list:
    """One unit (node ids, lines) per param, const and op node, as `reference_units`, with each
    mixer calling its step rule on its state and each per-sequence node (`once_nodes`) computed
    on a cache's first call only."""
    hoisted = hoisted or {}

    def call(node, ins: str, prm: str, hp: str) -> str:
        if node.id in slot_of:
            expr = f"_DEC[{pyrepr(node.op)}]({ins}, {prm}, {hp}, _ctx, _st[{slot_of[node.id]}])"
        else:
            expr = f"_REF[{pyrepr(node.op)}]({ins}, {prm}, {hp}, _ctx)"
        if node.id in hoisted:
            expr = f"_cache.once({hoisted[node.id]}, lambda: {expr})"
        return expr

    return reference_units(graph, names, call)
