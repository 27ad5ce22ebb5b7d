"""Lowering: a checked `Program` → an IR `Graph` (docs/architecture.md, "IR conventions").

Consumes the elaborated program of `sparkc.frontend.check` (blocks and `repeat` already inlined,
every op instance carrying its `InstanceSpec`); produces a `sparkc.ir.graph.Graph` with:

- one `input` node per model input (attrs `name`, `source_dtype`);
- one `param` node per parameter or buffer, named with its full state_dict key, created just
  before the op that owns it (attrs `name`, `init`, `trainable`, `tied_to`);
- one `const` node per scalar of a tensor expression, created just before its first reader;
- one node per op instance: inputs are its ports in op-table order, then its parameters in
  ParamSpec order, `port_names` naming each; attrs are the resolved hyperparameters in op-table
  order; `scope` is the instance path. A tied `linear` owns only its bias: its `tie` attr holds
  the embed's instance path, and it reads that embed's `<path>.weight` param node as its last
  input (port name `weight`; one node, owned by the embed, read by both);
- one `output` node per output (kind 'output') and loss term (kind 'loss', attr `weight`);
- exactly one `aux_sum` over every aux-loss output of every op (present even with none, so the
  generated module always has `aux_loss`).

Lowering is generic over the op table: no op needs a rule of its own here. One initialisation
rule depends on the program rather than on the op: an `embed` whose weight a `linear(tie=...)`
reuses as the LM head starts at N(0, 1/dim) instead of N(0, 1) (`Graph.tie_weight`; why: in
docs/ops_decisions.md, "Tied embedding initialisation").
"""

from __future__ import annotations

from ..diagnostics import CompilerBug
from ..frontend.program import OpInstance, Program, Ref
from ..ir.graph import Graph, Value
from ..ir.ops import OPS
from ..ir.types import DType, TensorType

__all__ = ["lower"]


class _Lowering:
    def __init__(self, program: Program):
        self.p = program
        self.g = Graph(program.name, program.hyper)
        self.inputs: dict[int, Value] = {}
        self.consts: dict[int, Value] = {}
        self.ops: dict[int, tuple[Value, ...]] = {}
        self.params: dict[str, Value] = {}  # state_dict key → param node

    def value(self, ref: Ref) -> Value:
        if ref.kind == "input":
            return self.inputs[ref.index]
        if ref.kind == "const":
            if ref.index not in self.consts:
                c = self.p.consts[ref.index]
                node = self.g.add(
                    "const", attrs=(("value", c.value),), types=(c.type,), span=c.span
                )
                self.consts[ref.index] = node.out()
            return self.consts[ref.index]
        if ref.kind == "op" and ref.index in self.ops:
            return self.ops[ref.index][ref.output]
        raise CompilerBug(f"lowering reads {ref} before it is defined", "lower")

    def param(self, name: str, spec, scope: str, span) -> Value:
        if name in self.params:
            raise CompilerBug(f"parameter '{name}' is created twice", "lower")
        node = self.g.add(
            "param",
            attrs=(
                ("name", name),
                ("init", spec.init),
                ("trainable", spec.trainable),
                ("tied_to", None),
                ("fan_in", spec.fan_in),
            ),
            types=(TensorType(spec.dtype, spec.shape),),
            scope=scope,
            span=span,
        )
        self.params[name] = node.out()
        return node.out()

    def op(self, index: int, inst: OpInstance) -> None:
        ins = [self.value(ref) for _, ref in inst.inputs]
        names = [port for port, _ in inst.inputs]
        if inst.tie and f"{inst.tie}.weight" not in self.params:
            raise CompilerBug(
                f"the tied weight of {inst.path} ({inst.tie}) does not exist", "lower"
            )
        for full, spec in inst.params():
            ins.append(self.param(full, spec, inst.path, inst.span))
            names.append(spec.name)
        if inst.tie:
            # The tied linear reads the embed's weight node: an edge, so ordering and DCE see it.
            weight = self.params[f"{inst.tie}.weight"]
            self.g.tie_weight(weight.node)
            ins.append(weight)
            names.append("weight")
        node = self.g.add(
            inst.op,
            inputs=ins,
            attrs=inst.spec.hp,
            types=inst.spec.outputs,
            scope=inst.path,
            span=inst.span,
            port_names=names,
        )
        self.ops[index] = tuple(node.out(i) for i in range(len(inst.spec.outputs)))

    def run(self) -> Graph:
        for i, inp in enumerate(self.p.inputs):
            node = self.g.add(
                "input",
                attrs=(("name", inp.name), ("source_dtype", inp.source_dtype)),
                types=(inp.type,),
                span=inp.span,
            )
            self.inputs[i] = node.out()
        for i, inst in enumerate(self.p.ops):
            if inst.op not in OPS:
                raise CompilerBug(f"unknown op '{inst.op}' in the program", "lower")
            self.op(i, inst)
        for o in self.p.outputs:
            v = self.value(o.ref)
            self.g.add(
                "output", inputs=(v,), attrs=(("name", o.name), ("kind", "output")), span=o.span
            )
        for loss in self.p.losses:
            v = self.value(loss.ref)
            self.g.add(
                "output",
                inputs=(v,),
                attrs=(("name", loss.name), ("kind", "loss"), ("weight", loss.weight)),
                span=loss.span,
            )
        aux = [self.value(r) for r in self.p.aux_losses]
        self.g.add("aux_sum", inputs=aux, types=(TensorType(DType.FLOAT, ()),))
        return self.g


def lower(program: Program) -> Graph:
    """Build the IR graph of a checked program (see the module docstring for its shape)."""
    return _Lowering(program).run()
