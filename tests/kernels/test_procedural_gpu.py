"""GPU numerics of the procedural family's GEMM-side kernels (marked `gpu`): lora_linear and
demopack_linear compiled from .spark, float32 and bfloat16 on CUDA, forward and every gradient vs
the float64 reference path, at sizes where the Hopper tiles (128-256 wide), the per-sample row
tiles (N not a tile multiple) and the split row reductions are all exercised."""

from __future__ import annotations

import pytest
import torch

from sparkc import api

LORA = """
model L(d = 320, m = 24) {
  input x: float[B, N, d]
  input meta: float[B, m]
  y = lora_linear(x, meta, out=272, rank=4, gen_dim=64)
  output y
}
"""
DEMOPACK = """
model P(d = 320) {
  input x: float[B, N, d]
  y = demopack_linear(x, out=528, codewords=96, per_row=4, seed=1)
  output y
}
"""
TOL = {torch.float32: 2e-3, torch.bfloat16: 5e-2}  # bf16: weights and inputs rounded


def _rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def _check(src, fname, inputs, dtype, tweak):
    m = api.load_source(src, fname)
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double().cuda()
    with torch.no_grad():
        tweak(ref)
    tri = m.Model(impl="triton").cuda()
    tri.load_state_dict(ref.state_dict())
    tri.to(dtype)
    xs_r = {k: v.cuda().requires_grad_(True) for k, v in inputs.items()}
    xs_t = {k: v.cuda().to(dtype).requires_grad_(True) for k, v in inputs.items()}
    a, c = ref(**xs_r).y, tri(**xs_t).y
    assert c.dtype == dtype
    assert _rel(c, a) < TOL[dtype]
    w = torch.randn(a.shape, dtype=torch.float64, device="cuda")
    (a * w).sum().backward()
    (c * w.to(dtype)).sum().backward()
    for k in inputs:
        assert _rel(xs_t[k].grad, xs_r[k].grad) < TOL[dtype], k
    for (name, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
        assert _rel(pt.grad, pr.grad) < TOL[dtype], name


def _lora_tweak(ref):
    for name in ("y.gen_b.weight", "y.gen_b.bias"):
        p = ref.get_parameter(name)
        p.copy_(0.05 * torch.randn_like(p))


def _demopack_tweak(ref):
    ref.get_parameter("y.scale").copy_(torch.linspace(0.5, 1.5, 528))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 333])
def test_lora_linear_kernels_on_gpu(dtype, n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, 320, dtype=torch.float64, generator=g)
    meta = torch.randn(3, 24, dtype=torch.float64, generator=g)
    _check(LORA, "lora_gpu.spark", {"x": x, "meta": meta}, dtype, _lora_tweak)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 333])
def test_demopack_linear_kernels_on_gpu(dtype, n):
    x = torch.randn(2, n, 320, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    _check(DEMOPACK, "demopack_gpu.spark", {"x": x}, dtype, _demopack_tweak)
