"""A one-token decode step replayed from a CUDA graph (SPEC §5.6; docs/decoding.md).

Consumes a generated model and a `DecodeCache` of it on a CUDA device that has been prefilled
(one or more ordinary cached calls); produces `GraphStep`, a callable `step(tokens)` that
consumes one new token per sequence (`tokens` [B, 1] integer ids) and returns the model's
outputs at that position, like `model(tokens, cache=cache)`.

How: a batch-1 step is a few hundred small kernel launches, so on a GPU its time is the
launches, not the math. `GraphStep` records the step once in a CUDA graph and replays it:
- the token ids go into a static input buffer, the outputs come out of static buffers (the
  returned `ModelOutput` holds the same tensors at every step: read or clone them before the
  next step);
- the step is a static step (runtime/decode.py `static_forward`): the rules read the position
  from the device tensor `cache.position` and the step advances it in place, so the captured
  work is the same at every position; the host-side `cache.length` is advanced by `GraphStep`
  after each replay, so it stays right for the caller;
- the checks that read host values run outside the graph, before each replay (shape, dtype,
  device, room left in the cache; the token ids' range too unless `check=False`, which saves a
  host sync per token when the ids are known to be valid, e.g. sampled from the logits);
- the first `warmup` steps (default 1) run eagerly as static steps on a side stream (the kernels
  compile and tune there, allocators settle); the next step is captured, then replayed;
- `compile=True` (or a `torch.compile` backend name) records the static step compiled by
  `torch.compile(fullgraph=True)` instead (inductor fuses the step's many small PyTorch ops
  into few kernels; the step then runs the PyTorch rules, not the split-KV decode kernel); the
  compilation happens in the warm-up step.
The graph reads the model's parameters, the cache's state and its per-sequence tensors by
address. Changing their values in place (`load_state_dict`, `cache.reset()` and a new prefill)
is fine; a step whose model parameters or per-sequence tensors (an instruction tape, values
kept by `cache.once`) were replaced by other tensors since the capture captures again (their
addresses are compared before each replay). One `GraphStep` belongs to one cache; a cache
stepped by a `GraphStep` may still take ordinary cached calls.
"""

from __future__ import annotations

from typing import Any

import torch

from .checks import InputError, check_inputs, param_like
from .cuda_graph import CudaGraphRunner, addresses, require_cuda
from .decode import DecodeCache, static_forward
from .env import interpreting


