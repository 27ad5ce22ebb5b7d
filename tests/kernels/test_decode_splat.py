"""The one-launch splat decoding step (runtime/decode_splat.py) against the step's math in
float64 (the reference rule's: responsibilities, output from the old state, state update), over
several steps so the state accumulates; K and d not powers of two and d wider than one chunk;
normalize on and off; bf16 splat parameters read as float32; the step with its input
projections in the same launch against torch's GEMVs then the step, and which of the two a
decoding step takes untimed; and both kernels compiled for sm_90."""

from __future__ import annotations

import math

import pytest
import torch
from _sm90 import compile_script
from sparkc.runtime.decode_splat import splat_step

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _step64(u, v, c, log_scale, log_amp, s, z, normalize):
    u, v, c = u.double(), v.double(), c.double()
    dist2 = (u * u).sum(-1)[..., None] - 2 * torch.einsum("bhd,hkd->bhk", u, c) + (c * c).sum(-1)
    logit = -dist2 * 0.5 * torch.exp(-2 * log_scale.double()) + log_amp.double()
    phi = torch.softmax(logit, -1)  # [B, H, K]
    self_term = (phi * phi).sum(-1, keepdim=True)
    o = self_term * v + torch.einsum("bhk,bhkd->bhd", phi, s)
    if normalize:
        o = o / (self_term + (phi * z).sum(-1, keepdim=True))
    return o, s + phi[..., None] * v[:, :, None, :], z + phi


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(("b", "heads", "k", "d"), [(2, 3, 5, 7), (1, 2, 20, 300), (3, 1, 1, 16)])
def test_splat_step_matches_the_rule_over_several_steps(b, heads, k, d, normalize):
    g = torch.Generator().manual_seed(k * d)
    centers = torch.randn(heads, k, d, generator=g)
    log_scale = 0.3 * torch.randn(heads, k, generator=g) + 0.5 * torch.log(torch.tensor(d * 1.0))
    log_amp = 0.5 * torch.randn(heads, k, generator=g)
    s = torch.zeros(b, heads, k, d, device=DEVICE)
    z = torch.zeros(b, heads, k, device=DEVICE)
    s64, z64 = s.double().cpu(), z.double().cpu()
    params = [t.to(DEVICE) for t in (centers, log_scale, log_amp)]
    for _ in range(3):
        u = torch.randn(b, heads, d, generator=g)
        v = torch.randn(b, heads, d, generator=g)
        o = splat_step(u.to(DEVICE), v.to(DEVICE), *params, s, z, normalize)
        o64, s64, z64 = _step64(u, v, centers, log_scale, log_amp, s64, z64, normalize)
        torch.testing.assert_close(o.double().cpu(), o64, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s.double().cpu(), s64, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(z.double().cpu(), z64, rtol=1e-5, atol=1e-6)


def test_splat_step_reads_half_precision_parameters_as_float32():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(2, 4, 8, generator=g).to(torch.bfloat16)
    log_scale, log_amp = (torch.randn(2, 4, generator=g).to(torch.bfloat16) for _ in range(2))
    u, v = torch.randn(1, 2, 8, generator=g), torch.randn(1, 2, 8, generator=g)
    s, z = torch.zeros(1, 2, 4, 8, device=DEVICE), torch.zeros(1, 2, 4, device=DEVICE)
    params = [t.to(DEVICE) for t in (centers, log_scale, log_amp)]
    o = splat_step(u.to(DEVICE), v.to(DEVICE), *params, s, z, True)
    want, _, _ = _step64(u, v, centers.float(), log_scale.float(), log_amp.float(),
                         torch.zeros(1, 2, 4, 8, dtype=torch.float64),
                         torch.zeros(1, 2, 4, dtype=torch.float64), True)  # fmt: skip
    torch.testing.assert_close(o.double().cpu(), want, rtol=1e-5, atol=1e-5)


_COMPILE = r"""
from sparkc.runtime.decode_splat import splat_step_kernel as fn

def ptr(a):
    return "*fp32" if a in ("U", "V", "S", "Z", "O") else ELT if a in ("C", "LS", "LA") else "i32"

out = []
for ELT in ("*fp32", "*bf16"):
    for normalize in (True, False):
        out.append(ptx_size(fn, {"NORMALIZE": normalize, "BLOCK_K": 64, "BLOCK_D": 64}, ptr))
print(json.dumps(out))
"""


def test_splat_step_kernel_compiles_for_sm90():
    sizes = compile_script(_COMPILE)
    assert len(sizes) == 4 and all(n > 1000 for n in sizes)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(
    ("b", "heads", "k", "d", "dm"), [(2, 3, 5, 7, 20), (1, 2, 20, 64, 100), (17, 2, 4, 16, 33)]
)
def test_fused_projection_step_matches_the_gemvs_then_the_step(b, heads, k, d, dm, normalize):
    """`splat_proj_step` (wa, wv inside the launch; block sizes not multiples of any shape
    here, 17 sequences span two blocks of 16) = torch's GEMVs then `splat_step`: output and
    state."""
    from sparkc.runtime.decode_splat import splat_proj_step

    g = torch.Generator().manual_seed(d + dm)
    x = torch.randn(b, dm, generator=g)
    wa, wv = (torch.randn(heads * d, dm, generator=g) / dm**0.5 for _ in range(2))
    centers = torch.randn(heads, k, d, generator=g)
    log_scale = 0.3 * torch.randn(heads, k, generator=g) + 0.5 * math.log(d)
    log_amp = 0.5 * torch.randn(heads, k, generator=g)
    s = torch.randn(b, heads, k, d, generator=g)
    z = torch.rand(b, heads, k, generator=g)
    dev = [t.to(DEVICE) for t in (x, wa, wv, centers, log_scale, log_amp, s, z)]
    x_d, wa_d, wv_d, c_d, ls_d, la_d, s1, z1 = dev
    s2, z2 = s1.clone(), z1.clone()
    u, v = (torch.nn.functional.linear(x_d, w).view(b, heads, d) for w in (wa_d, wv_d))
    want = splat_step(u, v, c_d, ls_d, la_d, s1, z1, normalize)
    got = splat_proj_step(x_d, wa_d, wv_d, (c_d, ls_d, la_d), s2, z2, normalize)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s2, s1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z2, z1, rtol=1e-5, atol=1e-6)


