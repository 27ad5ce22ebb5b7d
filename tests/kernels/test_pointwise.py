"""Numerics of the fused pointwise template and the deterministic sum-reduction template.

Without CUDA the kernels run under the Triton interpreter in float32 and are compared with a
float64 torch evaluation of the same expression program; broadcasting layouts (scalars, rows,
columns, transposed views, more than four dims) and lengths that are not block multiples are
covered. GPU tests (bfloat16 and a large tensor) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest
from sparkc.runtime import launch
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PRELUDE = render("prelude.py.jinja", version="test", source_name="test_pointwise")

# The program under test: a gated, scaled SiLU of a broadcast sum, plus a second output.
PROGRAM = {
    "inputs": ["a", "b", "c"],
    "body": ["t0 = a + b", "t1 = t0 * tl.sigmoid(t0)", "t2 = t1 * c * alpha", "t3 = t0 - c"],
    "outputs": [("y", "t2"), ("z", "t3")],
    "scalars": ["alpha"],
}


def program_ref(a, b, c, alpha):
    t0 = a + b
    return t0 * torch.sigmoid(t0) * c * alpha, t0 - c


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


@pytest.fixture(scope="module")
def mod():
    text = PRELUDE + render("primitives_pointwise.py.jinja", name="pw", **PROGRAM) + "\n\n"
    text += render(
        "primitives_reduce.py.jinja",
        name="sq_err",
        mode="all",
        inputs=["p", "q"],
        body=["t0 = (p - q) * (p - q)"],
        value="t0",
    )
    text += "\n\n" + render(
        "primitives_reduce.py.jinja",
        name="colsum",
        mode="leading",
        inputs=["g"],
        body=[],
        value="g",
    )
    text += "\n\n" + render(
        "primitives_reduce.py.jinja",
        name="expsum",
        mode="all",
        inputs=["g"],
        body=["t0 = tl.exp(g)"],
        value="t0",
    )
    return load_source("test_pointwise_mod", text)


SHAPES = [
    # (a, b, c): same-shape flat, row/column broadcast, scalar, 0-d, odd sizes
    ((33,), (33,), (33,)),
    ((2, 7, 24), (24,), (2, 7, 1)),
    ((3, 1, 5), (1, 4, 1), ()),
    ((1,), (1,), (1,)),
    ((65,), (1,), (65,)),
    ((2, 3, 4, 5, 6), (3, 1, 5, 1), (6,)),
]


@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: "x".join(map(str, s[0])))
def test_pointwise_broadcast(mod, shapes):
    torch.manual_seed(0)
    a, b, c = (torch.randn(s, device=DEVICE) for s in shapes)
    y, z = mod.pw(a, b, c, 0.75)
    ry, rz = program_ref(a.double(), b.double(), c.double(), 0.75)
    assert y.shape == ry.shape and z.shape == rz.shape
    assert rel(y, ry) < 1e-5 and rel(z, rz) < 1e-5


def test_pointwise_strided_views(mod):
    torch.manual_seed(1)
    a = torch.randn(5, 9, device=DEVICE).t()  # non-contiguous
    b = torch.randn(9, 10, device=DEVICE)[:, ::2]  # strided slice
    c = torch.randn(9, 5, device=DEVICE)
    y, z = mod.pw(a, b, c, -1.5)
    ry, rz = program_ref(a.double(), b.double(), c.double(), -1.5)
    assert rel(y, ry) < 1e-5 and rel(z, rz) < 1e-5


def test_pointwise_launch_into_given_outputs_and_dtype(mod):
    a = torch.arange(6.0, device=DEVICE).reshape(2, 3)
    one = torch.ones(3, device=DEVICE)
    y = torch.full((2, 3), 7.0, device=DEVICE)
    z = torch.full((2, 3), 7.0, device=DEVICE)
    mod.pw_launch([a, one, one], [y, z], 2.0)
    ry, rz = program_ref(a.double(), one.double(), one.double(), 2.0)
    assert rel(y, ry) < 1e-6 and rel(z, rz) < 1e-6
    y64, _ = mod.pw(a.double(), one, one, 1.0, out_dtype=torch.float64)
    assert y64.dtype == torch.float64
    ints = torch.arange(4, device=DEVICE)
    yi, zi = mod.pw(ints, ints, ints, 1.0)  # integer inputs give float32 outputs
    assert yi.dtype == torch.float32 and torch.equal(zi, ints.float())


def test_pointwise_empty(mod):
    e = torch.empty(0, 3, device=DEVICE)
    y, z = mod.pw(e, e, e, 1.0)
    assert y.shape == (0, 3) and z.shape == (0, 3)


def test_collapse_dims_merges_contiguous_and_pads():
    sizes, strides = launch.collapse_dims((2, 3, 4), [(12, 4, 1), (0, 0, 1)])
    assert sizes == [1, 1, 6, 4] and strides == [[0, 0, 4, 1], [0, 0, 0, 1]]
    sizes, strides = launch.collapse_dims((2, 3, 4), [(12, 4, 1)])
    assert sizes == [1, 1, 1, 24] and strides == [[0, 0, 0, 1]]
    assert launch.collapse_dims((2, 3, 2, 3, 2), [(100, 1, 7, 50, 13)]) is None


@pytest.mark.parametrize("n", [1, 7, 33, 100])
def test_reduce_all_mean_squared_error(mod, n):
    torch.manual_seed(n)
    p = torch.randn(3, n, device=DEVICE)
    q = torch.randn(n, device=DEVICE)
    out = mod.sq_err(p, q, scale=1.0 / p.numel())
    ref = ((p.double() - q.double()) ** 2).mean()
    assert out.shape == () and rel(out, ref) < 1e-5
    # Masked lanes never contribute, even when the program maps 0 to a non-zero value.
    e = mod.expsum(p)
    assert rel(e, p.double().exp().sum()) < 1e-5


@pytest.mark.parametrize("shape", [(1, 1), (7, 24), (3, 11, 40), (2, 33, 5)])
def test_reduce_leading_bias_gradient(mod, shape):
    torch.manual_seed(sum(shape))
    g = torch.randn(shape, device=DEVICE)
    out = mod.colsum(g)
    ref = g.double().reshape(-1, shape[-1]).sum(0)
    assert out.shape == (shape[-1],) and rel(out, ref) < 1e-5


def test_reduce_is_deterministic(mod):
    g = torch.randn(9, 37, device=DEVICE)
    assert torch.equal(mod.colsum(g), mod.colsum(g))
    assert torch.equal(mod.sq_err(g, g.sum(0)), mod.sq_err(g, g.sum(0)))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pointwise_gpu(mod, dtype):
    torch.manual_seed(0)
    a = torch.randn(64, 1024, 257, device="cuda", dtype=dtype)
    b = torch.randn(257, device="cuda", dtype=dtype)
    c = torch.randn(64, 1024, 1, device="cuda", dtype=dtype)
    y, z = mod.pw(a, b, c, 0.5)
    ry, rz = program_ref(a.double(), b.double(), c.double(), 0.5)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert y.dtype == dtype and rel(y, ry) < tol and rel(z, rz) < tol
    out = mod.sq_err(a, c, scale=1.0 / a.numel())
    assert rel(out, ((a.double() - c.double()) ** 2).mean()) < tol
    s = mod.colsum(a)
    assert rel(s, a.double().reshape(-1, 257).sum(0)) < tol
