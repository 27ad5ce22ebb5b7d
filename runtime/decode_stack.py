"""`verifier_stack`'s memory scan over the new rows of a cached call, in one launch.

Consumes the new rows' controls push, pop [B, T] and encoded elements e [B, T, elem] (float32,
as the reference's `_stack_controls` makes them), the op's decoding state mem [B, S, elem] and
ptr [B] (float32, `_stack_state` of runtime/reference/spark_k.py, updated in place) and the read
mode. Produces read [B, T, elem] and the pointers after and before each row, p_t and p_{t−1}
[B, T]: the reference's `_stack_scan`, whose per-row steps are

    wp_s = push · softmax_s(−(s − p)²/2)          mem_s ← mem_s (1 − wp_s) + wp_s e
    p ← clamp(p + push − pop, 0, S − 1)
    read = Σ_s softmax_s(−(s − (p − 1))²/2) mem_s   ("top")   or   mean_s mem_s   ("mean")

`stack_scan_logits` takes the control logits [B, T, 3] instead of push and pop (their softmax's
first two entries, computed in the kernel) and also returns each row's under/overflow penalty
pop·relu(1 − p_{t−1}) + push·relu(p_{t−1} − (S − 2)): what a cached call on the Triton path
runs (without noise draws), two softmax launches, two strided copies and the penalty's eight
elementwise launches fewer per layer and token.

One program per sequence walks elem in chunks, each chunk of the memory held in registers
([S, BLOCK_E]) through all T rows. A single-token step (T = 1) is the rule's ~20 PyTorch ops in
one launch, which a CUDA-graph decode step (runtime/decode_graph.py) replays; a prompt (T rows)
is one launch instead of the reference's Python loop of T steps (~10 PyTorch ops a step: for
spark_k's 512-token prefill over 8 layers some 40,000 ops; that prefill took ~0.8 s on an H100,
2026-12-07). It reads no host value, so it can be captured.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .tiles import next_pow2


@triton.jit
def _bump(slots, center, valid):
    g = -0.5 * (slots - center) * (slots - center)
    g = tl.where(valid, g, float("-inf"))
    w = tl.exp(g - tl.max(g, 0))
    w = tl.where(valid, w, 0.0)
    return w / tl.sum(w, 0)


@triton.jit
def _controls(PUSH, POP, row, FROM_LOGITS: tl.constexpr):
    # (push, pop) of a row: given, or softmax of its three control logits (PUSH [rows, 3]).
    if FROM_LOGITS:
        l0 = tl.load(PUSH + row * 3).to(tl.float32)
        l1 = tl.load(PUSH + row * 3 + 1).to(tl.float32)
        l2 = tl.load(PUSH + row * 3 + 2).to(tl.float32)
        top = tl.maximum(tl.maximum(l0, l1), l2)
        e0, e1, e2 = tl.exp(l0 - top), tl.exp(l1 - top), tl.exp(l2 - top)
        total = e0 + e1 + e2
        return e0 / total, e1 / total
    return tl.load(PUSH + row), tl.load(POP + row)


@triton.jit
def stack_scan_kernel(
    PUSH, POP, E, MEM, PTR, READ, POINTER, PREV, PEN, T, S, EL,
    READ_TOP: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr,
    FROM_LOGITS: tl.constexpr,
):  # fmt: skip
    # One program per sequence. The memory is walked in [S, BLOCK_E] column chunks, each held in
    # registers through all T rows; the pointer's recurrence (push/pop only, not the memory) is
    # recomputed per chunk, and the first chunk stores the per-row pointers (FROM_LOGITS: and
    # the row's under/overflow penalty, pop·relu(1 − p_{t−1}) + push·relu(p_{t−1} − (S − 2))).
    b = tl.program_id(0).to(tl.int64)
    rs = tl.arange(0, BLOCK_S)
    re = tl.arange(0, BLOCK_E)
    ms = rs < S
    slots = rs.to(tl.float32)
    ptr0 = tl.load(PTR + b)
    ptr = ptr0
    for e0 in range(0, EL, BLOCK_E):
        me = e0 + re < EL
        m2 = ms[:, None] & me[None, :]
        m_ptrs = MEM + b * S * EL + rs[:, None] * EL + e0 + re[None, :]
        mem = tl.load(m_ptrs, mask=m2, other=0.0)
        p = ptr0
        for t in range(T):
            row = b * T + t
            push, pop = _controls(PUSH, POP, row, FROM_LOGITS)
            wp = push * _bump(slots, p, ms)
            new_p = tl.minimum(tl.maximum(p + push - pop, 0.0), (S - 1).to(tl.float32))
            ev = tl.load(E + row * EL + e0 + re, mask=me, other=0.0)
            mem = mem * (1.0 - wp)[:, None] + wp[:, None] * ev[None, :]
            if READ_TOP:
                r = tl.sum(_bump(slots, new_p - 1.0, ms)[:, None] * mem, 0)
            else:
                r = tl.sum(mem, 0) / S
            tl.store(READ + row * EL + e0 + re, r, mask=me)
            if e0 == 0:
                tl.store(POINTER + row, new_p)
                tl.store(PREV + row, p)
                if FROM_LOGITS:
                    under = pop * tl.maximum(1.0 - p, 0.0)
                    over = push * tl.maximum(p - (S - 2).to(tl.float32), 0.0)
                    tl.store(PEN + row, under + over)
            p = new_p
        tl.store(m_ptrs, mem, mask=m2)
        ptr = p
    tl.store(PTR + b, ptr)


def stack_scan(
    push: torch.Tensor,
    pop: torch.Tensor,
    e: torch.Tensor,
    mem: torch.Tensor,
    ptr: torch.Tensor,
    read_top: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(read [B, T, elem], p_t [B, T], p_{t−1} [B, T]) for the T new rows (module docs), push,
    pop [B, T] and e [B, T, elem]; `mem` and `ptr` are updated in place."""
    assert push.shape == pop.shape == e.shape[:2]
    out = _scan(push.float().contiguous(), pop.float().contiguous(), e, mem, ptr, read_top)
    return out[:3]


