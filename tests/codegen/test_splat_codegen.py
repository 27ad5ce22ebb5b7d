"""splat_attention (SPEC §3.1) on its generated chunked-scan kernels: forward and every gradient
(x, wa, wv, wo, centers, log_scale, log_amp) against the float64 reference path, causal and not,
normalize true and false, N = 1, lengths spanning several interpreter chunks (16 positions) and
not a multiple of them, one splat, one and several heads, head widths that are not powers of two
(40: several column blocks); the fragment on separate and strided projections; the causality
perturbation test bit for bit; and on a GPU, float32 and bfloat16, the perturbation test on the
compiled kernels, and a 65,536-token sequence against a float64 chunked reference on slices."""

from __future__ import annotations

import copy

import pytest
import torch
from sparkc.runtime.reference.splat import splat_responsibilities
from sparkc.runtime.reference.splat_chunked import splat_mix

from sparkc import api

SRC = """
model M(d = {d}) {{
  input x: float[B, N, d]
  y = splat_attention(x, splats={k}, heads={h}, causal={causal}, normalize={normalize})
  output y
}}
"""
NAMES = ("x", "centers", "log_scale", "log_amp", "wa.weight", "wv.weight", "wo.weight")


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-3 * max(1, b.numel()) ** 0.5))


def _pair(d, k, h, causal, normalize, device="cpu"):
    flags = {"causal": str(causal).lower(), "normalize": str(normalize).lower()}
    m = api.load_source(SRC.format(d=d, k=k, h=h, **flags), "splat.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double()
    with torch.no_grad():  # log_amp away from its zero init, so every splat weighs differently
        ref.get_parameter("y.log_amp").copy_(torch.randn(h, k, dtype=torch.float64))
        ref.get_parameter("y.log_scale").add_(0.3 * torch.randn(h, k, dtype=torch.float64))
    tri = m.Model(impl="triton")
    tri.load_state_dict(ref.state_dict())
    return ref.to(device), tri.to(device)


def _grads(model, x, w):
    x = x.clone().requires_grad_(True)
    model.zero_grad()
    y = model(x=x).y
    (y.double() * w).sum().backward()
    params = dict(model.named_parameters())
    return y, [x.grad] + [params[f"y.{n}"].grad for n in NAMES[1:]]


def _check(ref, tri, b, n, d, dtype, tol, seed=0, device="cpu"):
    """float32: every value within `tol` of the float64 reference. A half dtype: within twice
    eager PyTorch's own error in that dtype (the reference path run in it) plus `tol`, the
    project's bar for low precision (docs/kernels/bounds.md, "Low-precision gradients")."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(b, n, d, generator=g, dtype=torch.float64).to(device)
    tri.to(dtype)
    yr, gr = _grads(ref, x, w)
    yt, gt = _grads(tri, x.to(dtype), w)
    if dtype == torch.float32:
        bars = [tol] * (1 + len(NAMES))
    else:
        ye, ge = _grads(copy.deepcopy(ref).to(dtype), x.to(dtype), w)
        bars = [2 * _rel(e, c) + tol for e, c in zip([ye, *ge], [yr, *gr])]
    assert torch.isfinite(yt).all()
    assert _rel(yt, yr) < bars[0], ("y", _rel(yt, yr), bars[0])
    for name, a, c, bar in zip(NAMES, gt, gr, bars[1:]):
        assert a is not None and torch.isfinite(a).all(), name
        assert _rel(a, c) < bar, (name, _rel(a, c), bar)


CASES = [  # (d, splats, heads, batch, N)
    (8, 3, 2, 2, 37),  # three interpreter chunks, the last one partial
    (6, 5, 1, 1, 16),  # exactly one chunk; head width 6 padded to 16
    (8, 1, 2, 1, 5),  # one splat: φ ≡ 1
    (12, 4, 3, 2, 1),  # N = 1, head width 4
    (40, 3, 1, 1, 21),  # head width 40: three column blocks of 16, the last one partial
]


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "global"])
@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "d{}k{}h{}b{}n{}".format(*c))
def test_splat_kernels_match_float64_reference(case, causal, normalize):
    d, k, h, b, n = case
    ref, tri = _pair(d, k, h, causal, normalize)
    _check(ref, tri, b, n, d, torch.float32, 1e-4)


@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
def test_splat_kernels_are_causal_bit_for_bit(normalize):
    _, tri = _pair(8, 3, 2, True, normalize)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 37, 8, generator=g)
    y = tri(x=x).y
    for t in (15, 16, 20):  # the end of a chunk, the start of one, the middle of one
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn(2, 36 - t, 8, generator=g) * 5
        y2 = tri(x=changed).y
        assert torch.equal(y[:, : t + 1], y2[:, : t + 1]), t
        assert not torch.equal(y[:, t + 1 :], y2[:, t + 1 :])


def test_splat_non_causal_mixes_the_future():
    _, tri = _pair(8, 3, 2, False, True)
    x = torch.randn(1, 20, 8)
    changed = x.clone()
    changed[:, -1] += 1.0
    assert not torch.equal(tri(x=x).y[:, 0], tri(x=changed).y[:, 0])


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "global"])
def test_splat_fragment_takes_separate_and_strided_projections(causal):
    """The fragment alone, on u and v that are not column blocks of one buffer (v a strided
    view): the same mixing and gradients as the float64 chunked reference."""
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    text = render("prelude.py.jinja", version="t", source_name="t") + render(
        "splat_attention.py.jinja", name="spl", causal=causal, normalize=True
    )
    fn = load_source(f"splat_fragment_{int(causal)}", text).spl
    g = torch.Generator().manual_seed(5)
    b, n, h, d, k = 2, 19, 2, 5, 3
    u = torch.randn(b, n, h, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, n, d, generator=g, dtype=torch.float64).transpose(1, 2)
    cen = torch.randn(h, k, d, generator=g, dtype=torch.float64)
    ls = 0.3 * torch.randn(h, k, generator=g, dtype=torch.float64) + 0.8
    la = torch.randn(h, k, generator=g, dtype=torch.float64)
    w = torch.randn(b, n, h, d, generator=g, dtype=torch.float64)
    leaves64 = [t.clone().requires_grad_(True) for t in (u, v, cen, ls, la)]
    leaves32 = [t.float().requires_grad_(True) for t in (u, v, cen, ls, la)]
    leaves32[1] = v.float().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)
    assert not leaves32[1].is_contiguous()
    uu, vv, cc, ll, aa = leaves64
    phi = splat_responsibilities(uu, cc, ll, aa)
    want = splat_mix(phi, vv.transpose(1, 2), causal, True).transpose(1, 2)
    got = fn(*leaves32)
    assert _rel(got, want) < 1e-5
    (want * w).sum().backward()
    (got * w.float()).sum().backward()
    for name, a, c in zip(("u", "v", "centers", "log_scale", "log_amp"), leaves32, leaves64):
        assert _rel(a.grad, c.grad) < 1e-4, (name, _rel(a.grad, c.grad))


def test_splat_forward_keeps_o_residual_only_for_a_backward():
    """In 16-bit, the normalised forward stores o's rounding residual for the backward's δ only
    when it saves for a backward; a forward without gradients returns the same o without it."""
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    text = render("prelude.py.jinja", version="t", source_name="t") + render(
        "splat_attention.py.jinja", name="spl", causal=True, normalize=True
    )
    mod = load_source("splat_fragment_save", text)
    g = torch.Generator().manual_seed(2)
    b, n, h, d, k = 1, 11, 2, 4, 3
    u, v = (torch.randn(b, n, h, d, generator=g).half() for _ in range(2))
    cen = torch.randn(h, k, d, generator=g).half()
    ls, la = (0.3 * torch.randn(h, k, generator=g).half() for _ in range(2))
    o, o_lo = mod.spl_fwd(u, v, cen, ls, la)[:2]
    o2, none = mod.spl_fwd(u, v, cen, ls, la, save=False)[:2]
    assert o_lo is not None and none is None
    assert torch.equal(o, o2)
    assert o_lo.abs().max() > 0  # the residual is there to keep
    with torch.no_grad():
        assert torch.equal(mod.spl(u, v, cen, ls, la), o)


# GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 1.2e-2)])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "global"])
@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
def test_splat_kernels_on_gpu(dtype, tol, causal, normalize):
    ref, tri = _pair(256, 64, 2, causal, normalize, device="cuda")
    for b, n in [(2, 37), (1, 64), (2, 1000)]:
        _check(ref, tri, b, n, 256, dtype, tol, seed=n, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
def test_splat_kernels_are_causal_bit_for_bit_on_gpu(normalize):
    """Compiled kernels, bfloat16, chunks of 64: outputs up to t unchanged by any later input."""
    _, tri = _pair(256, 64, 2, True, normalize, device="cuda")
    tri.to(torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(3)
    x = torch.randn(2, 300, 256, generator=g, device="cuda", dtype=torch.bfloat16)
    y = tri(x=x).y
    for t in (63, 64, 150, 298):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn(
            2, 299 - t, 256, generator=g, device="cuda", dtype=torch.bfloat16
        )
        y2 = tri(x=changed).y
        assert torch.equal(y[:, : t + 1], y2[:, : t + 1]), t
        assert not torch.equal(y[:, t + 1 :], y2[:, t + 1 :])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_splat_long_sequence_on_gpu(dtype):
    """N = 65,536, D = 1024, 8 heads, 64 splats: the forward and the gradients are finite, and
    the kernel's mixing output agrees with the float64 chunked reference on the first 2,048
    positions of each batch row (the causal prefix needs nothing later) and on a late slice
    computed from the float64 state of the whole prefix."""
    n, d, h, k = 65536, 1024, 8, 64
    _, tri = _pair(d, k, h, True, True, device="cuda")
    tri.to(dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1, n, d, generator=g, device="cuda", dtype=dtype).requires_grad_(True)
    y = tri(x=x).y
    assert torch.isfinite(y).all()
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in tri.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    p = {name[2:]: q.detach().double() for name, q in tri.named_parameters()}
    with torch.no_grad():
        xd = x.detach().double()
        u = (xd @ p["wa.weight"].T).view(1, n, h, d // h)
        v = (xd @ p["wv.weight"].T).view(1, n, h, d // h).transpose(1, 2)
        phi = splat_responsibilities(u, p["centers"], p["log_scale"], p["log_amp"])
        o = splat_mix(phi, v, True, True).transpose(1, 2).reshape(1, n, d)
        want = o @ p["wo.weight"].T
        tol = 2e-3 if dtype == torch.float32 else 6e-2
        for lo, hi in [(0, 2048), (n - 2048, n)]:
            assert _rel(y[:, lo:hi], want[:, lo:hi]) < tol, (lo, _rel(y[:, lo:hi], want[:, lo:hi]))
