"""Reference rules of SPEC §2 (SPaR-K): `fk_attention`, `spd_router`, `verifier_stack`.

- fk_attention: x [B,N,D] -> y; one attention matrix A per head, reused by every hop.
- spd_router: x -> (y, x_struct, x_pseudo, loss); optional gate noise in training.
- verifier_stack: h -> (read, signals, pointer, loss); a Python loop over time (vectorised over
  batch, stack slots and elements), the memory and pointer scan kept in the compute dtype.
- DECODE: their cached-decoding rules (fk_attention: keys and P_0..P_{hops−1}; verifier_stack:
  the memory and the pointer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .attention import attend, attention_probs, causal_mask, fused_step, project_qkv
from .common import (
    Decoder,
    Params,
    RefContext,
    Tensor,
    compute_dtype,
    down,
    gumbel_noise,
    heads_view,
    layer_norm,
    linear,
    logistic_noise,
    merge,
    offset_of,
    positions,
    up,
)

Inputs = dict[str, Tensor]
Hp = dict[str, Any]


def ref_fk_attention(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    n, heads, beta, hops = x.shape[1], hp["heads"], float(hp["beta"]), int(hp["hops"])
    q = up(heads_view(linear(x, params, "wq", bias=False), heads))
    k = up(heads_view(linear(x, params, "wk", bias=False), heads))
    v = up(heads_view(linear(x, params, "wv", bias=False), heads))
    pos = torch.arange(n, device=x.device)
    a = attention_probs(q, k, causal_mask(n, n, pos, pos) if hp["causal"] else None, None)
    p_k, r = v, v
    for _ in range(hops):
        p_k = beta * attend(a, p_k)
        r = r + p_k
    if hp["normalize"]:
        r = r * ((1 - beta) / (1 - beta ** (hops + 1)))
    return (linear(down(merge(r), x), params, "wo"),)


def _gate(logits: Tensor, mode: str, noisy: bool, ctx: RefContext) -> Tensor:
    lu = up(logits)
    if mode == "sigmoid":
        if noisy:
            lu = lu + logistic_noise(tuple(lu.shape), lu.device, ctx).to(lu.dtype)
        return down(torch.sigmoid(lu), logits)
    z = F.logsigmoid(lu)
    if noisy:
        z = z + gumbel_noise(tuple(lu.shape), lu.device, ctx).to(lu.dtype)
    return down(torch.softmax(z, dim=-1), logits)


def _entropy(z: Tensor) -> Tensor:
    """H(z) = − mean over (b, n) of Σ_f |z_f| · log(|z_f| + 1e-8)."""
    a = up(z).abs()
    return -(a * torch.log(a + 1e-8)).sum(-1).mean()


def ref_spd_router(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    noisy = ctx.training and bool(hp["gate_noise"])
    relu = torch.relu
    l_s = linear(relu(linear(x, params, "gate_s1")), params, "gate_s2")
    l_p = linear(relu(linear(x, params, "gate_p1")), params, "gate_p2")
    g_s = _gate(l_s, hp["gate"], noisy, ctx)
    g_p = _gate(l_p, hp["gate"], noisy, ctx)
    x_struct = linear(x, params, "basis", bias=False) * g_s
    x_pseudo = linear(x, params, "pseudo_proj") * g_p
    s = linear(linear(x_struct, params, "coeffs"), params, "proc_s1")
    s = layer_norm(s, params["proc_s_norm.weight"], params["proc_s_norm.bias"])
    y_s = linear(relu(s), params, "proc_s2")
    p = linear(relu(linear(x_pseudo, params, "proc_p1")), params, "proc_p2")
    y_p = layer_norm(p, params["proc_p_norm.weight"], params["proc_p_norm.bias"])
    y = linear(torch.cat((y_s, y_p), dim=-1), params, "reconstruct")
    pred = linear(relu(linear(x_struct, params, "pred1")), params, "pred2")
    mse = (up(pred) - up(x)).pow(2).mean()
    loss = float(hp["sep_weight"]) * (mse - 0.1 * _entropy(x_pseudo))
    return y, x_struct, x_pseudo, down(loss, x)


def _bump(center: Tensor, slots: Tensor) -> Tensor:
    """softmax_s(−(s − center)²/2) over the stack slots: center [B] -> [B, S]."""
    return torch.softmax(-0.5 * (slots[None, :] - center[:, None]) ** 2, dim=-1)


def _control_logits(h: Tensor, params: Params) -> Tensor:
    """The push / pop / no-op logits [B, N, 3] in the compute dtype."""
    return up(linear(torch.relu(linear(h, params, "ctrl1")), params, "ctrl2"))


def _stack_controls(h: Tensor, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    """push, pop [B, N] and the encoded elements e [B, N, elem], in the compute dtype."""
    logp = torch.log_softmax(_control_logits(h, params), dim=-1)
    if ctx.training and hp["op_noise"]:
        logp = logp + gumbel_noise(tuple(logp.shape), logp.device, ctx).to(logp.dtype)
    pi = torch.softmax(logp, dim=-1)
    return pi[..., 0], pi[..., 1], up(linear(h, params, "enc"))


def _stack_scan(
    push: Tensor, pop: Tensor, e: Tensor, size: int, read: str, mem: Tensor, ptr: Tensor
) -> tuple[Tensor, ...]:
    """The memory and pointer scan from (mem [B,S,elem], ptr [B]): reads [B,N,elem], pointers
    p_t and p_{t−1} [B,N], and the final (mem, ptr)."""
    slots = torch.arange(size, device=e.device, dtype=e.dtype)
    reads, ptrs, prev_ptrs = [], [], []
    for t in range(e.shape[1]):
        prev_ptrs.append(ptr)
        wp = push[:, t, None] * _bump(ptr, slots)  # [B, S]
        mem = mem * (1 - wp)[..., None] + wp[..., None] * e[:, t, None, :]
        ptr = torch.clamp(ptr + push[:, t] - pop[:, t], 0, size - 1)
        if read == "top":
            reads.append(torch.einsum("bs,bse->be", _bump(ptr - 1, slots), mem))
        else:
            reads.append(mem.mean(dim=1))
        ptrs.append(ptr)
    stacked = (torch.stack(r, dim=1) for r in (reads, ptrs, prev_ptrs))
    return (*stacked, mem, ptr)


def _penalty(hp: Hp, push: Tensor, pop: Tensor, p_prev: Tensor) -> Tensor:
    """penalty · (mean pop·relu(1 − p_{t−1}) + mean push·relu(p_{t−1} − (S − 2)))."""
    size = int(hp["stack"])
    under = (pop * torch.relu(1 - p_prev)).mean()
    over = (push * torch.relu(p_prev - (size - 2))).mean()
    return float(hp["penalty"]) * (under + over)


def _stack_outputs(h, params, read, pointer, loss) -> tuple[Tensor, ...]:
    hr = torch.cat((h, down(read, h)), dim=-1)
    signals = torch.sigmoid(up(linear(torch.relu(linear(hr, params, "head1")), params, "head2")))
    return down(read, h), down(signals, h), down(pointer, h), down(loss, h)


def ref_verifier_stack(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext
) -> tuple[Tensor, ...]:
    h = inputs["h"]
    size = int(hp["stack"])
    push, pop, e = _stack_controls(h, params, hp, ctx)
    mem = e.new_zeros(h.shape[0], size, e.shape[-1])
    ptr = e.new_zeros(h.shape[0])
    read, pointer, p_prev, _, _ = _stack_scan(push, pop, e, size, hp["read"], mem, ptr)
    return _stack_outputs(h, params, read, pointer, _penalty(hp, push, pop, p_prev))


# ---- Cached decoding (SPEC §5.6; runtime/decode.py).


def _fk_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    """Keys and every hop's P_0..P_{hops−1} of the positions so far (P_hops is read by no
    later row); [B, max_len, H, d] each, compute dtype."""
    heads, cdt = hp["heads"], compute_dtype(dtype)
    shape = (batch, max_len, heads, shapes["x"][-1] // heads)
    state = {"k": torch.zeros(shape, device=device, dtype=cdt)}
    for i in range(int(hp["hops"])):
        state[f"p{i}"] = torch.zeros(shape, device=device, dtype=cdt)
    return state


def step_fk_attention(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext, state: dict[str, Tensor]
) -> tuple[Tensor, ...]:
    """Causal: P_k of a row reads P_{k−1} of rows ≤ it only, so the new rows' P_k come from the
    cached P_{k−1} of the past rows and the new rows' own, hop by hop."""
    x = inputs["x"]
    n, heads, beta, hops = x.shape[1], hp["heads"], float(hp["beta"]), int(hp["hops"])
    q, k, v = project_qkv(x, params, heads, heads)
    if fused_step(ctx, n, state):
        r = _fk_fused_step(q, k, v, beta, hops, ctx, state)
    else:
        r = _fk_step(up(q), up(k), up(v), beta, hops, ctx, state)
    if hp["normalize"]:
        r = r * ((1 - beta) / (1 - beta ** (hops + 1)))
    return (linear(down(merge(r), x), params, "wo"),)


