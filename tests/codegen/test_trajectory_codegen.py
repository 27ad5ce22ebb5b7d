"""trajectory (SPEC §3.2) on its generated stencil kernels vs the float64 reference: forward,
d x and d strength, windows 2 and 6, N = 1, 2, 7, 13, a repeated token (the norm clamp), the
causality perturbation test bit for bit, and every launched kernel compiled for sm_90."""

from __future__ import annotations

import pytest
import torch
from launch_record import compile_records, recording

from sparkc import api

SRC = """
model M(d = 12) {{
  input x: float[B, N, d]
  y = trajectory(x, window={window})
  output y
}}
"""


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-2 * b.numel() ** 0.5))


def _pair(window: int):
    m = api.load_source(SRC.format(window=window), f"traj{window}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double()
    with torch.no_grad():
        ref.get_parameter("y.strength").fill_(0.7)
    tri = m.Model(impl="triton")
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    return ref, tri


@pytest.mark.parametrize("window", [2, 6])
def test_trajectory_kernels_match_reference(window):
    ref, tri = _pair(window)
    for n in (1, 2, 7, 13):
        x = torch.randn(2, n, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        if n > 3:
            x[0, 2] = x[0, 1]  # a zero difference: δ goes through max(‖v‖, 1e-8)
        xr, xt = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        a, c = ref(x=xr).y, tri(x=xt).y
        assert _rel(c, a) < 1e-5
        w = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
        ref.zero_grad()
        tri.zero_grad()
        (a * w).sum().backward()
        (c * w.float()).sum().backward()
        assert _rel(xt.grad, xr.grad) < 1e-5
        sr, st = ref.get_parameter("y.strength").grad, tri.get_parameter("y.strength").grad
        assert abs(float(st) - float(sr)) <= 1e-5 * max(1.0, abs(float(sr)))


def test_trajectory_kernel_is_causal_and_compiles(tmp_path):
    _, tri = _pair(3)
    x = torch.randn(2, 9, 12)
    changed = x.clone()
    changed[:, 5:] += 3.0
    records: list[dict] = []
    with recording(records):
        a, b = tri(x=x).y, tri(x=changed).y
        xg = x.clone().requires_grad_(True)
        tri(x=xg).y.sum().backward()
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.equal(a, b)
    assert sorted(set(compile_records(records, tmp_path))) == [
        "traj0_bwd_dv_kernel",
        "traj0_bwd_dx_kernel",
        "traj0_fwd_kernel",
        "traj0_norm_kernel",
        "traj0_sum_kernel",
    ]
