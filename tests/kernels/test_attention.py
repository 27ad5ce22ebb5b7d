"""Numerics of the flash-attention family (`codegen_templates/attention.py.jinja`).

Without CUDA the kernels run under the Triton interpreter in float32 and are compared, forward and
backward (the `.grad` of q, k, v and gains), with a float64 reference written here from SPEC §1.1
and §5.5 with explicit masking, RoPE and basis atoms (Legendre polynomials from numpy, not from the
recurrence the kernel uses). The reference is cross-checked once against torch's
`scaled_dot_product_attention`. GPU tests (float32 and bfloat16 at N=1000) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools
import math

import numpy as np
import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BASES = {
    None: None,
    "distance": {"freqs": 2, "legendre": 3, "over": "distance", "max_len": 40},
    "key": {"freqs": 3, "legendre": 2, "over": "key", "max_len": 48},
    # The low-rank form of the distance bias (BLOCK_M + BLOCK_N = 32 within its spread bound:
    # max_len / 2 up to 4 Legendre atoms, max_len / 4 up to 6); "distance" above is too short
    # for it and keeps the per-element form.
    "distance_lr": {"freqs": 2, "legendre": 3, "over": "distance", "max_len": 80},
    "distance_l6": {"freqs": 1, "legendre": 6, "over": "distance", "max_len": 128},
    "distance_f0": {"freqs": 0, "legendre": 4, "over": "distance", "max_len": 64},
    "distance_l0": {"freqs": 3, "legendre": 0, "over": "distance", "max_len": 24},
}


# SPEC §5.5: N ≤ max_len (the module checks it); the GPU tests run N = 1000.
GPU_BASES = {
    None: None,
    "distance": {"freqs": 4, "legendre": 4, "over": "distance", "max_len": 1024},
    "key": {"freqs": 3, "legendre": 2, "over": "key", "max_len": 1500},
    "distance_lr": {"freqs": 2, "legendre": 3, "over": "distance", "max_len": 1000},
    "distance_l6": {"freqs": 1, "legendre": 6, "over": "distance", "max_len": 1024},
    "distance_f0": {"freqs": 0, "legendre": 4, "over": "distance", "max_len": 1024},
    "distance_l0": {"freqs": 3, "legendre": 0, "over": "distance", "max_len": 1000},
}


def bases():
    return GPU_BASES if DEVICE == "cuda" else BASES


def context(causal, group, rope, basis, layout="bnhd"):
    return {
        "name": f"attn_c{int(causal)}_g{group}_r{int(rope)}_b{basis or 'none'}_{layout}",
        "causal": causal,
        "group": group,
        "rope": rope,
        "rope_base": 10000.0,
        "basis": bases()[basis],
        "layout": layout,
    }


def build_module(causal, group, rope, basis, layout="bnhd"):
    # One module per configuration however the arguments are spelled (lru_cache keys
    # build_module(..., None) and build_module(..., None, "bnhd") apart): tests monkeypatch it.
    return _build_module(causal, group, rope, basis, layout)


@functools.cache
def _build_module(causal, group, rope, basis, layout):
    ctx = context(causal, group, rope, basis, layout)
    prelude = render("prelude.py.jinja", version="test", source_name="test_attention")
    module = load_source(ctx["name"], prelude + "\n\n" + render("attention.py.jinja", **ctx))
    return module, ctx["name"]


def build(causal, group, rope, basis, layout="bnhd"):
    module, name = build_module(causal, group, rope, basis, layout)
    return getattr(module, name), getattr(module, name + "_forward_lse")


# ---- float64 reference -------------------------------------------------------------------------


def rope_ref(x, positions, base):
    """Rotate-half RoPE of x [B, N, H, d] (SPEC §1 `rope`), positions [N]."""
    d = x.shape[-1]
    half = d // 2
    theta = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / d)
    ang = positions.to(torch.float64)[:, None] * theta[None, :]
    cos, sin = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def atoms_ref(spec, qpos, kpos):
    """The §5.5 atoms [A, Nq, Nk] in SPEC order, Legendre polynomials from numpy."""
    if spec["over"] == "distance":
        x = (qpos[:, None] - kpos[None, :]).abs().to(torch.float64) / spec["max_len"]
    else:
        x = (kpos.to(torch.float64) / spec["max_len"])[None, :].expand(len(qpos), len(kpos))
    out = [torch.sin(math.pi * f * x) for f in range(1, spec["freqs"] + 1)]
    out += [torch.cos(math.pi * f * x) for f in range(1, spec["freqs"] + 1)]
    y = (2 * x - 1).numpy()
    for n in range(1, spec["legendre"] + 1):
        coef = np.zeros(n + 1)
        coef[n] = 1.0
        out.append(torch.from_numpy(np.polynomial.legendre.legval(y, coef)))
    return torch.stack(out)


def reference(q, k, v, gains, causal, rope, basis, q_offset=0, k_offset=0):
    """o [B, Nq, H, d] in float64 for bnhd inputs."""
    q, k, v = (t.to("cpu", torch.float64) for t in (q, k, v))
    nq, h, d = q.shape[1], q.shape[2], q.shape[3]
    nk, kv = k.shape[1], k.shape[2]
    qpos = torch.arange(nq) + q_offset
    kpos = torch.arange(nk) + k_offset
    if rope:
        q, k = rope_ref(q, qpos, 10000.0), rope_ref(k, kpos, 10000.0)
    k = k.repeat_interleave(h // kv, dim=2)
    v = v.repeat_interleave(h // kv, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)
    if basis is not None:
        atoms = atoms_ref(bases()[basis], qpos, kpos)
        s = s + torch.einsum("ha,aij->hij", gains.to("cpu", torch.float64), atoms)
    if causal:
        s = s.masked_fill(kpos[None, :] > qpos[:, None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    lse = torch.logsumexp(s, dim=-1)
    return torch.einsum("bhij,bjhd->bihd", p, v), lse


def make_inputs(b, nq, nk, h, kv, d, basis, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, nq, h, d, generator=g)
    k = torch.randn(b, nk, kv, d, generator=g)
    v = torch.randn(b, nk, kv, d, generator=g)
    gains = None
    if basis is not None:
        spec = bases()[basis]
        gains = torch.randn(h, 2 * spec["freqs"] + spec["legendre"], generator=g)
    out = [t.to(DEVICE, dtype).requires_grad_(True) for t in (q, k, v)]
    if gains is not None:
        gains = gains.to(DEVICE).requires_grad_(True)
    return (*out, gains)


def rel(a, b):
    """‖a − b‖ / ‖b‖, with ‖b‖ floored at 1: some exact gradients vanish (dq, dk at N = 1, where
    softmax over one key is constant), and there the kernel's rounding noise is the error."""
    a, b = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    return ((a - b).norm() / b.norm().clamp_min(1.0)).item()