def _fk_fused_step(q, k, v, beta: float, hops: int, ctx: RefContext, state) -> Tensor:
    """One new row on the Triton path: each hop one fused split-KV step
    (runtime/decode_attention.py `decode_step`, two launches) with the hop's P cache as values:
    it writes the new row's key and P_{hop} at the position and returns Σ_j a_j P_{hop, j}
    over the cached rows and the new one, whose β-multiple is the new row's P_{hop+1}. The
    scores are recomputed per hop inside the kernel (a few FLOPs per cached key against the
    [B, H, 1, L] products, casts and copies of the rule below, over `max_len` rows in a
    static step). Returns R = Σ_hop P_hop of the new row, [B, 1, H, d] float32."""
    from ..decode_attention import decode_step  # Triton: only on the kernel path

    q0, k0, p = q[:, 0], k[:, 0], up(v[:, 0])
    r = p
    for hop in range(hops):
        p = beta * decode_step(q0, k0, p, state["k"], state[f"p{hop}"], offset_of(ctx))
        r = r + p
    return r[:, None]


def _fk_step(q, k, v, beta: float, hops: int, ctx: RefContext, state) -> Tensor:
    """The rule for any number of new rows (compute dtype q, k, v [B, N, H, d]): R [B, N, H, d]."""
    n, device = q.shape[1], q.device
    if ctx.position is not None:  # a static step: device positions, every cached row masked
        q_pos = positions(ctx, n, device)
        rows = state["k"].shape[1]

        def put(name: str, t: Tensor) -> Tensor:
            return state[name].index_copy_(1, q_pos, t)

    else:
        off, rows = ctx.position_offset, ctx.position_offset + n
        q_pos = torch.arange(off, rows, device=device)

        def put(name: str, t: Tensor) -> Tensor:
            state[name][:, off:rows] = t
            return state[name][:, :rows]

    k_pos = torch.arange(rows, device=device)
    a = attention_probs(q, put("k", k), causal_mask(n, rows, q_pos, k_pos), None)
    p_k, r = v, v
    for hop in range(hops):
        p_k = beta * attend(a, put(f"p{hop}", p_k))
        r = r + p_k
    return r