class GraphStep(CudaGraphRunner):
    """`step = GraphStep(model, cache)`; `out = step(tokens)` (see the module docstring)."""

    def __init__(
        self, model: Any, cache: DecodeCache, warmup: int = 1, compile: bool | str = False
    ):
        if not isinstance(cache, DecodeCache):
            raise TypeError(
                f"cache must come from model.new_cache(batch, max_len), got {type(cache).__name__}"
            )
        if cache._owner() is not model:
            raise ValueError("this cache was made by another model: call new_cache on this one")
        self._require_device(cache)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1, got {warmup!r}")
        cls = type(model)
        self.model, self.cache, self.warmup = model, cache, warmup
        self.device = cache.device
        seq = set(cls.SEQUENCE_INPUTS)
        self._token_index = next(i for i, s in enumerate(cls.INPUTS) if s.name in seq)
        spec = cls.INPUTS[self._token_index]
        for s in cls.INPUTS:
            if s.name in seq and s is not spec and not s.optional:
                raise ValueError(
                    f"a CUDA-graph step feeds only the input '{spec.name}'; the input "
                    f"'{s.name}' is needed at every position too"
                )
        if not spec.dtype.startswith(("i", "u")):
            raise ValueError(
                f"a CUDA-graph step feeds token ids; input '{spec.name}' is {spec.dtype}"
            )
        self.input_name = spec.name
        self.tokens = torch.zeros(cache.batch, 1, dtype=torch.long, device=cache.device)
        self.out = None
        self.steps = 0
        self.addresses: tuple = ()
        if compile not in (False, True) and not isinstance(compile, str):
            raise ValueError(f"compile must be a bool or a torch.compile backend, got {compile!r}")
        self.compile = compile
        self._fn = self._static
        if compile:
            backend = "inductor" if compile is True else compile
            self._fn = torch.compile(self._static, backend=backend, fullgraph=True, dynamic=False)

    def _static(self, values: list):
        return static_forward(self.model, self.cache, values)

    def _values(self, tokens: torch.Tensor) -> list:
        cls, cache = type(self.model), self.cache
        seq = set(cls.SEQUENCE_INPUTS)
        values = []
        for i, s in enumerate(cls.INPUTS):
            if i == self._token_index:
                values.append(tokens)
            else:
                values.append(None if s.name in seq else cache.inputs.get(s.name))
        return values

    def _check(self, tokens: Any, check: bool) -> None:
        cache, name = self.cache, self.input_name
        if cache._broken:
            raise RuntimeError(
                "this cache is in an unknown state after a failed call: call cache.reset() first"
            )
        if not isinstance(tokens, torch.Tensor) or tokens.shape != (cache.batch, 1):
            got = list(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise InputError(
                f"input '{name}' of a CUDA-graph step must be [batch={cache.batch}, 1], got {got}"
            )
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise InputError(f"input '{name}' must hold integer token ids, got {tokens.dtype}")
        if tokens.device != cache.device:
            raise InputError(f"input '{name}' is on {tokens.device}, the cache on {cache.device}")
        like = param_like(self.model)
        if like is not None and (like.dtype != cache.dtype or like.device != cache.device):
            raise InputError(
                f"the cache holds {cache.dtype} on {cache.device} but the model's parameters "
                f"are {like.dtype} on {like.device}"
            )
        if cache.length < 1:
            raise ValueError(
                "prefill the cache first (model(prompt, cache=cache)): a CUDA-graph step "
                "continues a cache that holds at least one position"
            )
        if cache.length + 1 > cache.max_len:
            raise InputError(
                f"input '{name}' brings 1 position to a cache holding {cache.length}: "
                f"{cache.length + 1} is past the cache's max_len={cache.max_len}"
            )
        if check:  # the value-range rules of the token input (reads the ids: one host sync)
            cls = type(self.model)
            rules = [r for r in cls.RULES if r.get("input") == name and r.get("kind") == "range"]
            spec = cls.INPUTS[self._token_index]
            check_inputs([spec], [tokens], rules, None)

    def __call__(self, tokens: torch.Tensor, check: bool = True):
        """The outputs at the next position (static tensors, overwritten by the next step)."""
        self._check(tokens, check)
        model, cache = self.model, self.cache
        # The split-KV kernel on the Triton path, unless torch.compile fuses the PyTorch rules.
        kernels = not self.compile and bool(model._use_triton(self.tokens))
        cache.kernels = kernels and (self.tokens.is_cuda or interpreting())
        if self.steps < self.warmup:
            # Through the static buffer, as the capture will be: a compiled step is guarded on
            # its inputs' strides, so a strided slice here would compile again during capture.
            self.tokens.copy_(tokens)
            values = self._values(self.tokens)
            out = self._guarded(lambda: self._warm(lambda: self._fn(values)))
            cache.length += 1
            self.steps += 1
            return out
        self.tokens.copy_(tokens)
        now = self._addresses()
        if self.out is None or now != self.addresses:
            self.addresses = now
            values = self._values(self.tokens)
            # The capture runs nothing: the replay below does this step.
            self.out = self._guarded(lambda: self._capture(lambda: self._fn(values)))
        self._guarded(self._replay)
        cache.length += 1
        self.steps += 1
        return self.out

    def _addresses(self) -> tuple:
        """Where the tensors the graph reads besides the cache's own state live: the model's
        parameters and buffers, the per-sequence inputs and the values kept by `once`."""
        kept = [t for m in self.cache.memo.values() for t in m if isinstance(t, torch.Tensor)]
        tensors = [*self.model._tensors(), *self.cache.inputs.values(), *kept]
        return addresses(tensors)

    def _guarded(self, fn):
        """fn(); a failure marks the cache (its state is unknown), as a failed cached call does."""
        try:
            return fn()
        except BaseException:
            self.cache._broken = True
            raise

    # The CUDA side: runtime/cuda_graph.py (tests/runtime/test_decode_graph.py emulates it on the
    # CPU).

    def _require_device(self, cache: DecodeCache) -> None:
        require_cuda(cache.device, "decode step", "step with model(tokens, cache=cache)")
