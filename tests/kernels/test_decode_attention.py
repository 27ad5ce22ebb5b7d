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