def fill_fk_attention(tensors, params, hp: Hp, ctx: RefContext, state) -> None:
    """A prefill's keys and hop states from the forward kernel's: k, v [B, N, H, d] (P_0 = V)
    and ps [hops − 1, B, N, H, d] (P_1 .. P_{hops−1}; P_hops is read by no later row)."""
    off, n = ctx.position_offset, tensors["k"].shape[1]
    state["k"][:, off : off + n] = tensors["k"]
    state["p0"][:, off : off + n] = tensors["v"]
    for hop in range(1, int(hp["hops"])):
        state[f"p{hop}"][:, off : off + n] = tensors["ps"][hop - 1]


def _stack_state(hp: Hp, shapes, batch, max_len, device, dtype) -> dict[str, Tensor]:
    """The memory M [B, S, elem] and the pointer p [B] after the positions so far."""
    cdt = compute_dtype(dtype)
    elem = int(hp["elem"])
    return {
        "mem": torch.zeros(batch, int(hp["stack"]), elem, device=device, dtype=cdt),
        "ptr": torch.zeros(batch, device=device, dtype=cdt),
    }


def step_verifier_stack(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext, state: dict[str, Tensor]
) -> tuple[Tensor, ...]:
    """The scan continued from the cached (M, p); the loss covers the new positions only. On
    the Triton path without noise draws the scan kernel takes the control logits (softmax and
    the penalty's per-row terms in the kernel, `stack_scan_logits`)."""
    h = inputs["h"]
    if _scan_kernel(ctx, state) and not (ctx.training and hp["op_noise"]):
        from ..decode_stack import stack_scan_logits  # Triton: only on the kernel path

        e = up(linear(h, params, "enc"))
        read, pointer, _, pen = stack_scan_logits(
            _control_logits(h, params), e, state["mem"], state["ptr"], hp["read"] == "top"
        )
        return _stack_outputs(h, params, read, pointer, float(hp["penalty"]) * pen.mean())
    push, pop, e = _stack_controls(h, params, hp, ctx)
    read, pointer, p_prev = _scan_state(push, pop, e, hp, ctx, state)
    return _stack_outputs(h, params, read, pointer, _penalty(hp, push, pop, p_prev))


