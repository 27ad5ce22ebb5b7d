"""`sqdk_attention`'s reference rule at the properties its tiled form must keep (SPEC §4.2, §6.2):
a routed row's output is bit for bit independent of which later rows are routed (float32 and
float64, tiles spanning several query tiles), it equals per-sequence dense causal attention over
the routed rows, the router's gradient is non-zero exactly at routed rows, and the scores kept
for backward are one tile's, never one row per routed query and key."""

from __future__ import annotations

import pytest
import torch
from _opharness import OpCase, build
from sparkc.runtime.reference import hspmn


def _case(n: int, hp: dict, b: int = 2, d: int = 16, seed: int = 0):
    return build(OpCase("sqdk_attention", {"x": (b, n, d), "gate": (b, n)}, hp), seed=seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [9, 150])
def test_changing_only_later_routing_leaves_earlier_rows_bit_exact(dtype, n):
    b = _case(n, {"heads": 4, "kv_heads": 2}, seed=n)
    x = b.inputs["x"].detach().to(dtype)
    params = {k: v.detach().to(dtype) for k, v in b.params.items()}
    g = torch.Generator().manual_seed(5)
    gate = (torch.rand(2, n, generator=g) < 0.5).to(dtype)
    for t in sorted({0, 3, n // 2, n - 2}):
        later = gate.clone()
        later[:, t + 1 :] = 1.0 - gate[:, t + 1 :]  # every later row's routing flips
        (y0,) = b.run({"x": x, "gate": gate}, params)
        (y1,) = b.run({"x": x, "gate": later}, params)
        assert torch.equal(y0[:, : t + 1], y1[:, : t + 1]), t


def _dense_causal(b, x, gate):
    """Dense causal attention over every position, then kept at routed rows (float64)."""
    p, hp = b.params, b.hp
    bsz, n, dm = x.shape
    heads, kv = hp["heads"], hp["kv_heads"]
    d = dm // heads
    q = (x @ p["wq.weight"].T).view(bsz, n, heads, d).transpose(1, 2)
    k = (x @ p["wk.weight"].T).view(bsz, n, kv, d).transpose(1, 2)
    v = (x @ p["wv.weight"].T).view(bsz, n, kv, d).transpose(1, 2)
    k, v = (t.repeat_interleave(heads // kv, dim=1) for t in (k, v))
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = o.transpose(1, 2).reshape(bsz, n, dm) @ p["wo.weight"].T
    return y * gate[..., None]


@pytest.mark.parametrize("kv", [1, 2, 4])
def test_equals_dense_causal_attention_at_routed_rows(kv, monkeypatch):
    monkeypatch.setattr(hspmn, "QUERY_TILE", 4)  # several tiles per sequence, a padded last one
    b = _case(11, {"heads": 4, "kv_heads": kv, "rope": False}, b=3)
    gate = b.inputs["gate"].detach().clone()
    gate[1] = 0.0  # a sequence with no routed row beside ones with some
    gate[2] = 1.0  # and one with every row routed
    (y,) = b.run({"x": b.inputs["x"], "gate": gate})
    want = _dense_causal(b, b.inputs["x"].detach(), gate)
    assert torch.allclose(y, want, atol=1e-12, rtol=1e-10)
    assert torch.equal(y[1], torch.zeros_like(y[1]))


def test_router_gradient_only_at_routed_rows():
    b = _case(13, {"heads": 2})
    gate = b.inputs["gate"].detach().clone()
    gate[:, 1::3] = 0.0
    gate.requires_grad_(True)
    (y,) = b.run({"x": b.inputs["x"], "gate": gate})
    (
        y * torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(2))
    ).sum().backward()
    routed = gate.detach() != 0
    assert (gate.grad[routed] != 0).all()
    assert (gate.grad[~routed] == 0).all()


def test_backward_keeps_one_tile_of_scores(monkeypatch):
    """Saved activations stay O(R·D + tile·H·N): no [R, H, N] score or [R, N, H, d] key tensor."""
    monkeypatch.setattr(hspmn, "QUERY_TILE", 4)
    n, heads = 64, 4
    b = _case(n, {"heads": heads, "kv_heads": 2}, b=1, d=16)
    gate = torch.ones(1, n, dtype=torch.float64)
    biggest = []

    def pack(t):
        biggest.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        (y,) = b.run({"x": b.inputs["x"], "gate": gate})
    y.sum().backward()
    routed = n
    assert max(biggest) < routed * heads * n  # every routed row's scores at once
    assert max(biggest) <= max(n * 16, 4 * heads * n)
