"""Split-KV decode attention (flash-decoding) for one new query row per sequence.

Consumes q [B, H, d] (RoPE already applied at the cached offset), the cache's keys and values
[B, max_len, KV, d] (float32, `runtime/reference/attention.py`'s `kv_state`) and the number of
valid positions `length`; produces o [B, H, d] (float32) = softmax(q·kᵀ/√d) v over positions
< length (causal: the new row is the last position, so every cached position is visible).

One program per (sequence, key/value head, split of `CHUNK` positions): the G query heads that
read that key/value head are packed into the program's rows, so each key and value is loaded
once for its group (grouped-query attention), and a long context is spread over many programs
(splits), each leaving a partial (max, sum, unnormalised output); a second small kernel (one
program per sequence and query head) merges the splits with the usual log-sum-exp rescaling
(PyTorch does it past `MERGE_MAX` splits), so a step is two launches, what a CUDA-graph
decode step (runtime/decode_graph.py) replays.

`length` is a host int (the split count is cdiv(length, CHUNK), so no partial is empty) or a
device int64 tensor [1] (a static decode step, captured in a CUDA graph: the kernel loads the
length, the grid covers cdiv(max_len, CHUNK) splits and the splits past the length are empty,
leaving max −inf, sum 0 and output 0, which the merge weighs by exp(−inf) = 0). Split 0 always
holds position 0, so the merged maximum is finite.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

CHUNK = 256  # positions per split
BLOCK_T = 64  # positions per step inside a split
MERGE_MAX = 256  # splits merged by the merge kernel (a context of 64k positions); more: PyTorch


@triton.jit
def split_kv_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    m_ptr,
    l_ptr,
    acc_ptr,
    length,
    len_ptr,
    kv_heads,
    splits,
    stride_kb,
    stride_kt,
    stride_kh,
    scale,
    G: tl.constexpr,
    D: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    CHUNK: tl.constexpr,
    LEN_FROM_PTR: tl.constexpr,
):
    if LEN_FROM_PTR:
        length = tl.load(len_ptr).to(tl.int32)  # as a host length arrives
    pid = tl.program_id(0)
    split = tl.program_id(1)
    b = pid // kv_heads
    kh = pid % kv_heads
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    gm = g < G
    dm = d < D
    heads = kv_heads * G
    row = b * heads + kh * G + g  # query head rows of this group
    q = tl.load(q_ptr + row[:, None] * D + d[None, :], mask=gm[:, None] & dm[None, :], other=0.0)
    q = q.to(tl.float32) * scale
    start = split * CHUNK
    end = tl.minimum(start + CHUNK, length)
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    lsum = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    base = b * stride_kb + kh * stride_kh
    for t0 in range(start, end, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        tm = t < end
        off = base + t[:, None] * stride_kt + d[None, :]
        k = tl.load(k_ptr + off, mask=tm[:, None] & dm[None, :], other=0.0).to(tl.float32)
        v = tl.load(v_ptr + off, mask=tm[:, None] & dm[None, :], other=0.0).to(tl.float32)
        s = tl.sum(q[:, None, :] * k[None, :, :], axis=2)  # [BLOCK_G, BLOCK_T]
        s = tl.where(tm[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m - m_new)
        lsum = lsum * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        m = m_new
    out = row * splits + split
    tl.store(m_ptr + out, m, mask=gm)
    tl.store(l_ptr + out, lsum, mask=gm)
    tl.store(acc_ptr + out[:, None] * D + d[None, :], acc, mask=gm[:, None] & dm[None, :])


@triton.jit
def merge_kernel(
    m_ptr,
    l_ptr,
    acc_ptr,
    o_ptr,
    splits,
    D: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0)  # sequence * heads + head
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    sm = s < splits
    dm = d < D
    part = row * splits + s
    m = tl.load(m_ptr + part, mask=sm, other=float("-inf"))
    lsum = tl.load(l_ptr + part, mask=sm, other=0.0)
    acc = tl.load(
        acc_ptr + part[:, None] * D + d[None, :], mask=sm[:, None] & dm[None, :], other=0.0
    )
    w = tl.exp(m - tl.max(m, axis=0))  # empty splits (max −inf) weigh 0
    o = tl.sum(acc * w[:, None], axis=0) / tl.sum(lsum * w, axis=0)
    tl.store(o_ptr + row * D + d, o, mask=dm)


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int | torch.Tensor
) -> torch.Tensor:
    """o [B, H, d] float32 from q [B, H, d] and the caches k, v [B, max_len, KV, d] (last dim
    contiguous), over positions 0 .. length − 1 (`length`: an int, or a device int64 tensor [1]
    read by the kernel: no host value, so the call can be captured in a CUDA graph)."""
    b, heads, d = q.shape
    kv = k.shape[2]
    g = heads // kv
    q = q.contiguous()
    on_device = isinstance(length, torch.Tensor)
    splits = -(-(k.shape[1] if on_device else length) // CHUNK)
    m = torch.empty(b, heads, splits, device=q.device, dtype=torch.float32)
    lsum = torch.empty_like(m)
    acc = torch.empty(b, heads, splits, d, device=q.device, dtype=torch.float32)
    split_kv_kernel[(b * kv, splits)](
        q,
        k,
        v,
        m,
        lsum,
        acc,
        0 if on_device else length,
        length if on_device else m,
        kv,
        splits,
        k.stride(0),
        k.stride(1),
        k.stride(2),
        1.0 / math.sqrt(d),
        G=g,
        D=d,
        BLOCK_G=max(triton.next_power_of_2(g), 1),
        BLOCK_D=triton.next_power_of_2(d),
        BLOCK_T=BLOCK_T,
        CHUNK=CHUNK,
        LEN_FROM_PTR=on_device,
    )
    if splits > MERGE_MAX:
        w = torch.exp(m - m.max(dim=-1, keepdim=True).values)
        return (acc * w[..., None]).sum(-2) / (lsum * w).sum(-1)[..., None]
    o = torch.empty(b, heads, d, device=q.device, dtype=torch.float32)
    merge_kernel[(b * heads,)](
        m,
        lsum,
        acc,
        o,
        splits,
        D=d,
        BLOCK_S=triton.next_power_of_2(splits),
        BLOCK_D=triton.next_power_of_2(d),
    )
    return o
