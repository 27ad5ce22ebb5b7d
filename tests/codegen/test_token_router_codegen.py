"""token_router on generated kernels vs the float64 reference path: threshold and top-k modes,
evaluation and training with logistic noise from the same seed. The masks must be identical, the
gate exactly the mask in the forward, and the gradients (through the straight-through sigmoid and
the sparsity loss) equal to float32 accuracy."""

from __future__ import annotations

import pytest
import torch

from sparkc import api

SRC = """
model M(d = 16) {{
  input x: float[B, N, d]
  r = token_router(x, sparsity=0.3, mode={mode})
  g = r.gate
  m = r.mask
  output g
  output m
}}
"""


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("mode", ["threshold", "topk"])
def test_token_router_kernels_match_reference(mode, train):
    m = api.load_source(SRC.format(mode=mode), f"router_{mode}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double().train(train)
    tri = m.Model(impl="triton").train(train)
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    for b, n in [(1, 1), (2, 9)]:
        x = torch.randn(b, n, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        xr, xt = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        torch.manual_seed(7)
        a = ref(x=xr)
        torch.manual_seed(7)
        c = tri(x=xt)
        assert torch.equal(a.m, c.m)
        assert torch.equal(c.g, c.m.float())  # straight-through: the forward value is the mask
        assert _rel(c.aux_loss, a.aux_loss) < 1e-4
        w = torch.linspace(-1, 2, b * n, dtype=torch.float64).reshape(b, n)
        ref.zero_grad()
        tri.zero_grad()
        ((a.g * w).sum() + 10 * a.aux_loss).backward()
        ((c.g * w.float()).sum() + 10 * c.aux_loss).backward()
        for pr, pt in zip(ref.parameters(), tri.parameters()):
            assert _rel(pt.grad, pr.grad) < 1e-4
        assert _rel(xt.grad, xr.grad) < 1e-4
