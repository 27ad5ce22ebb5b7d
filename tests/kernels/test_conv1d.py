"""Numerics of the depthwise conv1d template (causal and symmetric padding), forward and backward.

Without CUDA: Triton interpreter, float32, against float64 `torch.nn.functional.conv1d` with
groups=D and the SPEC padding: outputs and the `.grad` of x, weight and bias, for N = 1 and lengths
and widths that are not block multiples. Causality is checked bit for bit. GPU tests are marked
`gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOOKS = [(3, True), (4, True), (1, True), (3, False), (5, False)]


@pytest.fixture(scope="module")
def convs():
    text = render("prelude.py.jinja", version="test", source_name="test_conv1d")
    names = {}
    for k, causal in HOOKS:
        name = f"conv_k{k}_{'causal' if causal else 'sym'}"
        text += render("primitives_conv1d.py.jinja", name=name, kernel=k, causal=causal) + "\n\n"
        names[k, causal] = name
    mod = load_source("test_conv1d_mod", text)
    return {key: getattr(mod, name) for key, name in names.items()}


def reference(x, w, b, causal):
    K = w.shape[-1]
    left = K - 1 if causal else (K - 1) // 2
    right = 0 if causal else (K - 1) // 2
    xp = torch.nn.functional.pad(x.transpose(1, 2), (left, right))
    return torch.nn.functional.conv1d(xp, w, b, groups=x.shape[2]).transpose(1, 2)


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(fn, k, causal, shape, dtype=torch.float32, device=DEVICE, tol=1e-4):
    _B, _N, D = shape
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    w = torch.randn(D, 1, k, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(D, device=device, dtype=dtype, requires_grad=True)
    y = fn(x, w, b)
    a64 = [t.detach().double().requires_grad_() for t in (x, w, b)]
    ref = reference(*a64, causal)
    assert y.shape == ref.shape and y.dtype == dtype and rel(y, ref) < tol
    cot = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, w, b], cot)
    refs = torch.autograd.grad(ref, a64, cot.double())
    for name, g, r in zip("xwb", grads, refs):
        assert g.shape == r.shape and rel(g, r) < tol, f"grad of {name}"


@pytest.mark.parametrize("k,causal", HOOKS)
@pytest.mark.parametrize("shape", [(1, 1, 24), (2, 7, 40), (1, 9, 17)])
def test_conv1d_matches_float64(convs, k, causal, shape):
    torch.manual_seed(k * 100 + sum(shape))
    check(convs[k, causal], k, causal, shape)


def test_causal_conv_ignores_the_future(convs):
    torch.manual_seed(3)
    x = torch.randn(2, 11, 24, device=DEVICE)
    w, b = torch.randn(24, 1, 4, device=DEVICE), torch.randn(24, device=DEVICE)
    y1 = convs[4, True](x, w, b)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 5, 24, device=DEVICE)
    y2 = convs[4, True](x2, w, b)
    assert torch.equal(y1[:, :6], y2[:, :6]) and not torch.equal(y1[:, 6:], y2[:, 6:])


def test_noncausal_even_kernel_is_rejected_at_render():
    with pytest.raises(Exception, match="must_be_odd"):
        render("primitives_conv1d.py.jinja", name="bad", kernel=4, causal=False)


@pytest.mark.gpu
@pytest.mark.parametrize("k,causal", [(3, True), (5, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conv1d_gpu(convs, k, causal, dtype):
    torch.manual_seed(0)
    check(
        convs[k, causal],
        k,
        causal,
        (4, 1023, 768),
        dtype=dtype,
        device="cuda",
        tol=1e-4 if dtype == torch.float32 else 1e-2,
    )