def check(causal, group, rope, basis, b, n, d, nk=None, q_offset=0, k_offset=0, tol=1e-4):
    kv = 2 if group == 2 else 4
    h = kv * group
    nk = n if nk is None else nk
    _fn, fn_lse = build(causal, group, rope, basis)
    q, k, v, gains = make_inputs(b, n, nk, h, kv, d, basis)
    o, lse = fn_lse(q, k, v, gains, q_offset, k_offset)
    assert o.shape == q.shape and o.dtype == q.dtype
    assert lse.shape == (b, h, n) and lse.dtype == torch.float32
    ins = [q, k, v] + ([gains] if gains is not None else [])
    ref_ins = [t.detach().to("cpu", torch.float64).requires_grad_(True) for t in ins]
    ref_o, ref_lse = reference(
        *ref_ins[:3],
        ref_ins[3] if gains is not None else None,
        causal,
        rope,
        basis,
        q_offset,
        k_offset,
    )
    assert rel(o, ref_o) < tol, rel(o, ref_o)
    assert rel(lse, ref_lse) < tol
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    (o * do.to(o.device, o.dtype)).sum().backward()
    (ref_o * do.to(torch.float64)).sum().backward()
    for name, got, want in zip("qkvg", ins, ref_ins):
        assert got.grad is not None, name
        err = rel(got.grad, want.grad)
        assert err < tol, (name, err)


