"""Reference rules of SPEC §5 (SPARK procedural): `opcode_tape`, `routed_mlp`,
`demopack_linear`, `lora_linear`.

- opcode_tape: (ops int [B,T], args [B,T,D], has_arg bool [B,T]) -> (top, depth, status, steps,
  checks, trace). A loop over tape positions, vectorised over the batch: the stack is a
  [B, capacity, D] tensor updated out of place with masks, so the outputs are differentiable
  (linear) in `args` and `branch`. The string machine twin lives in `sparkc.runtime.tape`.
- routed_mlp: x (+ tokens for hash routing) -> y, computed densely per group with the routing
  coefficients as a mask (the kernel does the sparse grouped GEMM).
- demopack_linear: x -> y in the lookup form P = x codebookᵀ.
- lora_linear: (x, meta) -> base(x) + Bm_b (A_b x) with per-sample A_b, Bm_b.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..checks import check_index_table
from .common import ACTIVATIONS, Params, RefContext, Tensor, down, linear, up

Inputs = dict[str, Tensor]
Hp = dict[str, Any]

OPCODES: tuple[str, ...] = (
    "PLAN",
    "RETR",
    "ASSUME",
    "EXEC",
    "LEMMA",
    "CHECK",
    "BRANCH",
    "MERGE",
    "CITE",
)
PLAN, RETR, ASSUME, EXEC, LEMMA, CHECK, BRANCH, MERGE, CITE = range(9)
END = -1

STATUS_OK, STATUS_UNDERFLOW, STATUS_BUDGET, STATUS_CAPACITY = 0, 1, 2, 3


def check_opcodes(ops: Tensor, what: str = "ops") -> None:
    """Every entry of the tape must lie in −1..8 (checked over the whole tensor)."""
    bad = (ops < END) | (ops > CITE)
    if ops.numel() and bool(bad.any()):
        pos = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(
            f"opcode_tape: input '{what}' holds opcode {int(ops[pos])} at index "
            f"{list(pos)}; opcodes are -1 (end) or 0..8 ({' '.join(OPCODES)})"
        )


def ref_opcode_tape(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    ops, args, has = inputs["ops"].long(), inputs["args"], inputs["has_arg"].bool()
    check_opcodes(ops)
    b, t_len, dm = args.shape
    cap, budget = int(hp["capacity"]), int(hp["budget"])
    a_all = torch.where(has[..., None], up(args), 0.0)
    branch = params["branch"].to(a_all.dtype)
    cdt, dev = a_all.dtype, args.device
    slots = torch.arange(cap, device=dev)
    stack = a_all.new_zeros(b, cap, dm)
    depth = torch.zeros(b, dtype=torch.long, device=dev)
    status = torch.zeros_like(depth)
    steps = torch.zeros_like(depth)
    running = torch.ones(b, dtype=torch.bool, device=dev)
    checks, trace = [], []
    for i in range(t_len):
        op, has_i, a = ops[:, i], has[:, i], a_all[:, i]
        running = running & (op != END)
        if i >= budget:
            status = torch.where(running, STATUS_BUDGET, status)
            running = torch.zeros_like(running)
        is_push = running & (
            ((op == PLAN) & has_i) | (op == RETR) | (op == ASSUME) | (op == LEMMA) | (op == BRANCH)
        )
        is_exec, is_check = running & (op == EXEC), running & (op == CHECK)
        is_merge = running & (op == MERGE)
        overflow = is_push & (depth >= cap)
        underflow = (is_exec & (depth == 0)) | (is_check & (depth == 0) & ~has_i)
        status = torch.where(
            overflow, STATUS_CAPACITY, torch.where(underflow, STATUS_UNDERFLOW, status)
        )
        ok = running & ~overflow & ~underflow

        top_val = stack.gather(1, (depth - 1).clamp(min=0)[:, None, None].expand(b, 1, dm))[:, 0]
        check_val = torch.where((depth > 0)[:, None], top_val, a)
        checks.append(torch.where((is_check & ok)[:, None], check_val, 0.0))

        live = (slots[None, :] < depth[:, None]).to(cdt)
        mean = (stack * live[..., None]).sum(1) / depth.clamp(min=1).to(cdt)[:, None]
        value = a + branch * (op == BRANCH).to(cdt)[:, None]
        write = (is_push & ok)[:, None] & (slots[None, :] == depth[:, None])
        stack = torch.where(write[..., None], value[:, None, :], stack)
        stack = torch.where(
            (is_merge[:, None] & (slots[None, :] == 0))[..., None], mean[:, None, :], stack
        )

        pops = (is_exec & ok) | (is_check & ok & (depth > 0))
        depth = depth + (is_push & ok).long() - pops.long()
        depth = torch.where(is_merge, 1, depth)
        trace.append(torch.where(ok, op, END))
        steps = steps + ok.long()
        running = ok

    top = stack.gather(1, (depth - 1).clamp(min=0)[:, None, None].expand(b, 1, dm))[:, 0]
    top = torch.where((depth > 0)[:, None], top, 0.0)
    checks_t = torch.stack(checks, 1) if checks else a_all.new_zeros(b, 0, dm)
    trace_t = torch.stack(trace, 1) if trace else ops.new_zeros(b, 0)
    i32 = torch.int32
    return (
        down(top, args),
        depth.to(i32),
        status.to(i32),
        steps.to(i32),
        down(checks_t, args),
        trace_t.to(i32),
    )


_HASH_MUL = 2654435761


def token_hash(tokens: Tensor) -> Tensor:
    """h(v) = ((v · 2654435761) mod 2³²) >> 16 on int64 without overflow (ids ≥ 0).

    v·c mod 2³² = (v·c_lo + ((v·c_hi) mod 2¹⁶)·2¹⁶) mod 2³² with c = c_hi·2¹⁶ + c_lo keeps every
    intermediate below 2⁴⁹."""
    v = tokens.long() & 0xFFFFFFFF
    c_hi, c_lo = _HASH_MUL >> 16, _HASH_MUL & 0xFFFF
    prod = (v * c_lo + (((v * c_hi) & 0xFFFF) << 16)) & 0xFFFFFFFF
    return prod >> 16


def routing_coefficients(
    x: Tensor, inputs: Inputs, params: Params, hp: Hp, check: bool = True
) -> Tensor:
    """c [B,N,groups] in the compute dtype: w_tg on sel(t), 0 elsewhere. `check=False` (a
    static decode step) skips the host-side check of the token ids."""
    groups, active = int(hp["groups"]), int(hp["active"])
    if hp["route"] == "learned":
        logits = up(linear(x, params, "gate"))
        w = torch.softmax(logits, dim=-1)
        order = torch.sort(logits.detach(), dim=-1, descending=True, stable=True).indices
        sel = torch.zeros_like(w, dtype=torch.bool).scatter(-1, order[..., :active], True)
        return w * sel.to(w.dtype)
    tokens = inputs.get("tokens")
    if tokens is None:
        raise ValueError("routed_mlp: route=hash needs the input 'tokens'")
    if check and tokens.numel() and int(tokens.min()) < 0:
        raise ValueError(
            f"routed_mlp: input 'tokens' holds the negative id {int(tokens.min())}; "
            "hash routing needs ids >= 0"
        )
    idx = (token_hash(tokens)[..., None] + torch.arange(active, device=x.device)) % groups
    cdt = up(x).dtype
    sel = torch.zeros(*tokens.shape, groups, dtype=cdt, device=x.device)
    return sel.scatter(-1, idx, 1.0 / active)


def ref_routed_mlp(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x = inputs["x"]
    coef = routing_coefficients(x, inputs, params, hp, check=ctx.position is None)
    group_size = int(hp["hidden"]) // int(hp["groups"])
    h = ACTIVATIONS[hp["act"]](linear(x, params, "fc1"))
    h = h * down(coef.repeat_interleave(group_size, dim=-1), x)
    return (linear(h, params, "fc2"),)


def ref_demopack_linear(
    inputs: Inputs, params: Params, hp: Hp, ctx: RefContext
) -> tuple[Tensor, ...]:
    x = inputs["x"]
    codebook, index = params["codebook"], params["index"].long()
    if ctx.position is None:  # a static decode step: checked by its eager calls (no sync)
        check_index_table(index, codebook.shape[0])  # the Triton path's check (same error)
    p = torch.nn.functional.linear(x, codebook)  # [..., codewords]
    picked = p[..., index]  # [..., out, per_row]
    y = picked.sum(-1) * (params["scale"] / int(hp["per_row"])) + params["bias"]
    return (y,)


def ref_lora_linear(inputs: Inputs, params: Params, hp: Hp, ctx: RefContext) -> tuple[Tensor, ...]:
    x, meta = inputs["x"], inputs["meta"]
    b, _, d_in = x.shape
    out, rank = int(hp["out"]), int(hp["rank"])
    gelu = ACTIVATIONS["gelu"]
    h = gelu(linear(gelu(linear(meta, params, "gen1")), params, "gen2"))
    a = linear(h, params, "gen_a").reshape(b, rank, d_in)
    bm = linear(h, params, "gen_b").reshape(b, out, rank)
    delta = torch.einsum("bnr,bor->bno", torch.einsum("bni,bri->bnr", x, a), bm)
    return (linear(x, params, "base") + delta,)


RULES: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "opcode_tape": ref_opcode_tape,
    "routed_mlp": ref_routed_mlp,
    "demopack_linear": ref_demopack_linear,
    "lora_linear": ref_lora_linear,
}
