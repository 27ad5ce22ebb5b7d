"""Run-time checks of a generated model's inputs, in one place, before any kernel or reference
op runs.

Consumes the module's declared inputs (`InputSpec`, from the `input` lines of the program), the
rule table the compiler emits beside them (`RULES`: one dict per SPEC run-time rule an op puts on
a model input, traced through the IR from the op's port back to that input), the call's values
and the module (for its parameters' dtype and device). Produces the bound symbolic dims and the
inputs to run on, or raises `InputError` naming the model input, the op instance that needs the
rule and what was expected:

- presence, type, dtype (per declared spelling), rank, fixed and symbolic dims (`N` the same in
  every input), empty dims;
- device: every input on the parameters' device;
- dtype of float inputs: any float dtype is accepted where `float` is declared and is cast to
  the parameters' dtype (`cast_float`), on both paths (docs/language.md, "Inputs");
- shape rules (`kind: "max_len"`): a symbolic dim at most an op's `max_len` (`pos_embed`,
  `attention(basis=...)`), checked on the host from the shapes (no synchronisation);
- value rules (`kind: "range"`): integer inputs inside `[low, high)` or equal to `allow`
  (embedding ids, cross-entropy targets / ignore_index, opcodes, hash-routing ids). These read
  the data: two reductions per rule, then one transfer of all their results (`ValueCheck`);
  they are skipped while a CUDA graph is captured and when `$SPARKC_CHECK_VALUES=0`. Kernels
  stay safe without them: no kernel reads memory at an index taken from data without a bounds
  mask. `prepare_call` leaves the transfer pending: the model's Triton path queues its kernels
  first and reads the result before it returns (`SparkModule._run`), so the check
  waits for its own reductions only instead of stalling the queue at the start of every call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
DTYPE_SPELLING: dict[str, tuple[torch.dtype, ...]] = {
    "float": _FLOATS,
    "f32": (torch.float32,),
    "f16": (torch.float16,),
    "bf16": (torch.bfloat16,),
    "f64": (torch.float64,),
    "int": (torch.int64, torch.int32),
    "i64": (torch.int64,),
    "i32": (torch.int32,),
    "bool": (torch.bool,),
}


@dataclass(frozen=True)
class InputSpec:
    """A declared model input: `name: dtype[dims]` with int or symbolic dims."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    optional: bool = False  # only feeds loss terms: the losses are skipped when it is missing

    def describe(self, bound: Mapping[str, int] | None = None) -> str:
        dims = []
        for d in self.shape:
            if isinstance(d, str) and bound and d in bound:
                dims.append(f"{d}={bound[d]}")
            else:
                dims.append(str(d))
        return f"{self.dtype}[{', '.join(dims)}]"