# ---- interpreter numerics ----------------------------------------------------------------------


def test_reference_matches_sdpa():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 9, 4, 16, generator=g, dtype=torch.float64) for _ in range(3))
    for causal in (False, True):
        ours, _ = reference(q, k, v, None, causal, False, None)
        sdpa = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
        )
        assert rel(ours, sdpa.transpose(1, 2)) < 1e-12


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [1, 7, 33])
def test_plain(causal, n):
    check(causal, 1, False, None, b=2, n=n, d=16)


@pytest.mark.parametrize("causal", [False, True])
def test_gqa_group2_head32(causal):
    check(causal, 2, False, None, b=1, n=33, d=32)


@pytest.mark.parametrize("causal,group", [(True, 1), (False, 2)])
def test_rope(causal, group):
    check(causal, group, True, None, b=1, n=33, d=16)


@pytest.mark.parametrize("d", [16, 24])
def test_rope_offsets(d):
    # d = 16: the kernels rotate dq, dk back as they store them; d = 24 (tile 32): a launch
    # rotates float32 gradients back after them. Both at shifted query and key positions.
    check(True, 2, True, None, b=2, n=19, d=d, nk=26, q_offset=9, k_offset=2)


@pytest.mark.parametrize("d", [16, 24])
def test_rope_gradients_are_column_blocks(d):
    # q, k, v as column blocks of one projection buffer: dq, dk, dv come back as the same blocks
    # of one new buffer (what the fused projection's backward reads without a copy), whichever
    # way RoPE's inverse is applied, and equal to the gradients of separate tensors.
    fn, _ = build(True, 2, True, None)
    b, n, kv, h = 1, 21, 2, 4
    buf = torch.randn(b, n, (h + 2 * kv) * d, generator=torch.Generator().manual_seed(4))
    buf = buf.to(DEVICE)
    views = buf.split([h * d, kv * d, kv * d], -1)
    q, k, v = (t.view(b, n, -1, d).requires_grad_(True) for t in (x.clone() for x in views))
    qs, ks, vs = (
        t.view(b, n, -1, d)
        for t in buf.detach().requires_grad_(True).split([h * d, kv * d, kv * d], -1)
    )
    do = torch.randn(b, n, h, d, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    grads = torch.autograd.grad((fn(qs, ks, vs) * do).sum(), (qs, ks, vs))
    base = grads[0].data_ptr()
    size = grads[0].element_size()
    assert [g.data_ptr() for g in grads] == [base, base + h * d * size, base + (h + kv) * d * size]
    want = torch.autograd.grad((fn(q, k, v) * do).sum(), (q, k, v))
    for got, ref in zip(grads, want):
        assert torch.equal(got, ref)


@pytest.mark.parametrize("basis", ["distance", "key"])
@pytest.mark.parametrize("causal", [False, True])
def test_basis(basis, causal):
    check(
        causal, 2 if causal else 1, False, basis, b=2 if causal else 1, n=33 if causal else 7, d=16
    )


LOWRANK = ["distance_lr", "distance_l6", "distance_f0", "distance_l0"]


@pytest.mark.parametrize("basis", LOWRANK)
@pytest.mark.parametrize("causal", [False, True])
def test_basis_low_rank(basis, causal):
    # Forward, dQ and dK/dV with the bias as U Vᵀ, and the gains gradient through V; the
    # non-causal case has tiles on both sides of the diagonal and across it.
    check(causal, 2 if causal else 1, False, basis, b=1, n=37 if causal else 23, d=16)


@pytest.mark.parametrize("basis,low_rank", [("distance_lr", True), ("distance", False)])
def test_basis_form_follows_the_spread_bound(monkeypatch, basis, low_rank):
    # With max_len 80 every kernel takes the low-rank form (16 + 16 ≤ 80 / 2) and never
    # evaluates an atom per score; with max_len 40 (16 + 16 > 20) every kernel keeps the
    # per-element form.
    module, name = build_module(True, 1, False, basis)
    calls = {"lr_key": 0, "basis_bias": 0, "basis_grad_rows": 0}
    for helper in calls:
        fn = getattr(module, f"{name}_{helper}")

        def counted(*args, _fn=fn, _helper=helper, **kwargs):
            calls[_helper] += 1
            return _fn(*args, **kwargs)

        monkeypatch.setattr(module, f"{name}_{helper}", counted)
    check(True, 1, False, basis, b=1, n=20, d=16)
    if low_rank:
        assert calls["lr_key"] > 0 and calls["basis_bias"] == calls["basis_grad_rows"] == 0
    else:
        assert calls["lr_key"] == 0 and calls["basis_bias"] > 0 and calls["basis_grad_rows"] > 0


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tiles", [((16, 16), (32, 32)), ((32, 32), (16, 16))])
def test_basis_forms_mixed_between_kernels(monkeypatch, causal, tiles):
    # The dK/dV programs own the sin/cos atoms' gains gradient and the dQ programs the Legendre
    # atoms', whichever form each kernel's tile takes: with max_len 80 (spread 40) a 16 x 16 tile
    # takes the low-rank form and a 32 x 32 one the per-element form, so here the two kernels
    # differ, both ways round, and no atom is counted twice or lost.
    module, name = build_module(causal, 1, False, "distance_lr")
    by_kernel = {"dkdv": tiles[0], "dq": tiles[1]}
    monkeypatch.setattr(
        module, name + "_config", lambda kernel, *a: (*by_kernel.get(kernel, (16, 16)), 1, 1)
    )
    check(causal, 1, False, "distance_lr", b=1, n=37, d=16)


def test_low_rank_decoding_offsets():
    # Queries at positions 12.. against keys from 0 (a decode step's shape), RoPE and GQA.
    check(True, 2, True, "distance_lr", b=1, n=5, d=16, nk=17, q_offset=12)
    check(False, 2, False, "distance_lr", b=1, n=5, d=16, nk=17, q_offset=12)


def test_everything_together():
    check(True, 2, True, "distance", b=2, n=33, d=32)


def test_padded_head_width():
    # d = 24 is not a power of two: loads and stores are masked to BLOCK_D = 32.
    check(True, 1, True, "key", b=1, n=7, d=24)


@pytest.mark.parametrize("causal,q_offset", [(False, 12), (True, 12), (True, 14)])
def test_offsets_and_unequal_lengths(causal, q_offset):
    # Decoding shape: 5 new queries at positions q_offset.. against every key from position 0.
    check(causal, 2, True, "distance", b=1, n=5, d=16, nk=q_offset + 5, q_offset=q_offset)


@pytest.mark.parametrize("blocks", [(16, 32), (32, 16)])
def test_non_square_blocks(monkeypatch, blocks):
    # The causal block-skipping bounds depend on BLOCK_M and BLOCK_N separately.
    module, name = build_module(True, 2, False, "distance")
    monkeypatch.setattr(module, name + "_config", lambda *args: (*blocks, 1, 1))
    check(True, 2, False, "distance", b=1, n=35, d=16, nk=40, q_offset=5)


# (causal, group, rope, basis, b, n, d, nk, q_offset) for the one-launch backward.
FUSED_CASES = [
    (True, 1, False, None, 2, 33, 16, None, 0),
    (False, 2, False, None, 1, 33, 32, None, 0),
    (True, 2, True, "distance", 1, 35, 16, 40, 5),
    (True, 2, False, "distance_lr", 1, 35, 16, 40, 5),
    (False, 1, False, "key", 1, 7, 16, None, 0),
    (True, 2, False, "key", 2, 33, 16, None, 0),
]


@pytest.mark.parametrize("tiles", [(16, 16, 16, 16), (16, 32, 32, 16)], ids=["square", "flex"])
@pytest.mark.parametrize("case", FUSED_CASES, ids=lambda c: f"c{int(c[0])}g{c[1]}{c[3] or ''}")
def test_one_launch_backward(monkeypatch, case, tiles):
    # NAME_bwd_fused_kernel: dK/dV programs and dQ programs side by side in one grid.
    causal, group, rope, basis, b, n, d, nk, q_offset = case
    module, name = build_module(causal, group, rope, basis)
    monkeypatch.setattr(module, name + "_BWD_MODE", ("fused", *tiles, 1, 1))
    check(causal, group, rope, basis, b=b, n=n, d=d, nk=nk, q_offset=q_offset)


def test_one_launch_backward_is_bitwise_the_two_kernels(monkeypatch):
    # Same tiles, same arithmetic, same order of every sum: identical gradients, gains included.
    module, name = build_module(True, 2, False, "distance")
    grads = {}
    for plan in [("split", [16, 32, 1, 1], [32, 16, 1, 1]), ("fused", 16, 32, 32, 16, 1, 1)]:
        monkeypatch.setattr(module, name + "_BWD_MODE", plan)
        fn, _ = build(True, 2, False, "distance")
        q, k, v, gains = make_inputs(1, 35, 40, 4, 2, 16, "distance", seed=5)
        fn(q, k, v, gains, 5, 0).square().sum().backward()
        grads[plan[0]] = [t.grad.clone() for t in (q, k, v, gains)]
    for got, want in zip(grads["fused"], grads["split"]):
        assert torch.equal(got, want)


def test_rows_that_see_no_key_are_finite():
    # Queries at positions 0..6 against keys at 10..16: causally nothing is visible.
    _fn, fn_lse = build(True, 1, False, None)
    q, k, v, _ = make_inputs(1, 7, 7, 4, 4, 16, None)
    o, lse = fn_lse(q, k, v, None, 0, 10)
    assert torch.equal(o, torch.zeros_like(o))
    assert torch.isinf(lse).all() and (lse > 0).all()
    o.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all() and not t.grad.any()


def test_bhnd_layout_matches_bnhd():
    fn, _ = build(True, 2, True, None, "bhnd")
    q, k, v, _ = make_inputs(1, 7, 7, 4, 2, 16, None)
    o = fn(
        q.transpose(1, 2).contiguous(),
        k.transpose(1, 2).contiguous(),
        v.transpose(1, 2).contiguous(),
    )
    ref, _ = reference(q, k, v, None, True, True, None)
    assert rel(o.transpose(1, 2), ref) < 1e-4


@pytest.mark.parametrize("plan", ["split", "fused"])
@pytest.mark.parametrize("group", [1, 2], ids=["mha", "gqa"])
def test_strided_views_from_a_fused_projection(monkeypatch, plan, group, patch_runtime):
    # q, k, v as the adjacent column blocks of one [B·N, (H + 2·KV)·d] buffer (what the fused
    # q/k/v projection returns): only the head dim needs unit stride. The gradients land in the
    # same blocks of one new buffer (launch.grads_like), in either backward plan.
    from sparkc.runtime import launch

    module, name = build_module(True, group, False, None)
    if plan == "fused":
        monkeypatch.setattr(module, name + "_BWD_MODE", ("fused", 16, 32, 32, 16, 1, 1))
    fn = getattr(module, name)
    h, kv, d, n = 4, 4 // group, 16, 19
    g = torch.Generator().manual_seed(5)
    qkv = torch.randn(2 * n, (h + 2 * kv) * d, generator=g, dtype=torch.float64)
    widths = [h * d, kv * d, kv * d]
    starts = [0, h * d, (h + kv) * d]
    shared = []
    real = launch.grads_like
    patch_runtime("grads_like", lambda *t, **kw: shared.append(real(*t, **kw)) or shared[-1])

    def blocks(t):
        heads = [h, kv, kv]
        return [t[:, s : s + w].view(2, n, nh, d) for s, w, nh in zip(starts, widths, heads)]

    leaf = qkv.float().requires_grad_(True)
    o = fn(*blocks(leaf))
    ref_leaf = qkv.clone().requires_grad_(True)
    ref, _ = reference(*blocks(ref_leaf), None, True, False, None)
    assert rel(o, ref) < 1e-4
    dout = torch.randn(o.shape, generator=g, dtype=torch.float64)
    o.backward(dout.float())
    ref.backward(dout)
    assert rel(leaf.grad, ref_leaf.grad) < 1e-4
    dq, dk, dv = shared[0]
    assert dk.data_ptr() == dq.data_ptr() + widths[0] * dq.element_size()
    assert dv.data_ptr() == dk.data_ptr() + widths[1] * dq.element_size()


def test_causal_perturbation_is_bit_exact():
    # SPEC §6.2: changing q, k, v at positions > t leaves outputs ≤ t bit-identical.
    fn, _ = build(True, 2, True, "distance")
    q, k, v, gains = make_inputs(1, 33, 33, 4, 2, 16, "distance")
    t = 19
    with torch.no_grad():
        base = fn(q, k, v, gains)
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        for x in (q2, k2, v2):
            x[:, t + 1 :] = torch.randn_like(x[:, t + 1 :]) * 5
        moved = fn(q2, k2, v2, gains)
    assert torch.equal(base[:, : t + 1], moved[:, : t + 1])
    assert not torch.equal(base[:, t + 1 :], moved[:, t + 1 :])


def test_deterministic_backward():
    fn, _ = build(False, 2, False, "distance")
    grads = []
    for _ in range(2):
        q, k, v, gains = make_inputs(1, 17, 17, 4, 2, 16, "distance")
        fn(q, k, v, gains).square().sum().backward()
        grads.append([t.grad.clone() for t in (q, k, v, gains)])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_large_logits_stay_finite():
    fn, _ = build(True, 1, False, None)
    q, k, v, _ = make_inputs(1, 17, 17, 4, 4, 16, None)
    with torch.no_grad():
        q.mul_(300.0)
    o = fn(q, k, v)
    ref, _ = reference(q, k, v, None, True, False, None)
    assert torch.isfinite(o).all() and rel(o, ref) < 1e-4


# ---- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize(
    "hooks",
    [
        (True, 1, False, None),
        (True, 2, True, "distance"),
        (False, 2, False, "key"),
        (False, 1, True, None),
    ],
)
def test_gpu_against_reference(dtype, d, hooks):
    gpu_check(dtype, d, hooks)


