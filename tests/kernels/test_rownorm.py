"""Numerics of the RMSNorm / LayerNorm template, with and without the fused residual prologue.

Without CUDA: Triton interpreter, float32, against a float64 torch reference, forward outputs and
the `.grad` of every input (x, r, weight, bias) for odd row counts and widths that are not powers
of two. GPU tests (float32 and bfloat16, realistic sizes) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PRELUDE = render("prelude.py.jinja", version="test", source_name="test_rownorm")
HOOKS = [(k, r) for k in ("rms", "layer") for r in (False, True)]


@pytest.fixture(scope="module")
def mods():
    out = {}
    for kind, residual in HOOKS:
        name = f"norm_{kind}_{'res' if residual else 'plain'}"
        text = PRELUDE + render(
            "primitives_rownorm.py.jinja", name=name, kind=kind, residual=residual
        )
        out[kind, residual] = getattr(load_source(name, text), name)
    return out


def reference(kind, residual, args, eps):
    x = args[0] + args[1] if residual else args[0]
    if kind == "rms":
        y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * args[-1]
    else:
        y = torch.nn.functional.layer_norm(x, (x.shape[-1],), args[-2], args[-1], eps)
    return (y, x) if residual else (y,)


def make_args(kind, residual, shape, dtype=torch.float32, device=DEVICE):
    D = shape[-1]
    args = [torch.randn(shape, device=device, dtype=dtype) * 3 + 0.5]
    if residual:
        args.append(torch.randn(shape, device=device, dtype=dtype))
    args.append(torch.randn(D, device=device, dtype=dtype))
    if kind == "layer":
        args.append(torch.randn(D, device=device, dtype=dtype))
    return [a.requires_grad_() for a in args]


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(fn, kind, residual, shape, eps, dtype=torch.float32, device=DEVICE, tol=1e-4, use_s=True):
    args = make_args(kind, residual, shape, dtype, device)
    outs = fn(*args, eps)
    outs = outs if residual else (outs,)
    args64 = [a.detach().double().requires_grad_() for a in args]
    refs = reference(kind, residual, args64, eps)
    for o, r in zip(outs, refs):
        assert o.dtype == dtype and o.shape == r.shape
        assert rel(o, r) < tol
    # The residual output may or may not feed a loss: both backward paths (HAS_DS) are tested.
    used = len(outs) if use_s else 1
    cot = [torch.randn_like(o) for o in outs[:used]]
    grads = torch.autograd.grad(outs[:used], args, cot)
    refs_g = torch.autograd.grad(refs[:used], args64, [c.double() for c in cot])
    for i, (g, rg) in enumerate(zip(grads, refs_g)):
        assert g.dtype == dtype and rel(g, rg) < tol, f"grad of argument {i}"


@pytest.mark.parametrize("kind,residual", HOOKS)
@pytest.mark.parametrize("shape", [(1, 1, 24), (2, 7, 40), (33, 5), (3, 65)])
def test_norm_matches_float64(mods, kind, residual, shape):
    torch.manual_seed(hash(shape) % 1000)
    check(mods[kind, residual], kind, residual, shape, 1e-5)


@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_residual_output_unused_in_loss(mods, kind):
    torch.manual_seed(3)
    check(mods[kind, True], kind, True, (5, 24), 1e-6, use_s=False)


def test_eps_is_a_runtime_argument(mods):
    torch.manual_seed(4)
    x = torch.full((3, 8), 1e-3, device=DEVICE)
    w = torch.ones(8, device=DEVICE)
    small = mods["rms", False](x, w, 1e-12)
    big = mods["rms", False](x, w, 1.0)
    assert rel(small, torch.ones(3, 8, dtype=torch.float64, device=DEVICE)) < 1e-4
    assert rel(big, (x / (1e-6 + 1.0) ** 0.5).double()) < 1e-4


def test_parameter_gradients_are_deterministic(mods):
    torch.manual_seed(5)
    args = make_args("layer", True, (9, 7, 40))
    cot = torch.randn(9, 7, 40, device=DEVICE)
    runs = []
    for _ in range(2):
        y, _s = mods["layer", True](*args, 1e-5)
        runs.append(torch.autograd.grad(y, args[2:], cot))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_empty_rows(mods):
    x = torch.empty(0, 16, device=DEVICE, requires_grad=True)
    w = torch.ones(16, device=DEVICE, requires_grad=True)
    y = mods["rms", False](x, w, 1e-6)
    (gx, gw) = torch.autograd.grad(y.sum(), [x, w])
    assert (
        y.shape == (0, 16)
        and gx.shape == (0, 16)
        and torch.equal(gw, torch.zeros(16, device=DEVICE))
    )


@pytest.mark.gpu
@pytest.mark.parametrize("kind,residual", HOOKS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 1000, 768), (3, 77, 4095)])
def test_norm_gpu(mods, kind, residual, dtype, shape):
    torch.manual_seed(0)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    check(mods[kind, residual], kind, residual, shape, 1e-5, dtype=dtype, device="cuda", tol=tol)