class InputError(ValueError):
    """A model input of the wrong shape, dtype, device or value range. Raised before any kernel
    or reference op runs, except for a value range on the Triton path of a plain forward: there
    it is raised before the call returns, after kernels that never read out of bounds ran on
    the values (nothing they computed is returned)."""


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _check_one(spec: InputSpec, value: Any, bound: dict[str, int]) -> None:
    if not isinstance(value, torch.Tensor):
        raise InputError(
            f"input '{spec.name}' must be a torch.Tensor of {spec.describe(bound)}, "
            f"got {type(value).__name__}"
        )
    allowed = DTYPE_SPELLING[spec.dtype]
    if value.dtype not in allowed:
        names = " or ".join(str(d).replace("torch.", "") for d in allowed)
        raise InputError(
            f"input '{spec.name}' must have dtype {names} ({spec.describe(bound)}), "
            f"got {_dtype_name(value)}"
        )
    if value.dim() != len(spec.shape):
        raise InputError(
            f"input '{spec.name}' must have shape {spec.describe(bound)} "
            f"({len(spec.shape)} dims), got {list(value.shape)}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, value.shape)):
        if isinstance(want, int):
            if got != want:
                raise InputError(
                    f"input '{spec.name}' must have shape {spec.describe(bound)}: "
                    f"dim {axis} must be {want}, got {list(value.shape)}"
                )
        elif want in bound and bound[want] != got:
            raise InputError(
                f"input '{spec.name}' must have shape {spec.describe(bound)}: "
                f"dim {axis} ({want}) must be {bound[want]} as in the other inputs, "
                f"got {list(value.shape)}"
            )
        else:
            if got == 0:
                raise InputError(
                    f"input '{spec.name}': dimension {want} is empty ({list(value.shape)})"
                )
            bound[want] = got


def check_inputs(
    specs: Sequence[InputSpec],
    values: Sequence[Any],
    rules: Sequence[Mapping[str, Any]] = (),
    device: torch.device | None = None,
) -> dict[str, int]:
    """Validate inputs against their declarations and the rule table; returns the bound
    symbolic dims. `device`: where the inputs must be (the parameters' device; None: only the
    inputs must agree). Every error names the input and what was expected."""
    bound, given = _check_static(specs, values, rules, device)
    if given:
        check_value_rules(rules, given, bound)
    return bound


def _check_static(
    specs: Sequence[InputSpec],
    values: Sequence[Any],
    rules: Sequence[Mapping[str, Any]],
    device: torch.device | None,
) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """Every check but the value rules; returns the bound dims and, when value rules are to be
    checked, the inputs by name (else an empty dict)."""
    bound: dict[str, int] = {}
    first = None
    for spec, value in zip(specs, values):
        if value is None:
            if spec.optional:
                continue
            raise InputError(f"input '{spec.name}' is missing: expected {spec.describe(bound)}")
        _check_one(spec, value, bound)
        if device is not None and value.device != device:
            raise InputError(
                f"input '{spec.name}' is on {value.device} but the model's parameters are on "
                f"{device}: move the input (or the model) with .to({str(device)!r})"
            )
        if first is None:
            first = (spec.name, value.device)
        elif value.device != first[1]:
            raise InputError(
                f"input '{spec.name}' is on {value.device} but input '{first[0]}' is on {first[1]}"
            )
    if rules:
        given = {s.name: v for s, v in zip(specs, values) if v is not None}
        shapes = {s.name: s for s in specs}
        check_shape_rules(rules, given, shapes, bound)
        if value_checks_enabled():
            return bound, given
    return bound, {}


def _where(rule: Mapping[str, Any]) -> str:
    return f"{rule['op']} '{rule['instance']}'"


def check_shape_rules(
    rules: Sequence[Mapping[str, Any]],
    given: Mapping[str, torch.Tensor],
    specs: Mapping[str, InputSpec],
    bound: Mapping[str, int],
) -> None:
    """`max_len` rules: the symbolic dim `dim` (bound from the inputs) must not exceed
    `max_len`. The error names the first given input that carries the dim."""
    for rule in rules:
        if rule["kind"] != "max_len":
            continue
        dim, limit = rule["dim"], int(rule["max_len"])
        n = bound.get(dim) if isinstance(dim, str) else int(dim)
        if n is None or n <= limit:
            continue
        source = next(((name, ax) for name, ax in rule["inputs"] if name in given), None)
        if source is None:  # a fixed dim (declared as a number), or not found in the inputs
            raise InputError(
                f"{_where(rule)} takes at most max_len={limit} positions, but its input has {n}"
            )
        name, axis = source
        shape = specs[name].describe({k: v for k, v in bound.items() if k != dim})
        raise InputError(
            f"input '{name}' has {n} positions ({dim}={n}, dim {axis} of "
            f"{list(given[name].shape)}), more than max_len={limit} of {_where(rule)}: "
            f"expected {shape} with {dim} <= {limit}"
        )


def value_checks_enabled() -> bool:
    """False when `$SPARKC_CHECK_VALUES` is 0/false/no/off (skips the data-reading checks and
    their device synchronisation; kernels still never read out of bounds)."""
    raw = os.environ.get("SPARKC_CHECK_VALUES", "").strip().lower()
    return raw not in ("0", "false", "no", "off")


def _range_text(rule: Mapping[str, Any], high: int | None) -> str:
    low = rule["low"]
    text = f"[{low}, {high})" if high is not None else f">= {low}"
    if rule.get("allow") is not None:
        name = rule.get("allow_name")
        text += f" or {name}={rule['allow']}" if name else f" or {rule['allow']}"
    return text


def _bad_values(t: torch.Tensor, rule: Mapping[str, Any], high: int | None) -> torch.Tensor:
    bad = t < rule["low"]
    if high is not None:
        bad = bad | (t >= high)
    if rule.get("allow") is not None:
        bad = bad & (t != rule["allow"])
    return bad


class ValueCheck:
    """The value rules' reductions, queued (`start_value_checks`); `error()` reads their results,
    the one synchronisation. On a CUDA device the results travel to pinned host memory behind
    an event, so reading them waits for these reductions only, not for work queued after them."""

    def __init__(self, todo: list, extremes: torch.Tensor) -> None:
        self.todo = todo
        self.event = None
        if extremes.is_cuda:
            self.host = torch.empty(extremes.shape, dtype=extremes.dtype, pin_memory=True)
            self.host.copy_(extremes, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = extremes

    def error(self) -> InputError | None:
        """The InputError of the first failing rule (in rule order), or None."""
        if self.event is not None:
            self.event.synchronize()
        values = self.host.tolist()
        for k, (rule, t, high) in enumerate(self.todo):
            lo, hi = values[2 * k], values[2 * k + 1]
            if lo >= rule["low"] and (high is None or hi < high):
                continue
            mask = _bad_values(t, rule, high)
            pos = [int(i) for i in torch.nonzero(mask)[0]]
            value = int(t[tuple(pos)])
            return InputError(
                f"input '{rule['input']}' holds {value} at index {pos}: {_where(rule)} needs "
                f"{rule['what']} in {_range_text(rule, high)}"
            )
        return None

    def finish(self) -> None:
        bad = self.error()
        if bad is not None:
            raise bad


def start_value_checks(
    rules: Sequence[Mapping[str, Any]], given: Mapping[str, torch.Tensor], bound: Mapping
) -> ValueCheck | None:
    """Queue the reductions of every value rule that applies (None: nothing to check, or a CUDA
    graph is being captured, which cannot synchronise: the kernels' bounds masks remain)."""
    todo = []
    for rule in rules:
        if rule["kind"] != "range":
            continue
        t = given.get(rule["input"])
        if t is None or t.numel() == 0:
            continue
        if t.is_cuda and torch.cuda.is_current_stream_capturing():
            return None
        high = rule.get("high")
        if isinstance(high, str):
            high = bound.get(high)
        todo.append((rule, t, high))
    if not todo:
        return None
    # Two reductions per rule (allowed values mapped into range first), then one transfer of
    # every minimum and maximum.
    extremes = []
    for rule, t, _ in todo:
        if rule.get("allow") is not None:
            t = torch.where(t == rule["allow"], torch.full_like(t, rule["low"]), t)
        extremes += torch.aminmax(t)
    return ValueCheck(todo, torch.stack([e.to(torch.int64) for e in extremes]))


def _check_values(
    rules: Sequence[Mapping[str, Any]], given: Mapping[str, torch.Tensor], bound: Mapping
) -> None:
    pending = start_value_checks(rules, given, bound)
    if pending is not None:
        pending.finish()


def _opaque(fn):
    # Under torch.compile the data-dependent branch runs as one opaque call (a graph break),
    # like the generated kernels' launches (runtime/launch.py, `apply`).
    return torch.compiler.disable(fn, recursive=True)


check_value_rules = _opaque(_check_values)


def param_like(module: torch.nn.Module) -> torch.Tensor | None:
    """The first floating parameter (else buffer) of `module`: the dtype and device its inputs
    must follow. Its place (owner module, name) is found once and kept on the module, so later
    calls cost two dict lookups (walking `parameters()` costs ~8 µs per call) and still see a
    replaced tensor."""
    place = module.__dict__.get("_sparkc_like")
    if place is not None:
        owner, table, name = place
        t = getattr(owner, table).get(name)
        if t is not None and t.is_floating_point():
            return t
    for table in ("_parameters", "_buffers"):
        for owner in module.modules():
            for name, t in getattr(owner, table).items():
                if t is not None and t.is_floating_point():
                    module.__dict__["_sparkc_like"] = (owner, table, name)
                    return t
    return None


def prepare_inputs(
    module: torch.nn.Module,
    specs: Sequence[InputSpec],
    rules: Sequence[Mapping[str, Any]],
    values: Sequence[Any],
) -> tuple[Any, ...]:
    """Every check of `check_inputs` against the module's parameters (device), then float
    inputs cast to the parameters' dtype: what both forward paths run on."""
    like = param_like(module)
    check_inputs(specs, values, rules, None if like is None else like.device)
    return _cast_like(like, values)


def prepare_call(
    module: torch.nn.Module,
    specs: Sequence[InputSpec],
    rules: Sequence[Mapping[str, Any]],
    values: Sequence[Any],
) -> tuple[tuple[Any, ...], ValueCheck | None]:
    """`prepare_inputs` with the value rules left pending: the inputs to run on, and the
    `ValueCheck` to finish before the call returns (None: nothing to check)."""
    like = param_like(module)
    bound, given = _check_static(specs, values, rules, None if like is None else like.device)
    pending = start_value_checks(rules, given, bound) if given else None
    return _cast_like(like, values), pending


def _cast_like(like: torch.Tensor | None, values: Sequence[Any]) -> tuple[Any, ...]:
    if like is None:
        return tuple(values)
    return tuple(cast_float(v, like.dtype) for v in values)


def cast_float(x: Any, dtype: torch.dtype) -> Any:
    """A float tensor in `dtype` (a float64 input of a float32 model is rounded to float32)."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
        return x.to(dtype)
    return x


def check_positions(n: int, max_len: int, where: str) -> None:
    """An op-level fallback of the `max_len` rule, for positions not traced to a model input."""
    if n > max_len:
        raise InputError(f"{where}: sequence length {n} exceeds max_len={max_len}")


def check_index_table(index: torch.Tensor, codewords: int, where: str = "demopack_linear") -> None:
    """demopack_linear's index buffer (from the state_dict) must hold ids in [0, codewords)."""
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= codewords):
        raise InputError(
            f"{where}: the index table holds ids outside [0, {codewords}) "
            f"(min {int(index.min())}, max {int(index.max())})"
        )
