"""The chunked state form of `splat_attention`'s mixing (runtime/reference/splat_chunked.py)
against the dense quadratic form of SPEC §3.1 in float64: forward and gradients, chunk sizes
that do and do not divide N, N = 1, both flags; and the memory bound (nothing of size N×N is
kept for the backward)."""

from __future__ import annotations

import pytest
import torch
from sparkc.runtime.reference.splat_chunked import splat_mix


def dense(phi, v, causal, normalize):
    w = torch.einsum("bhtk,bhsk->bhts", phi, phi)
    if causal:
        w = w.tril()
    o = w @ v
    return o / w.sum(-1, keepdim=True) if normalize else o


def _inputs(n, k=3, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.softmax(torch.randn(2, 3, n, k, generator=g, dtype=torch.float64) * 2, -1)
    v = torch.randn(2, 3, n, d, generator=g, dtype=torch.float64)
    return phi.requires_grad_(True), v.requires_grad_(True)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("n,chunk", [(1, 4), (7, 4), (13, 4), (16, 4), (9, 1), (11, 64)])
def test_chunked_matches_dense(causal, normalize, n, chunk):
    phi, v = _inputs(n)
    a = splat_mix(phi, v, causal, normalize, chunk=chunk)
    b = dense(phi, v, causal, normalize)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(a)
    ga = torch.autograd.grad((a * w).sum(), (phi, v))
    gb = torch.autograd.grad((b * w).sum(), (phi, v))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_chunked_keeps_no_quadratic_tensor():
    n, chunk = 512, 16
    phi, v = _inputs(n, k=4, d=8)
    biggest = [0]

    def pack(t):
        biggest[0] = max(biggest[0], t.numel() // 6)  # per (batch, head)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        o = splat_mix(phi, v, True, True, chunk=chunk)
    o.sum().backward()
    assert 0 < biggest[0] <= n * max(chunk, 8)
    assert biggest[0] < n * n // 8
