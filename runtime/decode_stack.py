"""One cached decoding step of `verifier_stack`'s memory scan for one new row per sequence.

Consumes the new row's controls push, pop [B] and encoded element e [B, elem] (float32, as the
reference's `_stack_controls` makes them), the op's decoding state mem [B, S, elem] and ptr [B]
(float32, `_stack_state` of runtime/reference/spark_k.py, updated in place) and the read mode.
Produces read [B, elem], the pointer after the step p_t [B] and before it p_{t−1} [B], the step
of the reference's `_stack_scan`:

    wp_s = push · softmax_s(−(s − p)²/2)          mem_s ← mem_s (1 − wp_s) + wp_s e
    p ← clamp(p + push − pop, 0, S − 1)
    read = Σ_s softmax_s(−(s − (p − 1))²/2) mem_s   ("top")   or   mean_s mem_s   ("mean")

One program per sequence walks elem in chunks, so its registers hold [S, BLOCK_E] tiles; the
rule's ~20 PyTorch ops of the scan become one launch, which a CUDA-graph decode step
(runtime/decode_graph.py) replays. The step reads no host value, so it can be captured.
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
def stack_step_kernel(
    PUSH, POP, E, MEM, PTR, READ, POINTER, PREV, S, EL,
    READ_TOP: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    rs = tl.arange(0, BLOCK_S)
    re = tl.arange(0, BLOCK_E)
    ms = rs < S
    slots = rs.to(tl.float32)
    push = tl.load(PUSH + b)
    pop = tl.load(POP + b)
    ptr = tl.load(PTR + b)
    wp = push * _bump(slots, ptr, ms)
    new_ptr = tl.minimum(tl.maximum(ptr + push - pop, 0.0), (S - 1).to(tl.float32))
    top = _bump(slots, new_ptr - 1.0, ms)
    for e0 in range(0, EL, BLOCK_E):
        me = e0 + re < EL
        m2 = ms[:, None] & me[None, :]
        m_ptrs = MEM + b * S * EL + rs[:, None] * EL + e0 + re[None, :]
        mem = tl.load(m_ptrs, mask=m2, other=0.0)
        ev = tl.load(E + b * EL + e0 + re, mask=me, other=0.0)
        mem = mem * (1.0 - wp)[:, None] + wp[:, None] * ev[None, :]
        tl.store(m_ptrs, mem, mask=m2)
        if READ_TOP:
            r = tl.sum(top[:, None] * mem, 0)
        else:
            r = tl.sum(mem, 0) / S
        tl.store(READ + b * EL + e0 + re, r, mask=me)
    tl.store(PTR + b, new_ptr)
    tl.store(POINTER + b, new_ptr)
    tl.store(PREV + b, ptr)


def stack_step(
    push: torch.Tensor,
    pop: torch.Tensor,
    e: torch.Tensor,
    mem: torch.Tensor,
    ptr: torch.Tensor,
    read_top: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(read [B, elem], p_t [B], p_{t−1} [B]) for the new row (module docs); `mem` and `ptr`
    are updated in place."""
    b, size, elem = mem.shape
    assert e.shape == (b, elem) and push.shape == pop.shape == ptr.shape == (b,)
    assert mem.dtype == ptr.dtype == torch.float32 and mem.is_contiguous()
    read = torch.empty((b, elem), device=e.device, dtype=torch.float32)
    pointer = torch.empty((b,), device=e.device, dtype=torch.float32)
    prev = torch.empty((b,), device=e.device, dtype=torch.float32)
    if b == 0:
        return read, pointer, prev
    block_s = max(16, next_pow2(size))
    block_e = max(16, min(next_pow2(elem), 4096 // block_s))  # a [S, BLOCK_E] tile ≤ 4096
    stack_step_kernel[(b,)](
        push.float().contiguous(),
        pop.float().contiguous(),
        e.float().contiguous(),
        mem,
        ptr,
        read,
        pointer,
        prev,
        size,
        elem,
        READ_TOP=read_top,
        BLOCK_S=block_s,
        BLOCK_E=block_e,
        num_warps=4,
    )
    return read, pointer, prev