def stack_scan_logits(
    logits: torch.Tensor, e: torch.Tensor, mem: torch.Tensor, ptr: torch.Tensor, read_top: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`stack_scan` from the control logits [B, T, 3] (push, pop = the first two entries of
    their softmax, computed in the kernel: two launches and two strided copies fewer than
    `stack_scan` after PyTorch's softmax), also returning each row's under/overflow penalty
    pen [B, T] = pop·relu(1 − p_{t−1}) + push·relu(p_{t−1} − (S − 2)) (the op's loss is
    `penalty · mean(pen)`): (read, p_t, p_{t−1}, pen)."""
    assert logits.shape == e.shape[:2] + (3,)
    return _scan(logits.contiguous(), None, e, mem, ptr, read_top)


def _scan(controls, pop, e, mem, ptr, read_top: bool) -> tuple[torch.Tensor, ...]:
    """One launch of `stack_scan_kernel`: `pop` None means `controls` holds the logits."""
    b, size, elem = mem.shape
    t = e.shape[1]
    assert e.shape == (b, t, elem) and ptr.shape == (b,)
    assert mem.dtype == ptr.dtype == torch.float32 and mem.is_contiguous()
    read = torch.empty((b, t, elem), device=e.device, dtype=torch.float32)
    pointer, prev, pen = (
        torch.empty((b, t), device=e.device, dtype=torch.float32) for _ in range(3)
    )
    if b == 0 or t == 0:
        return read, pointer, prev, pen
    block_s = max(16, next_pow2(size))
    block_e = max(16, min(next_pow2(elem), 4096 // block_s))  # a [S, BLOCK_E] tile ≤ 4096
    stack_scan_kernel[(b,)](
        controls,
        controls if pop is None else pop,
        e.float().contiguous(),
        mem,
        ptr,
        read,
        pointer,
        prev,
        pen,
        t,
        size,
        elem,
        READ_TOP=read_top,
        BLOCK_S=block_s,
        BLOCK_E=block_e,
        FROM_LOGITS=pop is None,
        num_warps=4,
    )
    return read, pointer, prev, pen
