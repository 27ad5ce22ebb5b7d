"""spd_router on generated kernels (GEMM chains with gating/activation epilogues, layer-norm
kernels, fused loss programs) vs the float64 reference path: both gate modes, evaluation and
training with gate noise drawn from the same seed, forward and backward."""

from __future__ import annotations

import pytest
import torch

from sparkc import api

SRC = """
model M(d = 16) {{
  input x: float[B, N, d]
  y, xs, xp, l = spd_router(x, gate={gate}, gate_noise=true, struct_dim=6, pseudo_dim=10)
  output y
  output xs
  output xp
}}
"""


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_spd_router_kernels_match_reference(gate, train):
    m = api.load_source(SRC.format(gate=gate), f"spd_{gate}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double().train(train)
    tri = m.Model(impl="triton").train(train)
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    for b, n in [(1, 1), (2, 7)]:
        x = torch.randn(b, n, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        xr, xt = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        torch.manual_seed(123)
        a = ref(x=xr)
        torch.manual_seed(123)
        c = tri(x=xt)
        for k in ("y", "xs", "xp", "aux_loss"):
            assert _rel(c[k], a[k]) < 1e-4, (k, _rel(c[k], a[k]))
        ref.zero_grad()
        tri.zero_grad()
        (a.y.sum() + 3 * a.aux_loss + (a.xs * a.xs).sum() + a.xp.sum()).backward()
        (c.y.sum() + 3 * c.aux_loss + (c.xs * c.xs).sum() + c.xp.sum()).backward()
        for (name, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
            assert pt.grad is not None and float(pt.grad.abs().sum()) > 0, name
            assert _rel(pt.grad, pr.grad) < 1e-4, (name, _rel(pt.grad, pr.grad))
        assert _rel(xt.grad, xr.grad) < 1e-4
