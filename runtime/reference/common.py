"""Shared pieces of the reference implementation: the call context, precision and noise helpers.

Every reference rule has the signature `fn(inputs, params, hp, ctx) -> tuple[Tensor, ...]`
(see `runtime/reference/__init__.py`). This module gives them:
- `RefContext`: training flag, optional noise generator, position offset for decoding;
- `up`/`down`: SPEC §0's precision rule (exp, log, softmax, norms and scans in at least float32,
  float64 stays float64, results cast back to the activation dtype);
- `uniform01`, `logistic_noise`, `gumbel_noise`: training noise, always drawn in float32 so that
  a float32 module and the float64 reference path see the same samples from the same seed;
- `linear`: `x Wᵀ + b` from a parameter prefix, and the activation table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Params = Mapping[str, Tensor]


@dataclass
class RefContext:
    """How a reference op is called.

    training: noise ops draw noise only when True (and their noise flag is on).
    generator: the torch.Generator noise is drawn from (None: the global RNG of the device).
    position_offset: absolute position of the first input row (the cache length when decoding);
      used by `rope`, `pos_embed` and the positional parts of `attention`/`sqdk_attention`.
    decode_kernels: a cached call of the Triton path: decode rules may use their kernels
      (runtime/decode_attention.py) where they have one.
    position: None, or a device int64 tensor [1] holding the absolute position of the first
      input row (a static decode step, runtime/decode_graph.py): rules then read positions from
      it, never from `position_offset`, and skip checks that read tensor values on the host (the
      caller checks once), so the step holds no host sync and no host value that changes
      between steps, and can be captured in a CUDA graph. `positions(ctx, n, device)` gives
      the absolute positions of the input rows either way.
    """

    training: bool = False
    generator: torch.Generator | None = None
    position_offset: int = 0
    decode_kernels: bool = False
    position: Tensor | None = None


def positions(ctx: RefContext, n: int, device: torch.device) -> Tensor:
    """The absolute positions of `n` input rows, int64 [n], on `device`: read from the device
    tensor `ctx.position` when set (no host value), else from `ctx.position_offset`."""
    if ctx.position is not None:
        return ctx.position + torch.arange(n, device=device)
    return torch.arange(ctx.position_offset, ctx.position_offset + n, device=device)


def offset_of(ctx: RefContext) -> int | Tensor:
    """The position of the first input row: `ctx.position` (device tensor) when set, else the
    host int `ctx.position_offset` (for `rope_tables`)."""
    return ctx.position if ctx.position is not None else ctx.position_offset


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float dtype computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def up(x: Tensor) -> Tensor:
    """`x` in its compute dtype (a no-op for float32/float64)."""
    return x.to(compute_dtype(x.dtype))


def down(x: Tensor, like: Tensor | torch.dtype) -> Tensor:
    dtype = like if isinstance(like, torch.dtype) else like.dtype
    return x.to(dtype)


_F32 = torch.finfo(torch.float32)


def uniform01(shape: tuple[int, ...], device: torch.device, ctx: RefContext) -> Tensor:
    """U(0,1) in float32 clamped to [tiny, 1 - eps] of float32, so logs stay finite."""
    u = torch.rand(shape, generator=ctx.generator, device=device, dtype=torch.float32)
    return u.clamp(_F32.tiny, 1.0 - _F32.eps)


def logistic_noise(shape: tuple[int, ...], device: torch.device, ctx: RefContext) -> Tensor:
    """ln u − ln(1−u): adding it to a logit ℓ makes [ℓ̃ > 0] a Bernoulli(σ(ℓ)) draw."""
    u = uniform01(shape, device, ctx)
    return torch.log(u) - torch.log1p(-u)


def gumbel_noise(shape: tuple[int, ...], device: torch.device, ctx: RefContext) -> Tensor:
    """Gumbel(0, 1): −ln(−ln u)."""
    u = uniform01(shape, device, ctx)
    return -torch.log(-torch.log(u))


def linear(x: Tensor, params: Params, prefix: str, bias: bool = True) -> Tensor:
    """`prefix.weight`, `prefix.bias` as torch.nn.Linear (x Wᵀ + b)."""
    b = params[f"{prefix}.bias"] if bias else None
    return F.linear(x, params[f"{prefix}.weight"], b)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    xu = up(x)
    y = F.layer_norm(xu, (x.shape[-1],), up(weight), up(bias), eps)
    return down(y, x)


def _act(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    # Transcendentals are evaluated in the compute dtype and cast back (SPEC §0).
    return lambda x: down(fn(up(x)), x)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "gelu": _act(lambda x: F.gelu(x, approximate="none")),
    "silu": _act(F.silu),
    "sigmoid": _act(torch.sigmoid),
    "tanh": _act(torch.tanh),
}


def heads_view(x: Tensor, heads: int) -> Tensor:
    """[B, N, H·d] -> [B, N, H, d]."""
    b, n, dm = x.shape
    return x.reshape(b, n, heads, dm // heads)


def merge(x: Tensor) -> Tensor:
    """[B, N, H, d] -> [B, N, H·d]."""
    b, n, h, d = x.shape
    return x.reshape(b, n, h * d)


def rope_tables(
    n: int, d: int, base: float, offset: int | Tensor, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """cos, sin of shape [n, d/2] for positions offset..offset+n-1 (angles in float64);
    `offset` may be a device int64 tensor [1] (a static decode step: no host value)."""
    half = d // 2
    i = torch.arange(half, device=device, dtype=torch.float64)
    # torch.full, not torch.tensor: no host-to-device copy (a CUDA graph may capture this).
    theta = torch.pow(torch.full((), float(base), dtype=torch.float64, device=device), -2.0 * i / d)
    if isinstance(offset, Tensor):
        t = (offset + torch.arange(n, device=device)).to(torch.float64)
    else:
        t = torch.arange(offset, offset + n, device=device, dtype=torch.float64)
    ang = t[:, None] * theta[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE of x [..., n, H, d] with tables [n, d/2] (broadcast over heads)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[..., None, :], sin[..., None, :]
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)


def check_positions(op: str, n: int, offset: int, max_len: int, what: str) -> None:
    if offset + n > max_len:
        at = f" starting at position {offset}" if offset else ""
        raise ValueError(f"{op}: input '{what}' has {n} positions{at}, more than max_len={max_len}")


# ---- Cached decoding (SPEC §5.6): the per-op rule type and the stencil helpers.


@dataclass(frozen=True)
class Decoder:
    """The cached-decoding rule of one op.

    state(hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]: the op's state for a
      new cache (`shapes`: the op instance's input shapes by port, symbolic dims as names;
      `dtype`: the activation dtype; states that the reference computes in float32 are float32).
      May raise ValueError (e.g. max_len beyond an op's own position limit).
    step(inputs, params, hp, ctx, state) -> outputs: like the reference rule, for the positions
      ctx.position_offset .. + N − 1, reading and updating `state` in place; in a static step
      (`ctx.position` set) the same positions read from the device, with no host sync, and the
      same outputs up to float rounding (tests/runtime/test_decode_graph.py).
    fill(tensors, params, hp, ctx, state) -> None (optional): a prefill's state, written from
      tensors the Triton forward computed for positions 0 .. N − 1 (keys: the op's codegen rule
      names them, `Emitter.fill` in sparkc/codegen/emit.py); the state after it is the one
      `step` would leave after the same rows."""

    state: Callable[..., dict[str, torch.Tensor]]
    step: Callable[..., tuple[torch.Tensor, ...]]
    fill: Callable[..., None] | None = None


def window_state(batch: int, width: int, rows: int, device, dtype) -> dict[str, torch.Tensor]:
    """The state of a stencil: the last `rows` inputs [B, rows, width] (right-aligned)."""
    return {"last": torch.zeros(batch, rows, width, device=device, dtype=dtype)}


def window_fill(tensors: Mapping[str, Tensor], params, hp, ctx, state) -> None:
    """A stencil's prefill: the last `rows` rows of its input `x` kept (zeros before them)."""
    last = state["last"]
    if last.shape[1]:
        last.copy_(torch.cat((last, tensors["x"].to(last.dtype)), dim=1)[:, -last.shape[1] :])


def window_step(
    rule: Callable[..., tuple[torch.Tensor, ...]],
    port: str,
    inputs: Mapping[str, Tensor],
    params,
    hp,
    ctx,
    state,
) -> tuple[torch.Tensor, ...]:
    """Decode a causal stencil that reads the last `rows` inputs: the reference rule on the
    kept rows followed by the new ones (exact: every new row sees the same inputs as in the full
    sequence, and the zero padding of the full forward only where the sequence starts), then
    the new last rows kept."""
    last = state["last"]
    rows = last.shape[1]
    x = inputs[port]
    if ctx.position is not None:
        # A static step: every kept row is read (zeros before the sequence start, as `reset`
        # and `new_cache` leave them); the rule sees where its first row sits (`ctx.position`
        # may go negative there), so a stencil that treats the start specially (trajectory)
        # can mask the rows before position 0. The outputs of the new rows are the same.
        joined = torch.cat((last.to(x.dtype), x), dim=1)
        outs = rule(
            {**inputs, port: joined}, params, hp, replace(ctx, position=ctx.position - rows)
        )
        if rows:
            last.copy_(torch.cat((last, x.to(last.dtype)), dim=1)[:, -rows:])
        return tuple(o[:, rows:] for o in outs)
    keep = min(ctx.position_offset, rows)
    joined = torch.cat((last[:, rows - keep :].to(x.dtype), x), dim=1)
    outs = rule({**inputs, port: joined}, params, hp, ctx)
    if rows:
        last.copy_(torch.cat((last, x.to(last.dtype)), dim=1)[:, -rows:])
    return tuple(o[:, keep:] for o in outs)
