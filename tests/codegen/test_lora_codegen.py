"""lora_linear on generated kernels (SPEC §5.4): the hypernetwork in one kernel (or as GEMM
fragments past gen_dim 128) and the base GEMM with the per-sample low-rank delta inside it, vs the float64 reference, forward and every
gradient, at odd sizes (rows that are not block multiples, N = 1, rank 1)."""

from __future__ import annotations

import pytest
import torch

from sparkc import api

SRC = """
model M(d = 13, m = {m}) {{
  input x: float[B, N, d]
  input meta: float[B, m]
  y = lora_linear(x, meta, out={out}, rank={rank}, gen_dim={gen})
  output y
}}
"""


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def _pair(out: int, rank: int, gen: int, width: int):
    src = SRC.format(out=out, rank=rank, gen=gen, m=width)
    m = api.load_source(src, f"lora_{out}_{rank}_{gen}_{width}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double()
    with torch.no_grad():  # move gen_b off its zero initialisation so the delta is not 0
        for name in ("y.gen_b.weight", "y.gen_b.bias"):
            p = ref.get_parameter(name)
            p.copy_(torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(5)))
    tri = m.Model(impl="triton")
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    return ref, tri


@pytest.mark.parametrize(
    ("out", "rank", "gen", "width", "shapes"),
    [
        (11, 3, 5, 7, [(3, 5), (2, 1)]),  # the one-kernel hypernetwork
        (17, 1, 5, 7, [(1, 19)]),  # rank 1; the row reduction split in two
        (5, 2, 20, 21, [(17, 2)]),  # two sample blocks, two meta chunks, gen_dim 20
        (11, 2, 130, 7, [(2, 3)]),  # gen_dim > 128: the hypernetwork as GEMM fragments
    ],
)
def test_lora_kernels_match_reference(out, rank, gen, width, shapes):
    ref, tri = _pair(out, rank, gen, width)
    for b, n in shapes:
        g = torch.Generator().manual_seed(n)
        x = torch.randn(b, n, 13, dtype=torch.float64, generator=g)
        meta = torch.randn(b, width, dtype=torch.float64, generator=g)
        xr, xt = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        mr, mt = meta.clone().requires_grad_(True), meta.float().clone().requires_grad_(True)
        a, c = ref(x=xr, meta=mr).y, tri(x=xt, meta=mt).y
        assert _rel(c, a) < 1e-5
        assert torch.equal(tri(x=xt, meta=mt).y, c)  # deterministic: bit for bit again
        base = torch.nn.functional.linear(x, ref.get_parameter("y.base.weight"))
        assert _rel(a, base) > 1e-2  # the delta is really there
        w = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        ref.zero_grad()
        tri.zero_grad()
        (a * w).sum().backward()
        (c * w.float()).sum().backward()
        assert _rel(xt.grad, xr.grad) < 1e-5
        assert _rel(mt.grad, mr.grad) < 1e-5
        for (name, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
            assert float(pr.grad.abs().max()) > 0, name
            assert _rel(pt.grad, pr.grad) < 1e-5, name