@pytest.mark.gpu
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("hooks", [(True, 2, True, "distance"), (False, 1, False, None)])
def test_gpu_one_launch_backward(monkeypatch, d, hooks):
    # Every one-launch candidate the tuner may time (GPU tests otherwise run the split plan).
    module, name = build_module(*hooks)
    for cfg in getattr(module, name + "_FUSED_CONFIGS")[(max(64, d), 2)]:
        monkeypatch.setattr(module, name + "_BWD_MODE", ("fused", *cfg))
        gpu_check(torch.bfloat16, d, hooks)


def gpu_check(dtype, d, hooks):
    causal, group, rope, basis = hooks
    n, b = 1000, 2
    kv = 4
    h = kv * group
    _fn, fn_lse = build(causal, group, rope, basis)
    q, k, v, gains = make_inputs(b, n, n, h, kv, d, basis, dtype=dtype)
    o, lse = fn_lse(q, k, v, gains)
    ins = [q, k, v] + ([gains] if gains is not None else [])
    ref_ins = [t.detach().to("cpu", torch.float64).requires_grad_(True) for t in ins]
    ref_o, ref_lse = reference(
        *ref_ins[:3], ref_ins[3] if gains is not None else None, causal, rope, basis
    )
    tol = 2e-4 if dtype == torch.float32 else 2e-2
    assert rel(o, ref_o) < tol
    assert rel(lse, ref_lse) < tol
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    (o * do.to(o.device, o.dtype)).sum().backward()
    (ref_o * do.to(torch.float64)).sum().backward()
    for name, got, want in zip("qkvg", ins, ref_ins):
        assert rel(got.grad, want.grad) < tol, name
