"""trajectory (SPEC §3.2) on its generated stencil kernels vs the float64 reference: forward,
d x and d strength, windows 2, 6 and 20, N = 1 to 45, a repeated token (the norm clamp), every
tile shape and grid bound the GPU tuner may choose, the causality perturbation test bit for
bit, every launched kernel compiled for sm_90, and (marked gpu) the tuned kernels at D = 1024."""

from __future__ import annotations

import sys

import pytest
import torch
from launch_record import compile_records, recording
from sparkc.runtime import launch

from sparkc import api

SRC = """
model M(d = 12) {{
  input x: float[B, N, d]
  y = trajectory(x, window={window})
  output y
}}
"""


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-2 * b.numel() ** 0.5))


def _pair(window: int):
    m = api.load_source(SRC.format(window=window), f"traj{window}.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double()
    with torch.no_grad():
        ref.get_parameter("y.strength").fill_(0.7)
    tri = m.Model(impl="triton")
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    return ref, tri


@pytest.mark.parametrize("window", [2, 6, 20])
def test_trajectory_kernels_match_reference(window):
    ref, tri = _pair(window)
    for n in (1, 2, 7, 13) if window < 20 else (1, 13, 45):
        x = torch.randn(2, n, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        if n > 3:
            x[0, 2] = x[0, 1]  # a zero difference: δ goes through max(‖v‖, 1e-8)
        xr, xt = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        a, c = ref(x=xr).y, tri(x=xt).y
        assert _rel(c, a) < 1e-5
        w = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
        ref.zero_grad()
        tri.zero_grad()
        (a * w).sum().backward()
        (c * w.float()).sum().backward()
        assert _rel(xt.grad, xr.grad) < 1e-5
        assert _rel(xt.grad[1], xr.grad[1]) < 1e-5  # without sequence 0's ~1e8 clamp rows
        sr, st = ref.get_parameter("y.strength").grad, tri.get_parameter("y.strength").grad
        assert abs(float(st) - float(sr)) <= 1e-5 * max(1.0, abs(float(sr)))


def test_trajectory_kernel_is_causal_and_compiles(tmp_path):
    _, tri = _pair(3)
    x = torch.randn(2, 9, 12)
    changed = x.clone()
    changed[:, 5:] += 3.0
    records: list[dict] = []
    with recording(records):
        a, b = tri(x=x).y, tri(x=changed).y
        xg = x.clone().requires_grad_(True)
        tri(x=xg).y.sum().backward()
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.equal(a, b)
    assert sorted(set(compile_records(records, tmp_path))) == [
        "traj0_bwd_kernel",
        "traj0_fwd_kernel",
        "traj0_sum_kernel",
    ]


def _kernels_module(model_module):
    return next(
        m
        for n, m in list(sys.modules.items())
        if n.startswith(model_module.__name__) and n.endswith(".kernels")
    )


def test_every_gpu_tile_matches_reference(monkeypatch, tmp_path):
    """Each tile shape and grid bound the GPU tuner may choose, and each segment length of the
    row-stream form, gives the reference's forward and gradients (rows not a multiple of the
    tile's outputs or the segment, D not a multiple of its columns), and the heuristic tile and
    the stream kernels at both prefetch depths compile for sm_90 in float32 and bfloat16."""
    m = api.load_source(SRC.format(window=6).replace("d = 12", "d = 40"), "traj_tiles.spark")
    torch.manual_seed(0)
    ref = m.Model(impl="reference").double()
    with torch.no_grad():
        ref.get_parameter("y.strength").fill_(0.7)
    tri = m.Model(impl="triton")
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    x = torch.randn(2, 37, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x[1, 9] = x[1, 8]  # a zero difference inside a tile
    w = torch.randn(2, 37, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    xr = x.clone().requires_grad_(True)
    want = ref(x=xr).y
    (want * w).sum().backward()
    tri(x=x.float())  # loads the kernels module
    kern = _kernels_module(m)
    with monkeypatch.context() as mp:  # the GPU's candidate list, not the interpreter's
        mp.setattr(launch, "interpreting", lambda: False)
        cands = kern.traj0_candidates(40)
    tiles = [c for c in cands if c[0] != "stream"]
    streams = [c for c in cands if c[0] == "stream"]
    assert len(tiles) >= 6 and tiles[0] == (32, 64, 8, 2)
    assert {c[1] for c in streams} == {32, 64, 128} and {c[3] for c in streams} == {1, 2}
    # Each (rows, columns) shape once (warps do not change results under the interpreter), with
    # each grid bound in turn (2 SMs here: grids of 2, 4 and 8 programs, and one per tile).
    shapes = list(dict.fromkeys(t[:2] for t in tiles))
    bounds = sorted({t[3] for t in tiles})
    assert bounds == [0, 1, 2, 4]
    runs = [tiles[0]] + [(*shape, 1, bounds[i % 4]) for i, shape in enumerate(shapes[1:])]
    # The row-stream form: each candidate segment length (37 rows: one or two segments), and
    # segments shorter than the window (the halo then spans earlier segments) and of 8 rows,
    # with rows prefetched two steps ahead (2) and loaded where used (1).
    runs += [streams[0]] + [("stream", seg, 1, pf) for seg in (64, 128, 8, 5, 1) for pf in (2, 1)]
    records: list[dict] = []
    for tile in runs:
        monkeypatch.setattr(kern, "traj0_config", lambda kind, x, run, tile=tile: tile)
        xt = x.float().clone().requires_grad_(True)
        tri.zero_grad()
        with recording(records if tile in (runs[0], streams[0], ("stream", 8, 1, 1)) else []):
            got = tri(x=xt).y
            (got * w.float()).sum().backward()
        assert _rel(got, want) < 1e-5, tile
        assert _rel(xt.grad, xr.grad) < 1e-5, tile
        # Sequence 0 alone: sequence 1's clamped difference makes its dx ~1e8 (dδ / 1e-8),
        # which would hide any other error of the whole tensor's norm.
        assert _rel(xt.grad[0], xr.grad[0]) < 1e-5, tile
        sr, st = ref.get_parameter("y.strength").grad, tri.get_parameter("y.strength").grad
        assert abs(float(st) - float(sr)) <= 1e-5 * max(1.0, abs(float(sr))), tile
    bf16 = [
        {
            **r,
            "signature": {
                k: v.replace("fp32", "bf16") if k in ("X", "Y", "DY", "DX") else v
                for k, v in r["signature"].items()
            },
        }
        for r in records
    ]
    assert sorted(set(compile_records(records + bf16, tmp_path))) == [
        "traj0_bwd_kernel",
        "traj0_fwd_kernel",
        "traj0_stream_bwd_kernel",
        "traj0_stream_fwd_kernel",
        "traj0_sum_kernel",
    ]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_trajectory_kernels_on_gpu(dtype, tol):
    """D = 1024 at 2·600 rows (over a million elements: the tiles are tuned on the GPU) and a
    short odd shape: forward, d x and d strength against the float64 reference of the same
    (rounded) input; bfloat16 output and gradients are rounded once, hence its tolerance."""
    m = api.load_source(SRC.format(window=6).replace("d = 12", "d = 1024"), "traj_gpu.spark")
    ref = m.Model(impl="reference").double().cuda()
    with torch.no_grad():
        ref.get_parameter("y.strength").fill_(0.7)
    tri = m.Model(impl="triton").cuda()
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    tri.to(dtype)
    with torch.no_grad():  # the same (rounded) strength on both sides
        ref.get_parameter("y.strength").copy_(tri.get_parameter("y.strength"))
    g = torch.Generator(device="cuda").manual_seed(0)
    for b, n in [(2, 600), (3, 37)]:
        x = torch.randn(b, n, 1024, generator=g, device="cuda").to(dtype)
        x[0, 5] = x[0, 4]  # the norm clamp
        w = torch.randn(b, n, 1024, generator=g, device="cuda", dtype=torch.float64)
        xr, xt = x.double().requires_grad_(True), x.clone().requires_grad_(True)
        ref.zero_grad()
        tri.zero_grad()
        a, c = ref(x=xr).y, tri(x=xt).y
        (a * w).sum().backward()
        (c.double() * w).sum().backward()
        assert _rel(c, a) < tol
        assert _rel(xt.grad, xr.grad) < tol
        assert _rel(xt.grad[1:], xr.grad[1:]) < tol  # without sequence 0's ~1e8 clamp rows
        sr, st = ref.get_parameter("y.strength").grad, tri.get_parameter("y.strength").grad
        assert abs(float(st) - float(sr)) <= tol * max(1.0, abs(float(sr)))


@pytest.mark.gpu
def test_trajectory_kernel_is_causal_on_gpu():
    """bfloat16, tuned tiles: outputs up to t unchanged, bit for bit, by any later input."""
    m = api.load_source(SRC.format(window=6).replace("d = 12", "d = 1024"), "traj_gpu.spark")
    tri = m.Model(impl="triton").cuda().to(torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(2, 700, 1024, generator=g, device="cuda", dtype=torch.bfloat16)
    y = tri(x=x).y
    for t in (26, 27, 300, 698):
        changed = x.clone()
        changed[:, t + 1 :] += 1.0
        assert torch.equal(tri(x=changed).y[:, : t + 1], y[:, : t + 1]), t