def test_decoding_step_takes_the_fused_way_first_for_small_batches(monkeypatch):
    """Untimed (off a GPU, tuning off): the fused step for ≤ PROJ_FIRST_MAX_B sequences, the
    GEMVs and `splat_step` for more, and always for heads wider than PROJ_MAX_D."""
    from sparkc.runtime import decode_splat as ds

    ways = []
    real_fused, real_step = ds.splat_proj_step, ds.splat_step
    monkeypatch.setattr(ds, "splat_proj_step", lambda *a: ways.append("fused") or real_fused(*a))
    monkeypatch.setattr(ds, "splat_step", lambda *a: ways.append("split") or real_step(*a))
    monkeypatch.setenv("SPARKC_TUNE", "0")
    for b, d in [(1, 8), (ds.PROJ_FIRST_MAX_B, 8), (ds.PROJ_FIRST_MAX_B + 1, 8), (1, 160)]:
        params = {
            "wa.weight": torch.randn(2 * d, 12, device=DEVICE),
            "wv.weight": torch.randn(2 * d, 12, device=DEVICE),
            "centers": torch.randn(2, 3, d, device=DEVICE),
            "log_scale": torch.zeros(2, 3, device=DEVICE),
            "log_amp": torch.zeros(2, 3, device=DEVICE),
        }
        s = torch.zeros(b, 2, 3, d, device=DEVICE)
        z = torch.zeros(b, 2, 3, device=DEVICE)
        ds.splat_decode_step(torch.randn(b, 12, device=DEVICE), params, 2, s, z, True)
    assert ways == ["fused", "fused", "split", "split"]


_COMPILE_PROJ = r"""
from sparkc.runtime.decode_splat import splat_proj_step_kernel as fn

def ptr(a):
    return ("*fp32" if a in ("S", "Z", "O") else ELT if a in ("X", "WA", "WV", "C", "LS", "LA")
            else "i32")

out = []
for ELT in ("*fp32", "*bf16"):
    for normalize in (True, False):
        out.append(ptx_size(fn, {"NORMALIZE": normalize, "BLOCK_B": 16, "BLOCK_K": 16,
                                 "BLOCK_D": 64, "BLOCK_M": 64}, ptr))
print(json.dumps(out))
"""


def test_fused_projection_step_kernel_compiles_for_sm90():
    sizes = compile_script(_COMPILE_PROJ)
    assert len(sizes) == 4 and all(n > 1000 for n in sizes)
