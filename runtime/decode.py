"""Cached (incremental) decoding of generated modules (SPEC §5.6).

Consumes a generated model (its `DECODE_SLOTS`, `NOT_DECODABLE`, `SEQUENCE_INPUTS`, `INPUTS`,
`RULES` and its generated `_forward_reference` / `_forward_triton`, which take the cache); produces
- `DecodeCache`: the caller-owned cache object (`model.new_cache(batch, max_len)`): one state
  (a dict of preallocated tensors) per decoding op instance, the per-sequence inputs kept from
  the first call, the number of positions consumed (`.length`), `reset()`, `tensors()`;
- `new_cache(model, ...)`: refuses a program that cannot decode (naming every op instance at
  fault), a `max_len` beyond the model's own position limits, a bad batch;
- `run_cached(model, cache, values, static=False)`: `model(tokens_new, cache=cache)`: checks the
  call against the cache (owner, batch, dtype, device, room left), runs the generated cached
  forward without autograd and advances `.length` by the number of new positions;
  `static=True` runs the same call as a static step (below); a cache's first call on the
  Triton path in eval mode runs the generated prefill instead (`prefills`): the full
  forward's kernels, each mixer's state filled from their tensors;
- `static_forward(model, cache, values)`: the cached forward of a static step, with no check,
  no host sync and no host-side change: the rules read the position from the device tensor
  `cache.position` (int64 [1], the device mirror of `.length`) and the step ends by advancing
  it in place, so the call can be captured in a CUDA graph and replayed
  (runtime/decode_graph.py); its caller advances `.length`.

Each op's state and step rule lives with its reference rule (`DECODE` of the op's family module
in runtime/reference/, a `Decoder` of reference/common.py; assembled as
`sparkc.runtime.reference.DECODE`): `Decoder.state` allocates
the state at `new_cache` time, static-shaped (`max_len` rows), and `Decoder.step` consumes the next
positions, reading `ctx.position_offset` (= `cache.length`), or in a static step the device
tensor `ctx.position` (= `cache.position`). Every state tensor is written in place, so the
tensors a cache lists stay the same objects for its whole life.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch

from .checks import InputError, param_like, prepare_inputs
from .device import require_cuda
from .reference import DECODE
from .reference.common import RefContext


class NotDecodableError(ValueError):
    """The program has an op that cannot decode incrementally (raised by `new_cache`)."""


class DecodeCache:
    """The state of one batch of sequences being decoded by one model (see the module docs).

    Attributes: `batch`, `max_len`, `device`, `dtype`, `length` (positions consumed so far),
    `position` (the same number in a device int64 tensor [1], what a static step reads),
    `states` (one dict of tensors per decoding op instance, in `slots` order), `inputs` (the
    per-sequence inputs given with the first call). Nothing is shared between caches."""

    def __init__(self, model, slots, states, batch, max_len, device, dtype):
        self._owner = weakref.ref(model)
        self.slots: tuple[tuple[str, str], ...] = tuple(slots)  # (instance, op)
        self.states: list[dict[str, torch.Tensor]] = list(states)
        self.batch, self.max_len = batch, max_len
        self.device, self.dtype = device, dtype
        self.length = 0
        self.position = torch.zeros(1, dtype=torch.int64, device=device)
        self.static = False  # set per call: the rules read `position`, not `length`
        self.inputs: dict[str, torch.Tensor] = {}  # as checked and cast
        self._given: dict[str, Any] = {}  # as the caller passed them
        self._broken = False
        self.kernels = False  # set per call: the Triton path's cached calls use decode kernels
        self.memo: dict[int, tuple] = {}  # per-sequence values (`once`)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every state tensor, named `<instance>/<state>` (for inspection or a CUDA graph)."""
        return {
            f"{inst}/{name}": t
            for (inst, _), state in zip(self.slots, self.states)
            for name, t in state.items()
        }

    def context(self, training: bool) -> RefContext:
        """The rules' context of a cached call (the generated forward bodies given the cache)."""
        if self.static:  # no host value: the position is read from the device tensor
            return RefContext(
                training=training, decode_kernels=self.kernels, position=self.position
            )
        return RefContext(
            training=training, position_offset=self.length, decode_kernels=self.kernels
        )

    def once(self, index: int, compute):
        """The value of a per-sequence op (one that reads only per-sequence inputs and
        parameters): computed on the cache's first call, kept for the later ones."""
        if self.length == 0 or index not in self.memo:
            self.memo[index] = compute()
        return self.memo[index]

    def reset(self) -> None:
        """Start over: length 0, state tensors zeroed in place, per-sequence inputs dropped."""
        for t in self.tensors().values():
            t.zero_()
        self.position.zero_()
        self.length = 0
        self.inputs.clear()
        self._given.clear()
        self.memo.clear()
        self._broken = False

    def __repr__(self) -> str:
        return (
            f"DecodeCache(batch={self.batch}, max_len={self.max_len}, length={self.length}, "
            f"dtype={self.dtype}, device={self.device}, ops={len(self.slots)})"
        )


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"new_cache: {what} must be a positive int, got {value!r}")
    return value


