"""The checked, elaborated model: what `check()` produces and `lower()` consumes.

A `Program` is one model with every block call and `repeat` inlined: its resolved
hyperparameters, its inputs, the scalar constants its expressions use, a flat list of op
instances in program order (each with its instance path, the values feeding its ports and the
`InstanceSpec` computed by the op table), its outputs and loss terms, and the auxiliary losses
that the ops produce. Values are referred to by `Ref`s into those lists, so a Program is plain
data: no AST, no lark, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..diagnostics import CompilerBug, Span
from ..ir.ops import InstanceSpec, ParamSpec
from ..ir.types import TensorType


@dataclass(frozen=True)
class Ref:
    """One value of the program: output `output` of `inputs[index]`, `consts[index]` or
    `ops[index]`."""

    kind: str  # 'input' | 'const' | 'op'
    index: int
    output: int = 0

    def __str__(self) -> str:
        base = {"input": "in", "const": "c", "op": "op"}[self.kind] + str(self.index)
        return base + (f".{self.output}" if self.output else "")


@dataclass(frozen=True)
class ProgramInput:
    name: str
    type: TensorType
    source_dtype: str  # the spelling in the program: 'i64', 'bf16', 'float', ...
    span: Span


@dataclass(frozen=True)
class Const:
    """A scalar used in a tensor expression (`x * 0.5`, `h / d`)."""

    value: int | float
    type: TensorType
    span: Span


@dataclass(frozen=True)
class OpInstance:
    """One application of an op. `path` is the state_dict prefix of its parameters
    ('h.0.h_attention' owns 'h.0.h_attention.wq.weight')."""

    path: str
    op: str
    inputs: tuple[tuple[str, Ref], ...]  # (port name, value), op-table port order
    spec: InstanceSpec
    span: Span

    @property
    def hp(self) -> dict[str, Any]:
        return dict(self.spec.hp)

    @property
    def tie(self) -> str | None:
        """The instance path of the embed whose weight this (linear) instance reuses."""
        return self.hp.get("tie")

    def params(self) -> tuple[tuple[str, ParamSpec], ...]:
        """(full state_dict key, spec) of every parameter and buffer this instance owns."""
        return tuple((f"{self.path}.{p.name}", p) for p in self.spec.params)


@dataclass(frozen=True)
class OutputTerm:
    name: str
    ref: Ref
    span: Span


@dataclass(frozen=True)
class LossTerm:
    name: str
    ref: Ref
    weight: float
    span: Span


@dataclass(frozen=True)
class Program:
    name: str
    hyper: tuple[tuple[str, Any], ...]
    inputs: tuple[ProgramInput, ...]
    consts: tuple[Const, ...]
    ops: tuple[OpInstance, ...]
    outputs: tuple[OutputTerm, ...]
    losses: tuple[LossTerm, ...]
    aux_losses: tuple[Ref, ...]
    span: Span

    def type_of(self, ref: Ref) -> TensorType:
        if ref.kind == "input":
            return self.inputs[ref.index].type
        if ref.kind == "const":
            return self.consts[ref.index].type
        if ref.kind == "op":
            return self.ops[ref.index].spec.outputs[ref.output]
        raise CompilerBug(f"bad program reference {ref}", "check")

    def param_names(self) -> list[str]:
        return [name for op in self.ops for name, _ in op.params()]

    def param_count(self, trainable_only: bool = True) -> int:
        return sum(
            p.numel for op in self.ops for _, p in op.params() if p.trainable or not trainable_only
        )

    def describe(self) -> str:
        """A compact text form (debugging and tests): one line per input, op and output."""
        lines = [f"program {self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.hyper) + ")"]
        for i, inp in enumerate(self.inputs):
            lines.append(f"  in{i} {inp.name}: {inp.type}")
        for i, c in enumerate(self.consts):
            lines.append(f"  c{i} = {c.value!r}: {c.type}")
        for i, op in enumerate(self.ops):
            args = ", ".join(f"{port}={ref}" for port, ref in op.inputs)
            outs = ", ".join(str(t) for t in op.spec.outputs)
            lines.append(f"  op{i} {op.path} = {op.op}({args}) -> {outs}")
        for o in self.outputs:
            lines.append(f"  output {o.name} = {o.ref}")
        for loss in self.losses:
            lines.append(f"  loss {loss.name} = {loss.ref} weight {loss.weight!r}")
        lines.append("  aux_loss = sum(" + ", ".join(str(r) for r in self.aux_losses) + ")")
        return "\n".join(lines) + "\n"
