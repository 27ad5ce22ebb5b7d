"""sqdk_attention (SPEC §4.2) on its generated kernels (hspmn_sqdk_attention.py.jinja) vs the
float64 reference path: forward and every gradient with 0, 1, some and all rows routed, N = 1 and
odd N spanning several query tiles and key blocks, grouped-query heads G = 1, 2, 4, RoPE on and
off; unrouted rows exactly 0 with no gate gradient; changing only the routing of later positions
leaves earlier rows bit for bit (SPEC §6.2); every launched kernel compiles for sm_90; float32
and bfloat16 on the GPU (marked gpu)."""

from __future__ import annotations

import pytest
import torch
from launch_record import compile_records, recording

from sparkc import api

SRC = """
model M(d = {d}) {{
  input x: float[B, N, d]
  input gate: float[B, N]
  y = sqdk_attention(x, gate, heads={heads}, kv_heads={kv}, rope={rope})
  output y
}}
"""
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _module(heads: int, kv: int, rope: bool, d: int = 16):
    src = SRC.format(d=d, heads=heads, kv=kv, rope=str(rope).lower())
    m = api.load_source(src, f"sqdk_h{heads}_kv{kv}_r{int(rope)}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    return m


def _pair(m, dtype=torch.float32):
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double().to(DEVICE)
    tri = m.Model(impl="triton").to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    tri = tri.to(dtype)
    # The float64 oracle runs on the weights the low-precision model holds (rounded once), so
    # the comparison measures the kernels' rounding, not the weights'.
    ref.load_state_dict({k: v.double() for k, v in tri.state_dict().items()})
    return ref, tri


def _gate(kind: str, b: int, n: int, g: torch.Generator) -> torch.Tensor:
    gate = (torch.rand(b, n, generator=g) < 0.4) * (0.5 + torch.rand(b, n, generator=g))
    if kind == "none":
        gate.zero_()
    elif kind == "one":
        gate.zero_()
        gate[-1, n // 2] = 0.7
    elif kind == "all":
        gate = 0.5 + torch.rand(b, n, generator=g)
    return gate.double()


def _rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / max(float(b.norm()), 1e-2 * max(1, b.numel()) ** 0.5))


def _check(m, b: int, n: int, kind: str, dtype=torch.float32, tol: float = 3e-5):
    ref, tri = _pair(m, dtype)
    g = torch.Generator().manual_seed(b * 100 + n)
    x = torch.randn(b, n, int(m.HYPER["d"]), generator=g, dtype=torch.float64)
    gate = _gate(kind, b, n, g)
    # Both paths see the same values: the inputs rounded once to `dtype`.
    x, gate = x.to(dtype).double(), gate.to(dtype).double()
    xr, gr = (t.clone().to(DEVICE).requires_grad_(True) for t in (x, gate))
    xt, gt = (t.to(dtype).to(DEVICE).requires_grad_(True) for t in (x, gate))
    a, c = ref(x=xr, gate=gr).y, tri(x=xt, gate=gt).y
    assert c.dtype == dtype and torch.isfinite(c).all()
    assert _rel(c, a) < tol
    unrouted = gate.to(DEVICE) == 0
    assert torch.equal(c[unrouted], torch.zeros_like(c[unrouted]))
    w = torch.randn(a.shape, generator=g, dtype=torch.float64).to(DEVICE)
    (a * w).sum().backward()
    (c * w.to(dtype)).sum().backward()
    bar = _eager_bars(m, ref, x, gate, w, dtype, tol)
    assert _rel(xt.grad, xr.grad) < bar("x", xr.grad)
    assert _rel(gt.grad, gr.grad) < bar("gate", gr.grad)
    assert torch.equal(gt.grad[unrouted], torch.zeros_like(gt.grad[unrouted]))
    assert (gt.grad[~unrouted] != 0).all()
    for (name, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
        assert pt.grad is not None and _rel(pt.grad, pr.grad) < bar(name, pr.grad), name


def _eager_bars(m, ref, x, gate, w, dtype, tol):
    """bar(name, g64): the bound on a gradient's relative error. float32: 3·tol. Lower
    precision: the larger of 3·tol and twice eager PyTorch's own error on the same rounded
    weights and inputs + 0.012 (the suite's bf16 rule): a gradient that is one short sum with
    cancellation (the gate's at B = N = 1) is as inexact in eager bf16 as in the kernels."""
    if dtype == torch.float32:
        return lambda name, g64: 3 * tol
    eager = m.Model(impl="reference").to(DEVICE)
    eager.load_state_dict(ref.state_dict())
    eager = eager.to(dtype)
    xe, ge = (t.to(dtype).to(DEVICE).requires_grad_(True) for t in (x, gate))
    (eager(x=xe, gate=ge).y * w.to(dtype)).sum().backward()
    grads = {"x": xe.grad, "gate": ge.grad, **{n: p.grad for n, p in eager.named_parameters()}}
    return lambda name, g64: max(3 * tol, 2 * _rel(grads[name], g64) + 1.2e-2)


@pytest.mark.parametrize(
    "heads,kv,rope", [(4, 4, True), (4, 2, False), (4, 1, True)], ids=["g1-rope", "g2", "g4-rope"]
)
@pytest.mark.parametrize("kind", ["none", "one", "some", "all"])
def test_sqdk_kernels_match_reference(heads, kv, rope, kind):
    m = _module(heads, kv, rope)
    for b, n in ((1, 1), (2, 9)) if kind != "some" else ((2, 9), (2, 37)):
        _check(m, b, n, kind)


def test_odd_head_width_without_rope():
    _check(_module(2, 1, False, d=10), 2, 21, "some")  # d = 5: halves of 3 and 2 columns


class _NotInterpreting:
    """The runtime facade, except that `interpreting()` says no."""

    def __init__(self, launch):
        self._launch = launch

    def interpreting(self):
        return False

    def __getattr__(self, name):
        return getattr(self._launch, name)


@pytest.mark.parametrize("heads,kv,rope", [(4, 2, True), (4, 4, False)], ids=["g2-rope", "g1"])
def test_gpu_tiles_match_reference(heads, kv, rope, monkeypatch):
    """The GPU's heuristic tiles (float32 entries: 32-64 query rows, several slots per tile, key
    blocks of 32) run under the interpreter: the fragment's `_launch` says it is not
    interpreting, so it takes its GPU tables (the tuner, in the runtime, still sees the
    interpreter and returns each table's first entry untimed)."""
    import importlib

    m = _module(heads, kv, rope)
    kernels = importlib.import_module(m.__name__ + ".kernels")
    monkeypatch.setattr(kernels, "_launch", _NotInterpreting(kernels._launch))
    for kind in ("some", "all"):
        _check(m, 2, 70, kind)


@pytest.mark.parametrize("gather,scatter", [(True, False), (False, True)])
def test_rows_gemm_covers_every_slot_and_column_tile(gather, scatter):
    """The routed-rows GEMM in its grouped tile order (8 slot tiles per group) over a full and a
    partial group of slot tiles and several column tiles, against torch: every routed row
    written once, the others untouched."""
    import importlib

    m = _module(4, 2, True)
    _pair(m)
    kernels = importlib.import_module(m.__name__ + ".kernels")
    prefix = next(n for n in dir(kernels) if n.endswith("_rows_mm")).removesuffix("_rows_mm")
    g = torch.Generator().manual_seed(7)
    b, n, k, nout = 2, 150, 24, 40  # 10 slot tiles of 16 (groups of 8 and 2), 3 column tiles
    a = torch.randn(b, n, k, generator=g)
    w = torch.randn(nout, k, generator=g)
    gate = (torch.rand(b, n, generator=g) < 0.8).float() * torch.rand(b, n, generator=g)
    gate[1, :] = 0.5  # a sequence with every row routed
    idx, count, _ = getattr(kernels, f"{prefix}_compact")(gate)
    y = torch.full((b, n, nout), 7.0)
    getattr(kernels, f"{prefix}_rows_mm")(a, w, y, idx, count, gather, scatter, scale=gate)
    for i in range(b):
        pos = idx[i, : int(count[i])].long()
        src = pos if gather else torch.arange(len(pos))
        dst = pos if scatter else torch.arange(len(pos))
        want = (a[i, src] @ w.t()) * gate[i, pos][:, None]
        torch.testing.assert_close(y[i, dst], want, rtol=1e-5, atol=1e-5)
        rest = torch.ones(n, dtype=torch.bool)
        rest[dst] = False
        assert torch.all(y[i, rest] == 7.0)


def test_changing_later_routing_or_inputs_leaves_earlier_rows_bit_exact():
    m = _module(4, 2, True)
    _, tri = _pair(m)
    tri.eval()
    n = 40
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, n, 16, generator=g)
    gate = (torch.rand(2, n, generator=g) < 0.5).float()
    y = tri(x=x, gate=gate).y
    for t in (0, 5, 17, 30, n - 2):
        later = gate.clone()
        later[:, t + 1 :] = 1.0 - gate[:, t + 1 :]
        moved = x.clone()
        moved[:, t + 1 :] = torch.randn(moved[:, t + 1 :].shape, generator=g) * 3
        for xs, gs in ((x, later), (moved, gate), (moved, later)):
            z = tri(x=xs, gate=gs).y
            assert torch.equal(y[:, : t + 1], z[:, : t + 1]), t
            if gs is later:  # a flipped row's output always changes
                assert not torch.equal(y, z)


def test_every_launched_kernel_compiles_for_sm90(tmp_path):
    names = set()
    for heads, kv, rope in ((4, 2, True), (2, 2, False)):
        _, tri = _pair(_module(heads, kv, rope))
        records: list[dict] = []
        x = torch.randn(2, 5, 16, requires_grad=True)
        gate = torch.tensor([[1.0, 0, 1, 1, 0], [0, 0, 0, 1, 0]], requires_grad=True)
        with recording(records):
            tri(x=x, gate=gate).y.sum().backward()
        sqdk = [r for r in records if r["kernel"].startswith("sqdk")]
        names |= set(compile_records(sqdk, tmp_path))
    assert {n.split("_", 1)[1] for n in names} == {
        "rows_mm_kernel",
        "wgrad_kernel",
        "rope_kernel",
        "fwd_kernel",
        "bwd_prep_kernel",
        "bwd_dkdv_kernel",
        "bwd_dq_kernel",
    }


_ATTN = {"fwd_kernel": "fwd", "bwd_dkdv_kernel": "dkdv", "bwd_dq_kernel": "dq"}
_GEMM = {"rows_mm_kernel": "rows", "wgrad_kernel": "wgrad"}


def _gpu_tiles(record: dict, kernels, group: int, size: int) -> dict | None:
    """The record with the tiles the kernel gets on a GPU at head width 128 (the benchmark's)."""
    prefix, kind = record["kernel"].split("_", 1)
    table_attn, table_gemm = (getattr(kernels, f"{prefix}_{t}_TILES") for t in ("ATTN", "GEMM"))
    c = dict(record["constexprs"])
    if kind in _ATTN:
        rows, bn, warps, _ = table_attn[(_ATTN[kind], size)][0]  # the heuristic
        slots = max(1, rows // group)
        m_t = max(16, 1 << (slots * group - 1).bit_length())
        c.update(SLOTS=slots, M_T=m_t, BLOCK_N=bn, HEAD_D=128, HALF=64, BLOCK_H=64, BLOCK_D=128)
    elif kind in _GEMM:
        bm, bn, bk, warps, _ = table_gemm[(_GEMM[kind], size)][0]
        c.update(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    else:
        return None
    return {**record, "constexprs": c, "num_warps": warps}


# The interpreter's bfloat16 tl.dot returns garbage (Triton 3.9: ~1e10 for a 16x16 product of
# randn); this test only records which kernels run with which arguments, never their values.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_tiles_compile_for_sm90(dtype, tmp_path):
    """The fixed GPU tiles (not the interpreter's) at head width 128, each kernel for sm_90."""
    import importlib.util

    group = 4
    m = _module(8, 2, True)
    _, tri = _pair(m, dtype)
    x = torch.randn(1, 3, 16, dtype=dtype, requires_grad=True)
    gate = torch.tensor([[1.0, 0, 1]], dtype=dtype, requires_grad=True)
    records: list[dict] = []
    with recording(records):
        tri(x=x, gate=gate).y.sum().backward()
    sqdk = [r for r in records if r["kernel"].startswith("sqdk")]
    want = "*bf16" if dtype == torch.bfloat16 else "*fp32"
    assert any(r["signature"].get("Q") == want for r in sqdk)
    spec = importlib.util.spec_from_file_location("sqdk_tiles_probe", sqdk[0]["module"])
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    size = 4 if dtype == torch.float32 else 2
    gpu = [t for r in sqdk if (t := _gpu_tiles(r, kernels, group, size)) is not None]
    assert len({r["kernel"].split("_", 1)[1] for r in gpu}) == 5
    assert len(compile_records(gpu, tmp_path)) == len({str(r) for r in gpu})


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("heads,kv,rope", [(8, 2, True), (4, 4, False)])
def test_sqdk_kernels_on_gpu(dtype, tol, heads, kv, rope):
    m = _module(heads, kv, rope, d=64 * heads)
    for kind in ("none", "one", "some", "all"):
        _check(m, 2, 1000, kind, dtype, tol)
    _check(m, 1, 1, "all", dtype, tol)