def new_cache(model, batch: int, max_len: int, device=None, dtype=None) -> DecodeCache:
    """`model.new_cache(batch, max_len, device=..., dtype=...)` (see the module docstring)."""
    cls = type(model)
    if cls.NOT_DECODABLE:
        lines = "\n".join(f"  - {reason}" for reason in cls.NOT_DECODABLE)
        raise NotDecodableError(
            f"{cls.__name__} cannot decode incrementally (SPEC 5.6), because:\n{lines}"
        )
    batch = _positive_int(batch, "batch")
    max_len = _positive_int(max_len, "max_len")
    for rule in cls.RULES:
        if rule.get("kind") == "max_len" and max_len > rule["max_len"]:
            raise ValueError(
                f"new_cache: max_len={max_len} exceeds {rule['op']} '{rule['instance']}' "
                f"max_len={rule['max_len']} (positions past it have no embedding)"
            )
    like = param_like(model)
    if device is None:
        device = like.device if like is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # as tensors report it
    dtype = dtype if dtype is not None else (like.dtype if like is not None else torch.float32)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"new_cache: dtype must be a floating torch.dtype, got {dtype!r}")
    states = []
    for inst, op, hp, shapes in cls.DECODE_SLOTS:
        try:
            states.append(DECODE[op].state(hp, shapes, batch, max_len, device, dtype))
        except ValueError as e:
            raise ValueError(f"new_cache: {op} '{inst}': {e}") from None
    slots = [(inst, op) for inst, op, _, _ in cls.DECODE_SLOTS]
    return DecodeCache(model, slots, states, batch, max_len, device, dtype)


def _sequence_input(specs, values, seq_names) -> tuple[str, torch.Tensor]:
    for spec, value in zip(specs, values):
        if spec.name in seq_names and isinstance(value, torch.Tensor):
            return spec.name, value
    name = next(s.name for s in specs if s.name in seq_names)
    raise InputError(f"input '{name}' is missing: a cached call needs the new positions")


def run_cached(model, cache: Any, values: Sequence[Any], static: bool = False):
    """`model(..., cache=cache)`: checks, the generated body given the cache, `length += N`.
    `static`: run it as a static step (`static_forward`), as a CUDA graph replays it."""
    cls = type(model)
    if not isinstance(cache, DecodeCache):
        raise TypeError(
            f"cache must come from model.new_cache(batch, max_len), got {type(cache).__name__}"
        )
    if cache._owner() is not model:
        raise ValueError("this cache was made by another model: call new_cache on this one")
    if cache._broken:
        raise RuntimeError(
            "this cache is in an unknown state after a failed call: call cache.reset() first"
        )
    seq_names = set(cls.SEQUENCE_INPUTS)
    name, first = _sequence_input(cls.INPUTS, values, seq_names)
    if first.dim() < 2:
        raise InputError(
            f"input '{name}' must be [batch, new positions, ...], got {list(first.shape)}"
        )
    b, n = int(first.shape[0]), int(first.shape[1])
    if b != cache.batch:
        raise InputError(
            f"input '{name}' has batch {b}, but the cache was made for batch {cache.batch}"
        )
    if n < 1:
        raise InputError(f"input '{name}' has no new positions")
    if cache.length + n > cache.max_len:
        raise InputError(
            f"input '{name}' brings {n} positions to a cache holding {cache.length}: "
            f"{cache.length + n} is past the cache's max_len={cache.max_len}"
        )
    like = param_like(model)
    if like is not None and like.dtype != cache.dtype:
        raise InputError(
            f"the cache holds {cache.dtype} but the model's parameters are {like.dtype}: "
            "make the cache with new_cache(..., dtype=<the model's dtype>)"
        )
    if like is not None and like.device != cache.device:
        raise InputError(
            f"the cache is on {cache.device} but the model's parameters are on {like.device}"
        )
    values, per_sequence = list(values), []
    for i, spec in enumerate(cls.INPUTS):
        if spec.name in seq_names:
            continue
        per_sequence.append(i)
        given = values[i]
        if cache.length == 0:
            continue  # kept below, once checked
        if given is not None and given is not cache._given.get(spec.name):
            raise InputError(
                f"input '{spec.name}' is per sequence: give it with the first call on a cache "
                "(it is kept there); later calls leave it out"
            )
        values[i] = cache.inputs.get(spec.name)
    raw = list(values)
    values = prepare_inputs(model, cls.INPUTS, cls.RULES, values)
    if cache.length == 0:
        for i in per_sequence:
            name_i = cls.INPUTS[i].name
            cache.inputs[name_i], cache._given[name_i] = values[i], raw[i]
    # The Triton path's cached calls may use decode kernels (where a rule has one); on a device
    # its kernels cannot run they are refused, as the plain forward refuses them.
    cache.kernels = bool(model._use_triton(first))
    if cache.kernels:
        require_cuda(first)
    try:
        if static:
            out = static_forward(model, cache, values)
        else:
            with torch.no_grad():
                if prefills(model, cache):
                    out = model._forward_triton(*values, _cache=cache)
                else:
                    out = model._forward_reference(*values, _cache=cache)
            cache.position.fill_(cache.length + n)
    except BaseException:
        cache._broken = True
        raise
    cache.length += n
    return out


def prefills(model, cache: DecodeCache) -> bool:
    """Whether a (non-static) cached call runs the generated prefill (`_forward_triton` given
    the cache): the Triton forward's kernels over the new rows with each mixer's state filled
    from the tensors they computed, the same outputs as the full forward. It does on a cache's
    first call (positions from 0, as the full forward's) on the Triton path (`cache.kernels`),
    in eval mode (a training-mode call may draw noise, which the fills do not replay)."""
    return cache.length == 0 and cache.kernels and not model.training


def static_forward(model, cache: DecodeCache, values: Sequence[Any]):
    """The generated cached call (`_forward_reference` given the cache) as a static step (see
    the module docstring): values are
    the checked model inputs (per-sequence ones from `cache.inputs`); `cache.kernels` is set by
    the caller. Advances `cache.position` by the new positions on the device, not `.length`."""
    cls = type(model)
    _, first = _sequence_input(cls.INPUTS, values, set(cls.SEQUENCE_INPUTS))
    n = int(first.shape[1])
    cache.static = True
    try:
        with torch.no_grad():
            out = model._forward_reference(*values, _cache=cache)
            cache.position.add_(n)
    finally:
        cache.static = False
    return out
