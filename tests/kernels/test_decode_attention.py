"""Split-KV decode attention (runtime/decode_attention.py) against the reference softmax
attention: grouped-query heads packed, contexts shorter and longer than one split, a final
block that is partly past the length, and caches longer than the length (never read); the
length given as a host int or as a device tensor."""

from __future__ import annotations

import math

import pytest
import torch
from sparkc.runtime.decode_attention import CHUNK, decode_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _reference(q, k, v, length):
    heads, kv = q.shape[1], k.shape[2]
    k = k[:, :length].repeat_interleave(heads // kv, dim=2)
    v = v[:, :length].repeat_interleave(heads // kv, dim=2)
    s = torch.einsum("bhd,bthd->bht", q.double(), k.double()) / math.sqrt(q.shape[-1])
    return torch.einsum("bht,bthd->bhd", torch.softmax(s, -1), v.double())


@pytest.mark.parametrize(
    ("b", "heads", "kv", "d", "length", "max_len"),
    [
        (2, 4, 2, 16, 5, 8),  # one split, masked tail
        (1, 3, 1, 8, 1, 4),  # a single position; G = 3 (not a power of two)
        (2, 2, 2, 12, CHUNK + 70, CHUNK + 80),  # two splits, d not a power of two
        (1, 8, 2, 16, 2 * CHUNK, 3 * CHUNK),  # exactly two full splits
    ],
)
@pytest.mark.parametrize("on_device", [False, True], ids=["host_length", "device_length"])
def test_decode_attention_matches_reference(b, heads, kv, d, length, max_len, on_device):
    """`on_device`: the length as a device tensor (a CUDA-graph step): the grid covers max_len,
    the splits past the length are empty and weigh 0 in the merge."""
    g = torch.Generator().manual_seed(length)
    q = torch.randn(b, heads, d, generator=g).to(DEVICE)
    k = torch.randn(b, max_len, kv, d, generator=g).to(DEVICE)
    v = torch.randn(b, max_len, kv, d, generator=g).to(DEVICE)
    k[:, length:] = float("nan")  # past the length: must never be read
    v[:, length:] = float("nan")
    n = torch.tensor([length], device=DEVICE) if on_device else length
    got = decode_attention(q, k, v, n)
    want = _reference(q, k, v, length)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("on_device", [False, True], ids=["host_length", "device_length"])
def test_decode_attention_merges_many_splits_in_pytorch(monkeypatch, on_device):
    """Past MERGE_MAX splits the merge runs in PyTorch: the same result as the merge kernel."""
    from sparkc.runtime import decode_attention as da

    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 8, generator=g).to(DEVICE)
    k, v = (torch.randn(1, 3 * CHUNK, 2, 8, generator=g).to(DEVICE) for _ in range(2))
    length = CHUNK + 9
    n = torch.tensor([length], device=DEVICE) if on_device else length
    kernel = decode_attention(q, k, v, n)
    monkeypatch.setattr(da, "MERGE_MAX", 1)
    torch_merge = decode_attention(q, k, v, n)
    assert torch.allclose(torch_merge, kernel, rtol=1e-5, atol=1e-6)
    assert torch.allclose(kernel.double(), _reference(q, k, v, length), rtol=1e-5, atol=1e-5)


def _step_reference(q, k_new, v_new, k, v, pos, rope, gate):
    """The reference's decoding step in float64: RoPE at `pos`, the new row into the caches,
    attention over 0..pos; sequences whose gate is 0 give 0. Returns (o, k, v)."""
    from sparkc.runtime.reference.common import apply_rope, rope_tables

    k, v = k.clone(), v.clone()
    if rope:
        cos, sin = rope_tables(1, q.shape[-1], 10000.0, pos, "cpu", torch.float32)
        q = apply_rope(q[:, None], cos, sin)[:, 0]
        k_new = apply_rope(k_new[:, None], cos, sin)[:, 0]
    k[:, pos], v[:, pos] = k_new, v_new
    o = _reference(q, k, v, pos + 1)
    if gate is not None:
        o = o * (gate != 0).double()[:, None, None]
    return o, k, v


@pytest.mark.parametrize(
    ("b", "heads", "kv", "d", "pos", "max_len"),
    [
        (2, 4, 2, 16, 5, 8),  # one split
        (1, 3, 1, 8, 0, 4),  # the first position: the new row alone
        (2, 2, 2, 12, CHUNK + 3, CHUNK + 80),  # second split, d not a power of two
        (3, 8, 2, 16, 2 * CHUNK - 1, 3 * CHUNK),  # the last row of a split
        (2, 4, 4, 16, CHUNK, CHUNK + 1),  # the first row of a split (its loop is empty)
    ],
)
@pytest.mark.parametrize("rope", [True, False], ids=["rope", "no_rope"])
@pytest.mark.parametrize("gated", [False, True], ids=["all_query", "gated"])
@pytest.mark.parametrize("on_device", [False, True], ids=["host_position", "device_position"])
def test_decode_step_rotates_writes_and_attends(
    b, heads, kv, d, pos, max_len, rope, gated, on_device
):
    """`decode_step` = the reference's RoPE, cache write and attention; the rows past the
    position are never read nor written; a sequence whose gate is 0 writes its row, reads
    nothing and gives exactly 0."""
    from sparkc.runtime.decode_attention import decode_step, rope_table

    g = torch.Generator().manual_seed(pos + d)
    q = torch.randn(b, heads, d, generator=g)
    k_new, v_new = (torch.randn(b, kv, d, generator=g) for _ in range(2))
    k, v = (torch.randn(b, max_len, kv, d, generator=g) for _ in range(2))
    k[:, pos:], v[:, pos:] = float("nan"), float("nan")
    gate = torch.tensor([0.0] + [0.5] * (b - 1)) if gated else None
    want, want_k, want_v = _step_reference(q, k_new, v_new, k, v, pos, rope, gate)
    tables = rope_table(max_len, d, 10000.0, DEVICE) if rope else None
    kd, vd = k.to(DEVICE), v.to(DEVICE)
    position = torch.tensor([pos], device=DEVICE) if on_device else pos
    gate_d = None if gate is None else gate.to(DEVICE)
    got = decode_step(
        q.to(DEVICE), k_new.to(DEVICE), v_new.to(DEVICE), kd, vd, position, tables, gate_d
    )
    assert torch.allclose(got.double().cpu(), want, rtol=1e-5, atol=1e-5)
    if gated:
        assert torch.equal(got[0].cpu(), torch.zeros(heads, d))
    torch.testing.assert_close(kd[:, : pos + 1].cpu(), want_k[:, : pos + 1], rtol=1e-6, atol=1e-6)
    assert torch.equal(vd[:, : pos + 1].cpu(), want_v[:, : pos + 1])
    assert torch.isnan(kd[:, pos + 1 :]).all() and torch.isnan(vd[:, pos + 1 :]).all()


def test_rope_table_is_the_reference_table_made_once():
    from sparkc.runtime.decode_attention import rope_table
    from sparkc.runtime.reference.common import rope_tables

    cos, sin = rope_table(40, 8, 500.0, "cpu")
    want_cos, want_sin = rope_tables(3, 8, 500.0, 37, "cpu", torch.float32)
    assert torch.equal(cos[37:], want_cos) and torch.equal(sin[37:], want_sin)
    assert rope_table(40, 8, 500.0, "cpu")[0] is cos


_COMPILE = r"""
from sparkc.runtime.decode_attention import merge_kernel, split_kv_kernel

def ptr(a):
    return "*i64" if a == "len_ptr" else ELT if a in ("q_ptr", "kn_ptr", "vn_ptr") else (
        "*fp32" if a.endswith("_ptr") else "fp32" if a == "scale" else "i32")

out = []
for ELT in ("*fp32", "*bf16"):
    for flags in [(False, False, False, False), (True, True, True, True), (True, True, False, False),
                  (False, True, True, True)]:
        on_device, append, rope, gated = flags
        out.append(ptx_size(split_kv_kernel, {"G": 4, "D": 64, "BLOCK_G": 4, "BLOCK_D": 64,
            "BLOCK_T": 64, "CHUNK": 256, "LEN_FROM_PTR": on_device, "APPEND": append,
            "ROPE": rope, "GATED": gated}, ptr))
out.append(ptx_size(merge_kernel, {"D": 64, "BLOCK_S": 8, "BLOCK_D": 64}, ptr))
print(json.dumps(out))
"""


def test_decode_kernels_compile_for_sm90():
    """Every variant of the split-KV kernel (host or device position; the fused step with RoPE,
    gate, bf16 projections) and the merge kernel compile to PTX for sm_90."""
    from _sm90 import compile_script

    sizes = compile_script(_COMPILE)
    assert len(sizes) == 9 and all(n > 1000 for n in sizes)
