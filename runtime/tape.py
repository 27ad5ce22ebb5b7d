"""The host-side SPARK string machine of SPEC §5.1 and the encoders of tapes into tensors.

`run_tape(program, budget, capacity)` executes a list of `(opcode, text)` pairs on a stack of
strings with the SPARK log format and returns a `TapeRun` (log, stack, status, steps, depth,
checks, trace). It is the twin of the tensor machine `opcode_tape` (reference:
`sparkc.runtime.reference.procedural`): for any tape both agree on status, steps, depth and trace.

`encode_tape(program, embed_text, dim, length=None)` turns one program into the tensor machine's
inputs `(ops int32 [T], args [T, dim], has_arg bool [T])`; `encode_tapes` does a batch, padding
with −1. An opcode is an int in −1..8 or a name (`PLAN RETR ASSUME EXEC LEMMA CHECK BRANCH MERGE
CITE`, case-insensitive; `RETRIEVE` and `END` are accepted too); a text of None means "no
argument" (has_arg false, the value 0, the string "").
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .reference.procedural import (
    ASSUME,
    BRANCH,
    CHECK,
    CITE,
    END,
    EXEC,
    LEMMA,
    MERGE,
    OPCODES,
    PLAN,
    RETR,
    STATUS_BUDGET,
    STATUS_CAPACITY,
    STATUS_OK,
    STATUS_UNDERFLOW,
)

Opcode = str | int
Program = Sequence[tuple[Opcode, str | None]]

_NAMES: dict[str, int] = {name: i for i, name in enumerate(OPCODES)}
_NAMES.update({"RETRIEVE": RETR, "END": END})


def opcode_number(op: Opcode) -> int:
    """The integer opcode of a name or an int; ValueError for an unknown one."""
    if isinstance(op, bool):
        raise TypeError(f"opcode {op!r} is a bool, not an opcode")
    if isinstance(op, int):
        if END <= op <= CITE:
            return op
        raise ValueError(f"opcode {op} is outside -1..8")
    if isinstance(op, str) and op.upper() in _NAMES:
        return _NAMES[op.upper()]
    # The runtime imports nothing from the compiler: the closest name as sparkc.diagnostics'
    # did_you_mean words it (names and the query are upper case, so its case fallback never
    # applies here).
    close = difflib.get_close_matches(str(op).upper(), sorted(_NAMES), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown opcode {op!r}" + (f"; {hint}" if hint else ""))


@dataclass
class TapeRun:
    """The result of the string machine on one tape."""

    log: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)  # bottom to top
    status: int = STATUS_OK
    steps: int = 0
    checks: list[str | None] = field(default_factory=list)  # per position: CHECK's value or None
    trace: list[int] = field(default_factory=list)  # per position: executed opcode or −1

    @property
    def depth(self) -> int:
        return len(self.stack)

    @property
    def top(self) -> str | None:
        return self.stack[-1] if self.stack else None


def _push(run: TapeRun, value: str, capacity: int) -> bool:
    if len(run.stack) >= capacity:
        run.status = STATUS_CAPACITY
        return False
    run.stack.append(value)
    return True


def _step(run: TapeRun, op: int, text: str | None, capacity: int) -> tuple[bool, str | None]:
    """Execute one instruction; returns (succeeded, log line or None)."""
    a = text if text is not None else ""
    if op == PLAN:
        if text is None:
            return True, "PLAN: no-op"
        return _push(run, a, capacity), f"PLAN: {a}"
    if op in (RETR, ASSUME, LEMMA):
        label = {RETR: "RETRIEVE", ASSUME: "ASSUME", LEMMA: "LEMMA"}[op]
        return _push(run, a, capacity), f"{label}: {a}"
    if op == EXEC:
        if not run.stack:
            run.status = STATUS_UNDERFLOW
            return False, None
        run.stack.pop()
        return True, "EXEC: popped"
    if op == CHECK:
        if run.stack:
            value = run.stack.pop()
        elif text is not None:
            value = a
        else:
            run.status = STATUS_UNDERFLOW
            return False, None
        run.checks[-1] = value
        return True, f"CHECK: {value}"
    if op == BRANCH:
        return _push(run, f"branch::{a}", capacity), "BRANCH"
    if op == MERGE:
        joined = ", ".join(run.stack)
        run.stack[:] = [joined]
        return True, f"MERGE: {joined}"
    return True, f"CITE: {a}"  # CITE


def run_tape(program: Program, budget: int = 32, capacity: int = 32) -> TapeRun:
    """Run one tape on strings (SPEC §5.1). A failing instruction changes nothing, adds no log
    line and counts in neither `steps` nor `trace`; running out of budget logs
    `Budget exceeded`."""
    codes = [(opcode_number(op), text) for op, text in program]
    run = TapeRun()
    stopped = False
    for i, (op, text) in enumerate(codes):
        run.checks.append(None)
        run.trace.append(END)
        if stopped or op == END:
            stopped = True
            continue
        if i >= budget:
            run.status = STATUS_BUDGET
            run.log.append("Budget exceeded")
            stopped = True
            continue
        saved = (list(run.stack), run.status)
        ok, line = _step(run, op, text, capacity)
        if not ok:
            run.stack[:] = saved[0]
            run.checks[-1] = None
            stopped = True
            continue
        if line is not None:
            run.log.append(line)
        run.trace[-1] = op
        run.steps += 1
    return run


EmbedText = Callable[[str], torch.Tensor | Sequence[float]]


def _embed(embed_text: EmbedText, text: str, dim: int, dtype: torch.dtype) -> torch.Tensor:
    vec = torch.as_tensor(embed_text(text), dtype=dtype).reshape(-1)
    if vec.numel() != dim:
        raise ValueError(f"embed_text({text!r}) gave {vec.numel()} values, expected dim={dim}")
    return vec


def encode_tape(
    program: Program,
    embed_text: EmbedText,
    dim: int,
    length: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ops int32 [T], args [T, dim], has_arg bool [T]); T = `length` or len(program), the tail
    padded with −1, zero args and has_arg false."""
    t_len = len(program) if length is None else int(length)
    if len(program) > t_len:
        raise ValueError(f"the tape has {len(program)} instructions, more than length={t_len}")
    ops = torch.full((t_len,), END, dtype=torch.int32)
    args = torch.zeros(t_len, dim, dtype=dtype)
    has = torch.zeros(t_len, dtype=torch.bool)
    for i, (op, text) in enumerate(program):
        ops[i] = opcode_number(op)
        if text is not None:
            args[i] = _embed(embed_text, text, dim, dtype)
            has[i] = True
    return ops, args, has


def encode_tapes(
    programs: Sequence[Program],
    embed_text: EmbedText,
    dim: int,
    length: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch: (ops int32 [B, T], args [B, T, dim], has_arg bool [B, T]), T = `length` or the
    longest program, shorter tapes padded with −1."""
    t_len = max((len(p) for p in programs), default=0) if length is None else int(length)
    encoded = [encode_tape(p, embed_text, dim, t_len, dtype) for p in programs]
    if not encoded:
        return (
            torch.zeros(0, t_len, dtype=torch.int32),
            torch.zeros(0, t_len, dim, dtype=dtype),
            torch.zeros(0, t_len, dtype=torch.bool),
        )
    ops, args, has = zip(*encoded)
    return torch.stack(ops), torch.stack(args), torch.stack(has)


__all__ = ["OPCODES", "TapeRun", "encode_tape", "encode_tapes", "opcode_number", "run_tape"]
