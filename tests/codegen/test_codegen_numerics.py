"""Generated Triton path vs the float64 reference path, forward and backward, on CPU.

Every program of `programs.py` is compiled (fused and unfused), its Triton path runs under
TRITON_INTERPRET in float32, and its reference path in float64 on the same parameters. Outputs,
losses and the gradients of every parameter and float input must agree to float32 accuracy on
shapes that are not block multiples; causal programs must pass SPEC §6.2's perturbation test
bit for bit on the Triton path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from programs import CAUSAL, PROGRAMS

from sparkc import api

SHAPES = [(1, 1), (2, 7)]


def _load(name: str, fuse: bool = True):
    src, _ = PROGRAMS[name]
    return api.load_source(src, f"{name}.spark", fuse=fuse)


def _inputs(name: str, b: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {k: make(b, n, g) for k, make in PROGRAMS[name][1].items()}


def _pair(module):
    torch.manual_seed(0)
    ref = module.Model(impl="reference").double()
    tri = module.Model(impl="triton")
    tri.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    )
    return ref, tri


def _scalar_objective(out) -> torch.Tensor:
    """A loss touching every float output (and the declared loss, when there is one)."""
    total = 0.0
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "aux_loss":
            w = torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).reshape(v.shape)
            total = total + (v * w).sum()
    return total


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error, with an absolute floor for exactly-zero references (a gradient that is
    0 in float64, e.g. of q when every row attends to one key, is ~1e-9 in float32)."""
    a, b = a.detach().double(), b.detach().double()
    floor = 1e-2 * max(1, b.numel()) ** 0.5  # i.e. an absolute error of 1e-6 per element
    return float((a - b).norm() / max(float(b.norm()), floor))


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_triton_matches_reference(name, fuse):
    module = _load(name, fuse)
    ref, tri = _pair(module)
    for b, n in SHAPES:
        data = _inputs(name, b, n, seed=b * 100 + n)
        ref_in = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in data.items()}
        tri_in = {
            k: v.float().clone().requires_grad_(True) if v.is_floating_point() else v
            for k, v in data.items()
        }
        out_r, out_t = ref(**ref_in), tri(**tri_in)
        assert set(out_r) == set(out_t)
        for k, v in out_r.items():
            if isinstance(v, torch.Tensor):
                assert torch.isfinite(out_t[k]).all(), k
                assert _rel(out_t[k], v) < 1e-4, (name, k, _rel(out_t[k], v))
        ref.zero_grad()
        tri.zero_grad()
        _scalar_objective(out_r).backward()
        _scalar_objective(out_t).backward()
        for (pname, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
            assert pt.grad is not None, pname
            assert _rel(pt.grad, pr.grad) < 1e-4, (name, pname, _rel(pt.grad, pr.grad))
        for k, v in ref_in.items():
            if v.is_floating_point():
                assert _rel(tri_in[k].grad, v.grad) < 1e-4, (name, k)


@pytest.mark.parametrize("name", CAUSAL)
def test_triton_path_is_causal(name):
    """Changing inputs after position t leaves outputs up to t bit-identical (SPEC §6.2)."""
    module = _load(name)
    torch.manual_seed(1)
    net = module.Model(impl="triton").eval()
    n, t = 9, 4
    data = {k: v.float() for k, v in _inputs(name, 2, n, seed=3).items()}
    changed = {k: v.clone() for k, v in data.items()}
    for v in changed.values():
        v[:, t + 1 :] = torch.randn_like(v[:, t + 1 :]) * 3.0
    a, b = net(**data), net(**changed)
    for k in module.OUTPUTS:
        assert torch.equal(a[k][:, : t + 1], b[k][:, : t + 1]), k
        assert not torch.equal(a[k], b[k]), f"{k}: the perturbation changed nothing"


def test_eval_is_deterministic():
    module = _load("lm_fused_ce")
    net = module.Model(impl="triton").eval()
    data = _inputs("lm_fused_ce", 2, 7, seed=5)
    assert torch.equal(net(**data).loss, net(**data).loss)


def test_fused_plan_fuses():
    """The fused LM program stores no [B, N, V] logits: the linear and the loss are one group."""
    module = _load("lm_fused_ce")
    kernels = Path(module.__file__.replace("__init__.py", "kernels.py")).read_text()
    assert "lce" in kernels and "_k.lce" in Path(module.__file__).read_text()
    assert module.TRITON_COVERAGE["reference_ops"] == ()
