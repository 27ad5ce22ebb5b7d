"""Numerics of the last-dim softmax template, forward and backward.

Without CUDA: Triton interpreter, float32, against float64 torch, for the one-pass (whole row in a
tile) and the chunked two-pass (online max/sum) paths, odd widths, and logits of huge magnitude.
GPU tests (float32 and bfloat16, vocabulary-sized rows) are marked `gpu`.
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
def softmax():
    text = render("prelude.py.jinja", version="test", source_name="test_softmax")
    text += render("primitives_softmax.py.jinja", name="sm")
    return load_source("test_softmax_mod", text).sm


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(softmax, x, max_block_d=None, tol=1e-4):
    x = x.detach().requires_grad_()
    y = softmax(x, max_block_d)
    x64 = x.detach().double().requires_grad_()
    ref = torch.softmax(x64, -1)
    assert y.dtype == x.dtype and torch.isfinite(y).all()
    assert rel(y, ref) < tol
    cot = torch.randn_like(y)
    (g,) = torch.autograd.grad(y, x, cot)
    (rg,) = torch.autograd.grad(ref, x64, cot.double())
    assert rel(g, rg) < tol


# max_block_d=None picks whole-row tiles up to the default cap (16 under the interpreter, so
# widths above 16 take the chunked path); 64 forces one pass for these widths, 8 forces chunks.
@pytest.mark.parametrize("max_block_d", [None, 64, 8])
@pytest.mark.parametrize("shape", [(1, 1), (7, 24), (2, 3, 33), (5, 40)])
def test_softmax_matches_float64(softmax, shape, max_block_d):
    torch.manual_seed(sum(shape))
    check(softmax, torch.randn(shape, device=DEVICE) * 2, max_block_d)


@pytest.mark.parametrize("max_block_d", [64, 8])
def test_softmax_large_magnitude_logits(softmax, max_block_d):
    torch.manual_seed(7)
    x = torch.randn(3, 37, device=DEVICE) * 1e4
    x[0, 5] = 3e38  # near float32 max: subtracting the row max keeps exp finite
    x[1] = -1e30
    x[1, 3] = -1e30 + 1e24
    check(softmax, x, max_block_d)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(64, 1000), (16, 50257)])
def test_softmax_gpu(softmax, dtype, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape, device="cuda") * 5).to(dtype)
    check(softmax, x, tol=1e-4 if dtype == torch.float32 else 1e-2)
