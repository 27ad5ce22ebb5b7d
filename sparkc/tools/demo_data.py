"""Synthetic training batches for `python -m sparkc.demo`, made from a model's declared inputs.

Consumes the IR graph of a compiled model (its `input` nodes and the ops that read them, see
`plan_inputs`); produces, per training step, a dict `input name -> tensor` that the generated
module accepts (`make_batch`).

The task is the demo's next-token task: every sequence is an arithmetic progression modulo the
vocabulary with a random start and a random step (`progressions`), so from the third token on
the next token is determined by the two before it and the loss can fall far below ln(vocab).
The input an `embed` reads gets the progression, the input a `cross_entropy` reads as
`targets` gets the next tokens. Every other input is filled from what its reader accepts:

- `opcode_tape`'s `ops`: random tapes of opcodes 0..8, each ended by -1 after a random length
  (at least one instruction); its `has_arg`: random flags; its `args`: N(0, 1) vectors;
- any other integer input read as token ids (`routed_mlp`'s `tokens` with `route=hash`): ids in
  [0, vocab); any other int or bool input: random 0/1 values;
- float inputs: N(0, 1).

Symbolic sizes: the two dimensions of the token input are the batch and the sequence length;
every other symbol (the tape length `T`) is `extra` long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Roles of an input, decided by the first op that reads it.
TOKENS, TARGETS, IDS, OPCODES, FLAGS, FLOATS = (
    "tokens",
    "targets",
    "ids",
    "opcodes",
    "flags",
    "floats",
)
N_OPCODES = 9  # PLAN RETR ASSUME EXEC LEMMA CHECK BRANCH MERGE CITE: 0..8, -1 ends a tape

_TORCH_DTYPES = {
    "i64": torch.int64,
    "int": torch.int64,
    "i32": torch.int32,
    "bool": torch.bool,
}


@dataclass(frozen=True)
class InputPlan:
    """How one model input is filled: its role and, for token ids, how many ids there are."""

    name: str
    dtype: str  # as declared: i64, i32, int, bool, float, f32, ...
    shape: tuple[int | str, ...]
    role: str
    high: int = 0  # ids are drawn from [0, high)


def progressions(batch: int, length: int, vocab: int, generator) -> tuple:
    """Token sequences t_i = (start + i·step) mod vocab; returns (tokens, next-token targets)."""
    start = torch.randint(0, vocab, (batch, 1), generator=generator)
    step = torch.randint(1, 4, (batch, 1), generator=generator)
    seq = (start + step * torch.arange(length + 1)) % vocab
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def _role(graph: Any, node: Any) -> tuple[str, int]:
    """The role of an `input` node and its id range, from the ops that read it."""
    for user in graph.users(node.id):
        for port, v in zip(user.port_names, user.inputs):
            if v.node != node.id:
                continue
            if user.op == "embed" and port == "tokens":
                return TOKENS, int(user.attr("vocab"))
            if user.op == "cross_entropy" and port == "targets":
                logits = graph.type_of(user.inputs[0])
                return TARGETS, int(logits.shape[-1])
            if user.op == "opcode_tape" and port == "ops":
                return OPCODES, N_OPCODES
            if user.op == "routed_mlp" and port == "tokens":
                return IDS, 0  # the vocabulary is filled in by plan_inputs
    dtype = node.types[0].dtype.value
    return (FLOATS, 0) if dtype == "float" else (FLAGS, 2)


def plan_inputs(graph: Any, specs: tuple[Any, ...]) -> list[InputPlan]:
    """One plan per declared input (`specs`: the generated module's `INPUTS`), in that order."""
    roles = {n.attr("name"): _role(graph, n) for n in graph.inputs()}
    vocab = min((high for role, high in roles.values() if role in (TOKENS, TARGETS)), default=2)
    plans = []
    for spec in specs:
        role, high = roles.get(spec.name, (FLOATS if spec.dtype == "float" else FLAGS, 2))
        if role == IDS:
            high = vocab
        plans.append(InputPlan(spec.name, spec.dtype, tuple(spec.shape), role, high))
    return plans


def _sizes(plans: list[InputPlan], batch: int, length: int, extra: int) -> dict[str, int]:
    sizes: dict[str, int] = {}
    first = next((p for p in plans if p.role == TOKENS), None)
    if first is not None:
        for sym, size in zip(first.shape, (batch, length)):
            if isinstance(sym, str):
                sizes[sym] = size
    sizes.setdefault("B", batch)
    sizes.setdefault("N", length)
    for p in plans:
        for d in p.shape:
            if isinstance(d, str):
                sizes.setdefault(d, extra)
    return sizes


def _tapes(shape: tuple[int, ...], dtype: torch.dtype, generator) -> torch.Tensor:
    """Random opcodes 0..8, each row ended by -1 after 1..T instructions."""
    ops = torch.randint(0, N_OPCODES, shape, generator=generator)
    t = shape[-1]
    ends = torch.randint(1, t + 1, shape[:-1] + (1,), generator=generator)
    ops = torch.where(torch.arange(t) >= ends, torch.full_like(ops, -1), ops)
    return ops.to(dtype)


def make_batch(
    plans: list[InputPlan], batch: int, length: int, generator, extra: int = 8
) -> dict[str, torch.Tensor]:
    """A batch for every planned input (on the CPU; the caller moves it)."""
    sizes = _sizes(plans, batch, length, extra)
    # Progressions stay below every token input's and every target's range.
    vocab = min((p.high for p in plans if p.role in (TOKENS, TARGETS)), default=2)
    tokens, targets = progressions(batch, length, vocab, generator)
    out: dict[str, torch.Tensor] = {}
    for p in plans:
        shape = tuple(sizes[d] if isinstance(d, str) else int(d) for d in p.shape)
        dtype = _TORCH_DTYPES.get(p.dtype)
        if p.role in (TOKENS, TARGETS) and shape == tuple(tokens.shape):
            out[p.name] = (tokens if p.role == TOKENS else targets).to(dtype)
        elif p.role in (TOKENS, TARGETS, IDS):
            out[p.name] = torch.randint(0, max(p.high, 1), shape, generator=generator).to(dtype)
        elif p.role == OPCODES:
            out[p.name] = _tapes(shape, dtype, generator)
        elif p.role == FLAGS:
            out[p.name] = torch.randint(0, 2, shape, generator=generator).to(dtype)
        else:
            out[p.name] = torch.randn(shape, generator=generator)
    return out


def describe(plans: list[InputPlan]) -> str:
    """One line naming how each input is made (printed by the demo)."""
    text = {
        TOKENS: "token progressions",
        TARGETS: "next tokens",
        IDS: "random ids",
        OPCODES: "random opcode tapes",
        FLAGS: "random 0/1",
        FLOATS: "N(0, 1)",
    }
    return ", ".join(f"{p.name} ({text[p.role]})" for p in plans)
