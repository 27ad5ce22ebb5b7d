"""IR graph → the generated model module (its template context and rendered text).

Consumes an optimised `Graph` (one node per op instance, params as `param` nodes) and the source
it came from; produces the text of the package's `__init__.py` by rendering
`codegen_templates/module.py.jinja`. The reference path is straight-line code calling the
`sparkc.runtime.reference` rule table per node; the Triton path comes from `codegen.triton_plan`.

Values are named `_v<k>` in print order (not by node id), so the text depends only on the graph's
structure; everything rendered from the program (names, strings, numbers) goes through `pyrepr`
or is a validated identifier, so no `.spark` file can inject code. The naming scheme (generated
names start with `_`, user inputs never do) is `codegen/names.py`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from ..ir.graph import Graph, Node, Value
from ..ir.ops import OPS, exact_key
from ..version import __version__
from . import names as nm
from .render import pyrepr


@dataclass(frozen=True)
class ParamEntry:
    """One `_ms.ParamDecl(...)` line of the module (attributes, not a dict: the template reads
    one per field, and Jinja looks attributes up before keys)."""

    name: str
    shape: tuple
    init: tuple
    trainable: bool
    dtype: str
    fan_in: int


class ValueNames(dict):
    """Deterministic local names for IR values: _v0, _v1, ... in topological order (model
    inputs keep their own names: they are forward()'s arguments). A dict {Value: name}, so a
    lookup is one C call (codegen looks up a few names per op instance)."""

    @property
    def names(self) -> dict[Value, str]:
        return self


def name_values(graph: Graph) -> ValueNames:
    names: dict[Value, str] = {}
    k = 0
    for node in graph.topo_order():
        if node.op == "input":
            names[node.out()] = nm.argument_name(node.attr("name"))
            continue
        for i in range(len(node.types)):
            names[Value(node.id, i)] = f"_v{k}"
            k += 1
    return ValueNames(names)


def loss_only_nodes(graph: Graph, needed_main: set[str] | None = None) -> set[str]:
    """Nodes that only loss terms need (computed only when their inputs were all given);
    `needed_main`: `needed_main(graph)` if the caller has it."""
    loss = graph.ancestors([n.id for n in graph.outputs() if n.attr("kind") == "loss"])
    return loss - (needed_main(graph) if needed_main is None else needed_main)


def param_comment(node: Node) -> str:
    """The comment after a parameter read: its state_dict key (a checked instance path)."""
    return nm.comment_text(node.attr("name"))


def split_ports(node: Node) -> tuple[list[tuple[str, Value]], list[tuple[str, Value]]]:
    """(tensor ports, params) of an op node, each as (local name, value)."""
    key = (node.op, node.port_names)
    is_port = _IS_PORT.get(key)
    if is_port is None:
        spec = OPS[node.op]
        is_port = _IS_PORT[key] = tuple(spec.port(name) is not None for name in node.port_names)
    ports, params = [], []
    for flag, name, v in zip(is_port, node.port_names, node.inputs):
        (ports if flag else params).append((name, v))
    return ports, params


# (op, port names) -> which names are tensor ports (the rest are parameters); few per model.
_IS_PORT: dict[tuple[str, tuple[str, ...]], tuple[bool, ...]] = {}


def attrs_literal(node: Node, cache: dict) -> str:
    """`pyrepr(dict(node.attrs))`, computed once per distinct (op, attrs) in `cache` (a model
    of many identical layers repeats a few); keys tell apart values that compare equal but
    print differently (1, 1.0, True)."""
    try:
        key = (node.op, tuple((k, exact_key(v)) for k, v in node.attrs))
        text = cache.get(key)
    except TypeError:  # an unhashable value: no sharing
        return pyrepr(dict(node.attrs))
    if text is None:
        text = cache[key] = pyrepr(dict(node.attrs))
    return text


def dict_literal(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{pyrepr(k)}: {v}" for k, v in pairs) + "}"


def reference_units(
    graph: Graph, names: ValueNames, call=None
) -> list[tuple[tuple[str, ...], list[str]]]:
    """One unit (node ids, lines) per param, const and op node: the reference path's compute.

    `call(node, ins, params, hyper)` returns the expression that computes an op node from its
    input, parameter and hyperparameter literals (default: its reference rule, `_REF[op](...)`);
    the cached-decoding forward passes its own (codegen/decode.py)."""
    param_index = {n.id: i for i, n in enumerate(graph.params())}
    literals: dict = {}
    units = []
    for node in graph.topo_order():
        if node.op == "param":
            line = f"{names[node.out()]} = _p[{param_index[node.id]}]  # {param_comment(node)}"
        elif node.op == "const":
            line = f"{names[node.out()]} = {pyrepr(node.attr('value'))}"
        elif node.op in ("input", "output", "aux_sum"):
            continue
        else:
            ports, params = split_ports(node)
            ins = dict_literal([(k, names[v]) for k, v in ports])
            prm = dict_literal([(k, names[v]) for k, v in params])
            hp = attrs_literal(node, literals)
            outs = [names[Value(node.id, i)] for i in range(len(node.types))]
            target = outs[0] + "," if len(outs) == 1 else ", ".join(outs)
            comment = f"  # {nm.comment_text(node.scope)}" if node.scope else ""
            expr = (
                call(node, ins, prm, hp)
                if call is not None
                else f"_REF[{pyrepr(node.op)}]({ins}, {prm}, {hp}, _ctx)"
            )
            line = f"{target} = {expr}{comment}"
        units.append(((node.id,), [line]))
    return units


def assemble_body(
    graph: Graph, names: ValueNames, units, needed_main: set[str] | None = None
) -> list[str]:
    """Order compute units, guard the loss-only ones, and build the ModelOutput.

    Units whose nodes only loss terms need run only when every optional input (one that only
    feeds losses, like `targets`) was given; otherwise `out.loss` is None."""
    needed = needed_main(graph) if needed_main is None else needed_main
    loss_only = loss_only_nodes(graph, needed)
    optional_inputs = [n.attr("name") for n in graph.inputs() if n.id not in needed]
    main: list[str] = []
    guarded: list[str] = []
    for node_ids, lines in units:
        (guarded if set(node_ids) <= loss_only else main).extend(lines)
    outputs, losses = [], []
    aux = "None"
    for node in graph.topo_order():
        if node.op == "output":
            src = names[node.inputs[0]]
            if node.attr("kind") == "loss":
                losses.append((node.attr("name"), src, float(node.attr("weight", 1.0))))
            else:
                outputs.append((node.attr("name"), src))
        elif node.op == "aux_sum":
            terms = [names[v] for v in node.inputs]
            aux = names[node.out()]
            main.append(f"{aux} = _ms.sum_losses([{', '.join(terms)}], _p)")
    body = list(main)
    result = ", ".join(f"{pyrepr(k)}: {v}" for k, v in outputs)
    body.append(f"_out = _ms.ModelOutput({{{result}}})")
    body.append(f"_out['aux_loss'] = {aux}")
    if losses:
        if optional_inputs:
            cond = " and ".join(f"{n} is not None" for n in optional_inputs)
            body.append(f"if {cond}:")
            body += ["    " + line for line in guarded]
            body += ["    " + line for line in _loss_lines(losses, aux)]
            body.append("else:")
            body.append("    _out['loss'] = None")
        else:
            body += guarded + _loss_lines(losses, aux)
    body.append("return _out")
    return body


def _loss_lines(losses: list[tuple[str, str, float]], aux: str) -> list[str]:
    lines = [f"_out[{pyrepr(name)}] = {src}" for name, src, _ in losses]
    terms = [src if w == 1.0 else f"{pyrepr(w)} * {src}" for _, src, w in losses]
    lines.append(f"_out['loss'] = {' + '.join(terms)} + {aux}")
    return lines


def needed_main(graph: Graph) -> set[str]:
    """Nodes the main outputs and the auxiliary loss need."""
    roots = [
        n.id
        for n in graph.topo_order()
        if n.op == "aux_sum" or (n.op == "output" and n.attr("kind") != "loss")
    ]
    return graph.ancestors(roots)


def module_context(
    graph: Graph,
    source_text: str,
    source_name: str,
    names: ValueNames,
    triton_units=None,
    extra: dict | None = None,
    ref_units=None,
) -> dict:
    """The template context of `module.py.jinja`; `ref_units`: the reference path's units when
    the caller built them (codegen/decode.py merges the cached calls into them)."""
    needed = needed_main(graph)
    inputs = [
        {
            "name": nm.argument_name(n.attr("name")),
            "dtype": n.attr("source_dtype") or n.types[0].dtype.value,
            "shape": tuple(n.types[0].shape),
            "optional": n.id not in needed,
        }
        for n in graph.inputs()
    ]
    params = [
        ParamEntry(
            name=n.attr("name"),
            shape=tuple(n.types[0].shape),
            init=(n.attr("init").kind, tuple(n.attr("init").args)),
            trainable=bool(n.attr("trainable", True)),
            dtype=n.types[0].dtype.value,
            fan_in=int(n.attr("fan_in", 0) or 0),
        )
        for n in graph.params()
    ]
    num_params = sum(_numel(p.shape) for p in params if p.trainable)
    # Python needs defaults after the first default: an input declared after an optional one
    # defaults to None too, and check_inputs reports it as missing if it was required.
    sig_parts, seen_optional = [], False
    for i in inputs:
        seen_optional = seen_optional or i["optional"]
        sig_parts.append(i["name"] + ("=None" if seen_optional else ""))
    sig = ", ".join(sig_parts)
    return dict(
        version=__version__,
        source_name=source_name,
        source_hash=hashlib.sha256(source_text.encode()).hexdigest(),
        source_text=source_text,
        model_name=graph.name,
        class_name=nm.class_name_for(graph.name),
        package_hint=nm.docstring_text("build." + nm.package_stem(source_name)),
        hyper=list(graph.hyper),
        hyper_text=nm.docstring_text(_hyper_text(graph.hyper)),
        inputs=inputs,
        input_names=[i["name"] for i in inputs],
        signature=sig,
        params=params,
        num_params=num_params,
        output_names=tuple(n.attr("name") for n in graph.outputs()),
        reference_body=assemble_body(
            graph,
            names,
            ref_units if ref_units is not None else reference_units(graph, names),
            needed,
        ),
        triton_body=(
            assemble_body(graph, names, triton_units, needed) if triton_units is not None else []
        ),
        **(extra or {}),
    )


def _numel(shape: tuple) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _hyper_text(hyper) -> str:
    """The docstring's list of hyperparameters: names (identifiers) with their numbers; other
    values (strings, names) are in HYPER, not in the docstring."""
    parts = []
    for k, v in hyper:
        number = isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v))
        parts.append(f"{k}={pyrepr(v)}" if number else f"{k}=HYPER[{k!r}]")
    return ", ".join(parts) or "none"