def _scan_kernel(ctx: RefContext, state) -> bool:
    """Whether a cached call's scan runs runtime/decode_stack.py (the Triton path, float32)."""
    return ctx.decode_kernels and state["mem"].dtype == torch.float32


def _scan_state(push, pop, e, hp: Hp, ctx: RefContext, state) -> tuple[Tensor, ...]:
    """The scan over the new rows continued from the cached (M, p), which it updates: reads,
    pointers and previous pointers [B, N, ...]. On the Triton path one launch, for a single row
    or a whole prompt (runtime/decode_stack.py)."""
    if _scan_kernel(ctx, state) and e.dtype == torch.float32:
        from ..decode_stack import stack_scan  # Triton: only on the kernel path

        return stack_scan(push, pop, e, state["mem"], state["ptr"], hp["read"] == "top")
    mem, ptr = state["mem"].to(e.dtype), state["ptr"].to(e.dtype)
    read, pointer, p_prev, mem, ptr = _stack_scan(
        push, pop, e, int(hp["stack"]), hp["read"], mem, ptr
    )
    state["mem"].copy_(mem)
    state["ptr"].copy_(ptr)
    return read, pointer, p_prev


def fill_verifier_stack(tensors, params, hp: Hp, ctx: RefContext, state) -> None:
    """A prefill's (M, p): the prompt's control logits [B, N, 3] (no noise: prefills run in
    eval mode) and encoded elements [B, N, elem] scanned from the empty stack."""
    logits, e = up(tensors["logits"]), up(tensors["e"])
    if _scan_kernel(ctx, state):
        from ..decode_stack import stack_scan_logits  # Triton: only on the kernel path

        stack_scan_logits(logits, e, state["mem"], state["ptr"], hp["read"] == "top")
        return
    pi = torch.softmax(torch.log_softmax(logits, dim=-1), dim=-1)
    _scan_state(pi[..., 0], pi[..., 1], e, hp, ctx, state)


DECODE: dict[str, Decoder] = {
    "fk_attention": Decoder(_fk_state, step_fk_attention, fill_fk_attention),
    "verifier_stack": Decoder(_stack_state, step_verifier_stack, fill_verifier_stack),
}


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "fk_attention": ref_fk_attention,
    "spd_router": ref_spd_router,
    "verifier_stack": ref_verifier_stack,
}
