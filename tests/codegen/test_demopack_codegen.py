"""demopack_linear in the lookup form on generated kernels (P = x·codebookᵀ, then the gather-sum
y_r = scale_r/per_row · Σ_j P[index_rj] + bias_r; W is never materialised) vs the float64
reference, learnable and frozen codebooks, forward and every gradient; a loaded index table
takes effect, and an index table corrupted after a checked call is caught on the next one."""

from __future__ import annotations

import pytest
import torch
from sparkc.runtime.checks import InputError

from sparkc import api

SRC = """
model M(d = 24) {{
  input x: float[B, N, d]
  y = demopack_linear(x, out=20, codewords=9, per_row=3, seed=4, learnable={learnable})
  output y
}}
"""


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


@pytest.mark.parametrize("learnable", ["true", "false"])
def test_demopack_kernels_match_reference(learnable):
    m = api.load_source(SRC.format(learnable=learnable), f"dp_{learnable}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double()
    tri = m.Model(impl="triton")
    with torch.no_grad():
        ref.get_parameter("y.scale").copy_(torch.linspace(0.5, 1.5, 20))
        ref.get_buffer("y.index")[3] = torch.tensor([2, 2, 5])  # a repeated codeword
    tri.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    )
    for b, n in [(1, 1), (2, 7)]:
        x = torch.randn(b, n, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        xr, xt = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        a, c = ref(x=xr).y, tri(x=xt).y
        assert _rel(c, a) < 1e-5
        assert torch.equal(tri(x=xt).y, c)  # deterministic: bit for bit again
        w = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        ref.zero_grad()
        tri.zero_grad()
        (a * w).sum().backward()
        (c * w.float()).sum().backward()
        assert _rel(xt.grad, xr.grad) < 1e-5
        for (name, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
            assert _rel(pt.grad, pr.grad) < 1e-5, name


def test_an_index_table_written_after_a_checked_call_is_checked_again():
    m = api.load_source(SRC.format(learnable="true"), "dp_recheck.spark")
    net = m.Model(impl="triton")
    x = torch.randn(1, 3, 24)
    net(x=x)  # checked once: the next call with the same buffer version skips the check
    with torch.no_grad():
        net.get_buffer("y.index")[1, 0] = 9  # out of [0, 9): the in-place write bumps the version
    with pytest.raises(InputError, match="index table holds ids outside"):
        net(x=x)
    good = {k: v.clone() for k, v in m.Model(impl="triton").state_dict().items()}
    net.load_state_dict(good)
    assert torch.isfinite(net(x=x).y).all()
