"""The reference rules on CUDA (marked `gpu`, skipped without a device): every op case gives the
CPU float64 result in float64 and float32 on the GPU, backward runs there, and training noise can
be drawn from a CUDA generator."""

from __future__ import annotations

import pytest
import torch
from _opharness import CASES, build

from sparkc.ir.ops import OPS

pytestmark = pytest.mark.gpu
IDS = [c.id for c in CASES]


def _to(d: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in d.items():
        v = v.detach().to("cuda")
        if v.is_floating_point():
            v = v.to(dtype).requires_grad_(True)
        out[k] = v
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cuda_matches_cpu_float64(case):
    b = build(case, requires_grad=False)
    ref = b.run()
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        inputs, params = _to(b.inputs, dtype), _to(b.params, dtype)
        outs = b.run(inputs, params)
        for o, r in zip(outs, ref):
            assert o.device.type == "cuda"
            if not r.is_floating_point():
                assert torch.equal(o.cpu(), r)
                continue
            assert o.dtype == dtype
            assert (o.double().cpu() - r).abs().max() <= tol * r.abs().max().clamp(min=1.0)
        loss = sum(o.float().sum() for o in outs if o.is_floating_point() and o.requires_grad)
        if torch.is_tensor(loss):
            loss.backward()
    if OPS[case.op].noise(dict(b.hp)):
        g = torch.Generator(device="cuda").manual_seed(0)
        outs = b.run(
            _to(b.inputs, torch.float32), _to(b.params, torch.float32), training=True, generator=g
        )
        assert all(torch.isfinite(o).all() for o in outs if o.is_floating_point())
