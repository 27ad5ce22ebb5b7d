"""Split-KV decode attention (flash-decoding) for one new query row per sequence.

Consumes q [B, H, d], the cache's keys and values [B, max_len, KV, d] (float32,
`runtime/reference/attention.py`'s `kv_state`) and a position; produces o [B, H, d] (float32) =
softmax(q·kᵀ/√d) v over the cached positions (causal: the new row is the last position, so
every cached position is visible). Two entry points:

- `decode_attention(q, k, v, length)`: q already rotated, the new row already in the cache,
  attends over positions < length;
- `decode_step(q, k_new, v_new, k, v, position, rope, gate)`: the whole attention part of a
  decoding step in the same launches: RoPE of q and of the new key at `position` (cos/sin read
  from `rope_table`, computed once per cache shape with the reference's float64 angles), the
  new key and value written into the cache at `position` by the program whose split holds it,
  which also reads them from registers (the other splits never touch that row, so no program
  waits on another's store); `gate` lets a sequence skip its query (sqdk_attention's unrouted
  tokens: the row is cached, no key is read, the output is 0).

One program per (sequence, key/value head, split of `CHUNK` positions): the G query heads that
read that key/value head are packed into the program's rows, so each key and value is loaded
once for its group (grouped-query attention), and a long context is spread over many programs
(splits), each leaving a partial (max, sum, unnormalised output); a second small kernel (one
program per sequence and query head) merges the splits with the usual log-sum-exp rescaling
(PyTorch does it past `MERGE_MAX` splits), so a step is two launches, what a CUDA-graph
decode step (runtime/decode_graph.py) replays.

The position is a host int (the split count covers it, so no partial is empty) or a device
int64 tensor [1] (a static decode step, captured in a CUDA graph: the kernel loads it, the grid
covers cdiv(max_len, CHUNK) splits and the splits past it are empty, leaving max −inf, sum 0
and output 0, which the merge weighs by 0). A row that read nothing (a skipped query) merges
to 0. The position indexes the tables and the cache only below max_len (masked past it).
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
    kn_ptr,
    vn_ptr,
    cos_ptr,
    sin_ptr,
    gate_ptr,
    kv_heads,
    splits,
    max_len,
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
    APPEND: tl.constexpr,
    ROPE: tl.constexpr,
    GATED: tl.constexpr,
):
    # `length`: the cached positions read; with APPEND also the new row's position (its key
    # and value come from kn/vn, are written to the cache here and read from registers).
    if LEN_FROM_PTR:
        length = tl.load(len_ptr).to(tl.int32)  # as a host length arrives
    pid = tl.program_id(0).to(tl.int64)  # cache offsets b · stride_kb pass 2³¹ at long contexts
    split = tl.program_id(1)
    b = pid // kv_heads
    kh = pid % kv_heads
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    gm = g < G
    dm = d < D
    heads = kv_heads * G
    row = b * heads + kh * G + g  # query head rows of this group
    qmask = gm[:, None] & dm[None, :]
    q = tl.load(q_ptr + row[:, None] * D + d[None, :], mask=qmask, other=0.0).to(tl.float32)
    start = split * CHUNK
    end = tl.minimum(start + CHUNK, length)
    if GATED:  # a sequence whose gate is 0 does not query (the caller zeroes its output)
        end = tl.where(tl.load(gate_ptr + b) != 0, end, start)
    if APPEND:
        # The new row: RoPE at its position as the reference applies it (rotate-half: element
        # i's partner is i ± D/2, taken with sign − in the first half); the position indexes
        # the tables and the cache only below max_len. (Masks are built as blocks: the
        # interpreter mistypes a scalar bool broadcast into a block mask.)
        here = d * 0 + length
        owner = (start <= here) & (here < start + CHUNK) & (here < max_len)  # [BLOCK_D]
        nrow = b * kv_heads + kh
        kn = tl.load(kn_ptr + nrow * D + d, mask=dm, other=0.0).to(tl.float32)
        vn = tl.load(vn_ptr + nrow * D + d, mask=dm, other=0.0).to(tl.float32)
        if ROPE:
            half: tl.constexpr = D // 2
            low = d < half
            mate = tl.where(low, d + half, d - half)
            sign = tl.where(low, -1.0, 1.0)
            at = tl.minimum(here, max_len - 1) * half + d % half
            cs = tl.load(cos_ptr + at, mask=dm, other=0.0)
            sn = tl.load(sin_ptr + at, mask=dm, other=0.0)
            qm = tl.load(q_ptr + row[:, None] * D + mate[None, :], mask=qmask, other=0.0)
            q = q * cs[None, :] + sign[None, :] * qm.to(tl.float32) * sn[None, :]
            km = tl.load(kn_ptr + nrow * D + mate, mask=dm, other=0.0).to(tl.float32)
            kn = kn * cs + sign * km * sn
        slot = b * stride_kb + length * stride_kt + kh * stride_kh + d
        tl.store(k_ptr + slot, kn, mask=dm & owner)
        tl.store(v_ptr + slot, vn, mask=dm & owner)
        at_g = g * 0 + length
        take = (start <= at_g) & (at_g < start + CHUNK) & (at_g < max_len)  # [BLOCK_G]
        if GATED:
            take = take & (tl.load(gate_ptr + b + g * 0) != 0)
    q = q * scale
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
    if APPEND:  # the new row, last in its split, from registers (weight 0 elsewhere)
        s1 = tl.where(take, tl.sum(q * kn[None, :], axis=1), float("-inf"))  # [BLOCK_G]
        m_new = tl.maximum(m, s1)
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # an empty split stays empty
        p1 = tl.exp(s1 - m_ref)
        alpha = tl.exp(m - m_ref)
        lsum = lsum * alpha + p1
        acc = acc * alpha[:, None] + p1[:, None] * vn[None, :]
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
    top = tl.max(m, axis=0)
    w = tl.exp(m - tl.where(top == float("-inf"), 0.0, top))  # empty splits (max −inf) weigh 0
    den = tl.sum(lsum * w, axis=0)
    o = tl.where(den > 0, tl.sum(acc * w[:, None], axis=0) / den, 0.0)  # 0: nothing read
    tl.store(o_ptr + row * D + d, o, mask=dm)


def _launch(q, k, v, length, splits, new=None, rope=None, gate=None) -> torch.Tensor:
    """Both kernels over `splits` splits; `new` = (k_new, v_new) appends the row at `length`."""
    b, heads, d = q.shape
    kv = k.shape[2]
    on_device = isinstance(length, torch.Tensor)
    m = torch.empty(b, heads, splits, device=q.device, dtype=torch.float32)
    lsum = torch.empty_like(m)
    acc = torch.empty(b, heads, splits, d, device=q.device, dtype=torch.float32)
    kn, vn = new if new is not None else (m, m)
    cos, sin = rope if rope is not None else (m, m)
    split_kv_kernel[(b * kv, splits)](
        q,
        k,
        v,
        m,
        lsum,
        acc,
        0 if on_device else length,
        length if on_device else m,
        kn,
        vn,
        cos,
        sin,
        gate if gate is not None else m,
        kv,
        splits,
        k.shape[1],
        k.stride(0),
        k.stride(1),
        k.stride(2),
        1.0 / math.sqrt(d),
        G=heads // kv,
        D=d,
        BLOCK_G=max(triton.next_power_of_2(heads // kv), 1),
        BLOCK_D=triton.next_power_of_2(d),
        BLOCK_T=BLOCK_T,
        CHUNK=CHUNK,
        LEN_FROM_PTR=on_device,
        APPEND=new is not None,
        ROPE=rope is not None,
        GATED=gate is not None,
    )
    if splits > MERGE_MAX:
        top = m.max(dim=-1, keepdim=True).values
        w = torch.exp(m - torch.where(top == float("-inf"), 0.0, top))
        den = (lsum * w).sum(-1)[..., None]
        o = (acc * w[..., None]).sum(-2) / den
        return torch.where(den > 0, o, 0.0)
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


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int | torch.Tensor
) -> torch.Tensor:
    """o [B, H, d] float32 from q [B, H, d] and the caches k, v [B, max_len, KV, d] (last dim
    contiguous), over positions 0 .. length − 1 (`length`: an int, or a device int64 tensor [1]
    read by the kernel: no host value, so the call can be captured in a CUDA graph)."""
    on_device = isinstance(length, torch.Tensor)
    splits = -(-(k.shape[1] if on_device else length) // CHUNK)
    return _launch(q.contiguous(), k, v, length, splits)


def decode_step(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    position: int | torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """One decoding step of a new row at `position` (a host int, or a device int64 tensor [1]
    for a CUDA-graph step), in one pass: q [B, H, d], k_new and v_new [B, KV, d] (projected,
    RoPE not yet applied, any float dtype), the caches k, v [B, max_len, KV, d]. RoPE
    (`rope` = the cos, sin tables [max_len, d/2] float32 of `rope_table`) rotates q and the new
    key at `position`; the new key and value are written into the caches at `position`; the
    query attends over positions 0 .. position (the new row read from registers). `gate` [B]:
    a sequence whose gate is 0 writes its key and value but does not query (its output is 0).
    Returns o [B, H, d] float32, as `decode_attention` after the reference's cache write."""
    on_device = isinstance(position, torch.Tensor)
    splits = -(-(k.shape[1] if on_device else position + 1) // CHUNK)
    return _launch(
        q.contiguous(),
        k,
        v,
        position,
        splits,
        new=(k_new.contiguous(), v_new.contiguous()),
        rope=rope,
        gate=None if gate is None else gate.contiguous(),
    )


_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def rope_table(max_len: int, d: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [max_len, d/2] float32 for positions 0 .. max_len − 1, with the reference's
    formula (angles in float64, `rope_tables`), so the kernel rotates as the reference does.
    Kept per (max_len, d, base, device): made once, outside any CUDA-graph capture (the first,
    eager step of a graph loop makes them)."""
    from .reference.common import rope_tables

    key = (max_len, d, float(base), str(torch.device(device)))
    if key not in _TABLES:
        _TABLES[key] = tuple(
            t.contiguous() for t in rope_tables(max_len, d, base, 0, device, torch.float32)
        )
    return _TABLES[key]
