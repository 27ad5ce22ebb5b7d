"""The one-launch splat decoding step (runtime/decode_splat.py) against the step's math in
float64 (the reference rule's: responsibilities, output from the old state, state update), over
several steps so the state accumulates; K and d not powers of two and d wider than one chunk;
normalize on and off; bf16 splat parameters read as float32; and the kernel compiled for sm_90."""

from __future__ import annotations

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
