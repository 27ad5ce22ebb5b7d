"""Reference rules of SPEC §1 primitives (everything except `attention`, see attention.py).

Each rule maps `(inputs by port, params by local ParamSpec name, resolved hp, RefContext)` to the
op's outputs in OutSpec order. Pure PyTorch and differentiable; norms, softmax and the
cross-entropy's log-sum-exp run in at least float32 and are cast back (SPEC §0). `DECODE`: the
cached-decoding rule of the causal conv1d (its last kernel − 1 inputs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .common import (
    ACTIVATIONS,
    Decoder,
    Params,
    RefContext,
    Tensor,
    apply_rope,
    check_positions,
    down,
    layer_norm,
    linear,
    offset_of,
    positions,
    rope_tables,
    up,
    window_fill,
    window_state,
    window_step,
)

Inputs = dict[str, Tensor]
Hp = dict[str, Any]


def ref_linear(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    # A tied linear receives the embedding's [vocab, dim] = [out, in] table as its weight.
    return (F.linear(inputs["x"], params["weight"], params.get("bias") if hp["bias"] else None),)


def ref_embed(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    tokens, vocab = inputs["tokens"], hp["vocab"]
    # The range check reads the ids on the host; under torch.compile that would break the graph,
    # so compiled graphs leave it to F.embedding's own bounds check (a device-side assert).
    # A static decode step (ctx.position set) leaves it to its caller, which checks once.
    if tokens.numel() and ctx.position is None and not torch.compiler.is_compiling():
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"embed: token id {bad} in input 'tokens' is outside [0, {vocab}) (vocab={vocab})"
            )
    return (F.embedding(tokens.long(), params["weight"]),)


def ref_pos_embed(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    n, off = x.shape[1], ctx.position_offset
    if ctx.position is not None:  # a static decode step: new_cache checked max_len
        return (x + params["weight"].index_select(0, positions(ctx, n, x.device)),)
    check_positions("pos_embed", n, off, hp["max_len"], "x")
    return (x + params["weight"][off : off + n],)


def ref_rmsnorm(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    xu = up(x)
    y = xu * torch.rsqrt(xu.pow(2).mean(-1, keepdim=True) + hp["eps"]) * up(params["weight"])
    return (down(y, x),)


def ref_layernorm(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    return (layer_norm(inputs["x"], params["weight"], params["bias"], hp["eps"]),)


def _unary(name: str) -> Callable[..., tuple[Tensor, ...]]:
    fn = ACTIVATIONS[name]

    def rule(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
        return (fn(inputs["x"]),)

    rule.__name__ = f"ref_{name}"
    return rule


def _binary(fn: Callable[[Tensor, Tensor], Tensor], name: str) -> Callable[..., tuple[Tensor, ...]]:
    def rule(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
        return (fn(inputs["a"], inputs["b"]),)

    rule.__name__ = f"ref_{name}"
    return rule


def ref_neg(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    return (-inputs["x"],)


def ref_softmax(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    return (down(torch.softmax(up(x), dim=hp["dim"]), x),)


def ref_mlp(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    act = ACTIVATIONS[hp["act"]]
    return (linear(act(linear(inputs["x"], params, "fc1")), params, "fc2"),)


def ref_swiglu(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    g = ACTIVATIONS["silu"](linear(x, params, "w_gate", bias=False))
    u = linear(x, params, "w_up", bias=False)
    return (linear(g * u, params, "w_down", bias=False),)


def ref_conv1d(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    """Depthwise conv over N as an explicit sum of shifted copies (no F.conv1d, so the tests'
    comparison against F.conv1d is an independent check)."""
    x, w, b = inputs["x"], params["weight"], params["bias"]
    k, n = hp["kernel"], x.shape[1]
    left = k - 1 if hp["causal"] else (k - 1) // 2
    right = 0 if hp["causal"] else (k - 1) // 2
    xp = F.pad(x, (0, 0, left, right))  # pad the N axis of [B, N, D]
    y = b.expand_as(x)
    for j in range(k):
        # y_t += w[j] · x_{t - left + j}
        y = y + w[:, 0, j] * xp[:, j : j + n, :]
    return (y,)


def ref_rope(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]  # [B, N, H, d]
    xu = up(x)
    cos, sin = rope_tables(x.shape[1], x.shape[-1], hp["base"], offset_of(ctx), x.device, xu.dtype)
    return (down(apply_rope(xu, cos, sin), x),)


def ref_split_heads(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    b, n, d = x.shape
    return (x.reshape(b, n, hp["heads"], d // hp["heads"]),)


def ref_merge_heads(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    b, n, h, d = x.shape
    return (x.reshape(b, n, h * d),)


def ref_concat(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    return (torch.cat((inputs["a"], inputs["b"]), dim=-1),)


def ref_mean(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    return (down(up(x).mean(), x),)


def ref_cross_entropy(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext
) -> tuple[Tensor, ...]:
    logits, targets = inputs["logits"], inputs["targets"].long()
    v = logits.shape[-1]
    valid = targets != hp["ignore_index"]
    if bool(((targets < 0) | (targets >= v))[valid].any()):
        bad = targets[valid & ((targets < 0) | (targets >= v))][0].item()
        raise ValueError(
            f"cross_entropy: target {bad} in input 'targets' is outside [0, {v}) "
            f"and is not ignore_index={hp['ignore_index']}"
        )
    lu = up(logits)
    lse = torch.logsumexp(lu, dim=-1)
    picked = lu.gather(-1, torch.where(valid, targets, 0).unsqueeze(-1)).squeeze(-1)
    nll = (lse - picked) * valid.to(lu.dtype)
    # Dividing by max(count, 1) gives 0 (with a zero gradient, not NaN) when all are ignored.
    count = valid.sum().clamp(min=1).to(lu.dtype)
    return (down(nll.sum() / count, logits),)


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "linear": ref_linear,
    "embed": ref_embed,
    "pos_embed": ref_pos_embed,
    "rmsnorm": ref_rmsnorm,
    "layernorm": ref_layernorm,
    **{name: _unary(name) for name in ACTIVATIONS},
    "neg": ref_neg,
    "add": _binary(torch.add, "add"),
    "sub": _binary(torch.sub, "sub"),
    "mul": _binary(torch.mul, "mul"),
    "div": _binary(torch.true_divide, "div"),
    "softmax": ref_softmax,
    "mlp": ref_mlp,
    "swiglu": ref_swiglu,
    "conv1d": ref_conv1d,
    "rope": ref_rope,
    "split_heads": ref_split_heads,
    "merge_heads": ref_merge_heads,
    "concat": ref_concat,
    "mean": ref_mean,
    "cross_entropy": ref_cross_entropy,
}


# ---- Cached decoding (SPEC §5.6; runtime/decode.py): the causal conv keeps its last inputs.
# rope and pos_embed need no state: they read ctx.position_offset (the cache length), or the
# device tensor ctx.position in a static step.


def _conv1d_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    """The last kernel − 1 inputs."""
    return window_state(batch, shapes["x"][-1], int(hp["kernel"]) - 1, device, dtype)


def step_conv1d(inputs, params, hp, ctx, state) -> tuple[Tensor, ...]:
    return window_step(ref_conv1d, "x", inputs, params, hp, ctx, state)


DECODE: dict[str, Decoder] = {"conv1d": Decoder(_conv1d_state, step_conv1d, window_fill)}
