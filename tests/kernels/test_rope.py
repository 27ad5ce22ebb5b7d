"""Numerics of the standalone rotate-half RoPE template, forward and backward.

Without CUDA: Triton interpreter, float32, against a float64 rotate-half reference (SPEC §1
`rope`), with position offsets, odd N and head widths whose half is not a power of two. GPU tests
are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def rope():
    text = render("prelude.py.jinja", version="test", source_name="test_rope")
    text += render("primitives_rope.py.jinja", name="rp")
    return load_source("test_rope_mod", text).rp


def reference(x, base, offset):
    _B, N, _H, d = x.shape
    half = d // 2
    i = torch.arange(half, dtype=torch.float64, device=x.device)
    theta = base ** (-2.0 * i / d)
    t = torch.arange(N, dtype=torch.float64, device=x.device) + offset
    ang = (t[:, None] * theta[None, :])[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * ang.cos() - x2 * ang.sin(), x1 * ang.sin() + x2 * ang.cos()], -1)


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(rope, shape, base, offset, dtype=torch.float32, device=DEVICE, tol=1e-4):
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    y = rope(x, base, offset)
    x64 = x.detach().double().requires_grad_()
    ref = reference(x64, base, offset)
    assert y.dtype == dtype and rel(y, ref) < tol
    cot = torch.randn_like(y)
    (g,) = torch.autograd.grad(y, x, cot)
    (rg,) = torch.autograd.grad(ref, x64, cot.double())
    assert rel(g, rg) < tol


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 7, 3, 24), (1, 9, 2, 40), (2, 5, 1, 16)])
@pytest.mark.parametrize("base,offset", [(10000.0, 0), (500.0, 13)])
def test_rope_matches_float64(rope, shape, base, offset):
    torch.manual_seed(sum(shape) + offset)
    check(rope, shape, base, offset)


def test_rope_offset_equals_slice_of_longer_sequence(rope):
    torch.manual_seed(4)
    x = torch.randn(2, 9, 2, 24, device=DEVICE)
    full = rope(x)
    tail = rope(x[:, 6:].contiguous(), pos_offset=6)
    assert torch.allclose(full[:, 6:], tail, rtol=0, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_gpu(rope, dtype):
    torch.manual_seed(0)
    # Angles t·θ are float32 (as in every fused RoPE): at t ~ 2000 their rounding is ~1e-4 rad.
    check(
        rope,
        (4, 2048, 12, 64),
        10000.0,
        0,
        dtype=dtype,
        device="cuda",
        tol=5e-4 if dtype == torch.float32 else 1e-2,
    )
