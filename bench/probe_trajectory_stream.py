"""Probe: `trajectory` as a row stream instead of a two-pass tile (issue 19, ≥ 80% of copy).

The generated kernels (codegen_templates/splat_trajectory.py.jinja) cut a sequence into tiles
of BR rows and make two passes over D per tile: the norms of the differences first, then the
shifted rows. bench/probe_trajectory_bound.py measured that structure's bare form at 66% of
copy forward (H100, 2026-12-07): the second pass reads every row W + 1 times from cache.

Here one program walks a segment of SEG consecutive positions of one sequence, one whole row
(all of D, in registers) at a time, and carries what later rows need from earlier ones:
- forward: the last W unit differences δ_{p−W} .. δ_{p−1} (W rows) and x_{p−1}. Each step loads
  x_p once, forms δ_{p−1} (one row reduction), shifts the ring and writes y_p = x_p + s·T_p.
  A segment starts W rows early (halo), so x is read (SEG + W + 1) / SEG times.
- backward: dy_p .. dy_{p+W} (W + 1 rows), x_p, and dv_{p−1}. Each step loads x_{p+1} and
  dy_{p+W}, forms u_p = Σ_i ω_i/den(p+W−i) dy_{p+W−i}, ‖v_p‖² and v_p·u_p (v_p = x_{p+1} − x_p),
  dv_p = s·r_p·(u_p − δ_p(δ_p·u_p)), writes dx_p = dy_p + dv_{p−1} − dv_p, and adds δ_p·u_p to the
  program's d strength slot.
Every row is read once from memory (plus the halo), never re-read from cache. The ring lives in
named registers (window 6, as splatflow; the template would unroll any W the same way).

Rows: torch copy; stream forward and backward (best of a few SEG × warps × stages); the
generated op's forward and backward (its tuned tiles) on the same x [1, R, D]; "% copy" per
row's own streams (forward 2: x in, y out; backward 3: x and dy in, dx out). Every stream
kernel is first checked against torch autograd of the reference formula. `--dry-run`: the
interpreter at a tiny shape (checks only).

    python3 -P bench/probe_trajectory_stream.py [--rows 65536] [--d 1024] [--json f]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch
import triton
import triton.language as tl

W = 6  # the ring below is unrolled for this window
WEIGHTS = [math.exp(-1 + i / (W - 1)) for i in range(W)]


@triton.jit
def _den(p, w0, w1, w2, w3, w4, w5):
    """Σ ω_i over the taps whose difference p − 6 + i is ≥ 0 (at least 1e-30)."""
    d = tl.where(p >= 6, w0, 0.0) + tl.where(p >= 5, w1, 0.0) + tl.where(p >= 4, w2, 0.0)
    d += tl.where(p >= 3, w3, 0.0) + tl.where(p >= 2, w4, 0.0) + tl.where(p >= 1, w5, 0.0)
    return tl.maximum(d, 1e-30)


@triton.jit
def _stream_fwd(X, S, Y, N, D, SEG, NSEG, w0, w1, w2, w3, w4, w5,
                BD: tl.constexpr, NS: tl.constexpr, PF: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    b = (pid // NSEG).to(tl.int64)
    p_start = (pid % NSEG) * SEG
    p_end = tl.minimum(p_start + SEG, N)
    p_lo = tl.maximum(p_start - 6, 0)
    cols = tl.arange(0, BD)
    cm = cols < D
    xb = X + b * N * D
    yb = Y + b * N * D
    s = tl.load(S).to(tl.float32)
    # x_{p_lo − 1} (x_0 itself at the sequence start: a zero difference, δ = 0).
    x_prev = tl.load(xb + tl.maximum(p_lo - 1, 0) * D + cols, mask=cm, other=0.0)
    x_prev = x_prev.to(tl.float32)
    d0 = tl.zeros((BD,), tl.float32)
    d1 = d0
    d2 = d0
    d3 = d0
    d4 = d0
    d5 = d0
    # PF = 2: rows are loaded two steps before their use (carried in xa, xn), so a step's
    # reduction overlaps the next rows' loads; PF = 1: each row loaded where it is used.
    xa = tl.load(xb + p_lo * D + cols, mask=cm, other=0.0)
    xn = tl.load(
        xb + (p_lo + 1) * D + cols, mask=cols < tl.where(p_lo + 1 < p_end, D, 0), other=0.0
    )
    for q in tl.range(p_lo, p_end, num_stages=NS):
        if PF == 2:
            xq = xa.to(tl.float32)
            xa = xn
            xn = tl.load(
                xb + (q + 2) * D + cols, mask=cols < tl.where(q + 2 < p_end, D, 0), other=0.0
            )
        else:
            xq = tl.load(xb + q * D + cols, mask=cm, other=0.0).to(tl.float32)
        v = xq - x_prev
        n = tl.maximum(tl.sqrt(tl.sum(v * v, 0)), 1e-8)
        d0, d1, d2, d3, d4, d5 = d1, d2, d3, d4, d5, v / n  # δ_{q−6} .. δ_{q−1}
        t = w0 * d0 + w1 * d1 + w2 * d2 + w3 * d3 + w4 * d4 + w5 * d5
        y = xq + (s / _den(q, w0, w1, w2, w3, w4, w5)) * t
        tl.store(
            yb + q * D + cols, y.to(Y.dtype.element_ty), mask=cols < tl.where(q >= p_start, D, 0)
        )
        x_prev = xq


@triton.jit
def _stream_bwd(X, S, DY, DX, PART, N, D, SEG, NSEG, w0, w1, w2, w3, w4, w5,
                BD: tl.constexpr, NS: tl.constexpr, PF: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    b = (pid // NSEG).to(tl.int64)
    q_start = (pid % NSEG) * SEG
    q_end = tl.minimum(q_start + SEG, N)
    q_lo = tl.maximum(q_start - 1, 0)  # dv_{q_start − 1} first
    cols = tl.arange(0, BD)
    cm = cols < D
    xb = X + b * N * D
    gb = DY + b * N * D
    s = tl.load(S).to(tl.float32)
    x_cur = tl.load(xb + q_lo * D + cols, mask=cm, other=0.0).to(tl.float32)
    g0 = tl.load(gb + q_lo * D + cols, mask=cols < tl.where(q_lo < N, D, 0), other=0.0).to(
        tl.float32
    )
    g1 = tl.load(gb + (q_lo + 1) * D + cols, mask=cols < tl.where(q_lo + 1 < N, D, 0), other=0.0)
    g2 = tl.load(gb + (q_lo + 2) * D + cols, mask=cols < tl.where(q_lo + 2 < N, D, 0), other=0.0)
    g3 = tl.load(gb + (q_lo + 3) * D + cols, mask=cols < tl.where(q_lo + 3 < N, D, 0), other=0.0)
    g4 = tl.load(gb + (q_lo + 4) * D + cols, mask=cols < tl.where(q_lo + 4 < N, D, 0), other=0.0)
    g5 = tl.load(gb + (q_lo + 5) * D + cols, mask=cols < tl.where(q_lo + 5 < N, D, 0), other=0.0)
    g1 = g1.to(tl.float32)
    g2 = g2.to(tl.float32)
    g3 = g3.to(tl.float32)
    g4 = g4.to(tl.float32)
    g5 = g5.to(tl.float32)
    dv_prev = tl.zeros((BD,), tl.float32)
    ds = 0.0
    # PF = 2: x_{q+2} and dy_{q+7} loaded a step before their use (xa, ga).
    xa = tl.load(xb + (q_lo + 1) * D + cols, mask=cols < tl.where(q_lo + 1 < N, D, 0), other=0.0)
    ga = tl.load(gb + (q_lo + 6) * D + cols, mask=cols < tl.where(q_lo + 6 < N, D, 0), other=0.0)
    for q in tl.range(q_lo, q_end, num_stages=NS):
        if PF == 2:
            x_next = xa.to(tl.float32)
            g6 = ga.to(tl.float32)
            lim = tl.minimum(q_end + 6, N)  # the rows this segment reads
            xa = tl.load(
                xb + (q + 2) * D + cols, mask=cols < tl.where(q + 2 < lim, D, 0), other=0.0
            )
            ga = tl.load(
                gb + (q + 7) * D + cols, mask=cols < tl.where(q + 7 < lim, D, 0), other=0.0
            )
        else:
            x_next = tl.load(
                xb + (q + 1) * D + cols, mask=cols < tl.where(q + 1 < N, D, 0), other=0.0
            )
            x_next = x_next.to(tl.float32)
            g6 = tl.load(gb + (q + 6) * D + cols, mask=cols < tl.where(q + 6 < N, D, 0), other=0.0)
            g6 = g6.to(tl.float32)
        # u_q: output p = q + 6 − i reads δ_q at tap i with weight ω_i / den(p).
        u = (w0 / _den(q + 6, w0, w1, w2, w3, w4, w5)) * g6
        u += (w1 / _den(q + 5, w0, w1, w2, w3, w4, w5)) * g5
        u += (w2 / _den(q + 4, w0, w1, w2, w3, w4, w5)) * g4
        u += (w3 / _den(q + 3, w0, w1, w2, w3, w4, w5)) * g3
        u += (w4 / _den(q + 2, w0, w1, w2, w3, w4, w5)) * g2
        u += (w5 / _den(q + 1, w0, w1, w2, w3, w4, w5)) * g1
        v = x_next - x_cur
        ss = tl.sum(v * v, 0)
        vu = tl.sum(v * u, 0)
        nrm = tl.sqrt(ss)
        rn = 1.0 / tl.maximum(nrm, 1e-8)
        ok = q < N - 1  # v_q exists
        a = tl.where(ok, s * rn, 0.0)
        c = tl.where(ok & (nrm > 1e-8), s * rn * rn * rn * vu, 0.0)
        dv = a * u - c * v
        ds += tl.where(ok & (q >= q_start), vu * rn, 0.0)
        dx = g0 + dv_prev - dv
        tl.store(DX + b * N * D + q * D + cols, dx.to(DX.dtype.element_ty),
                 mask=cols < tl.where(q >= q_start, D, 0))  # fmt: skip
        dv_prev = dv
        x_cur = x_next
        g0, g1, g2, g3, g4, g5 = g1, g2, g3, g4, g5, g6
    tl.store(PART + pid, ds)


def stream_forward(x, s, seg, warps, stages, pf=2):
    b, n, d = x.shape
    y = torch.empty_like(x)
    nseg = triton.cdiv(n, seg)
    _stream_fwd[(b * nseg,)](x, s, y, n, d, seg, nseg, *WEIGHTS,
                             BD=triton.next_power_of_2(d), NS=stages, PF=pf, num_warps=warps)  # fmt: skip
    return y


def stream_backward(x, s, dy, seg, warps, stages, pf=2):
    b, n, d = x.shape
    dx = torch.empty_like(x)
    nseg = triton.cdiv(n, seg)
    part = torch.empty(b * nseg, device=x.device, dtype=torch.float32)
    _stream_bwd[(b * nseg,)](x, s, dy, dx, part, n, d, seg, nseg, *WEIGHTS,
                             BD=triton.next_power_of_2(d), NS=stages, PF=pf, num_warps=warps)  # fmt: skip
    return dx, part.sum()


def reference(x, s):
    """y = x + s·T(x) in float64 (the op's definition; SPEC §3.2's trajectory signal)."""
    from sparkc.runtime.reference.splat import trajectory_signal

    return x + s * trajectory_signal(x, W)


def check(x, s, dy, cfg):
    """Stream forward, dx and d strength against float64 autograd of the reference."""
    xd = x.double().requires_grad_(True)
    sd = s.double().requires_grad_(True)
    want = reference(xd, sd)
    gx, gs = torch.autograd.grad(want, (xd, sd), dy.double())
    y = stream_forward(x, s, *cfg)
    dx, ds = stream_backward(x, s, dy, *cfg)
    tol = 1e-4 if x.dtype == torch.float32 else 3e-2
    # dx also past row 9: the repeated row 7 (main's 1e-8 norm clamp) makes dx_6, dx_7 ~1e8,
    # which would hide any other error of the whole tensor's maximum.
    pairs = (("y", y, want), ("dx", dx, gx), ("dx past the clamp", dx[:, 10:], gx[:, 10:]))
    for name, got, ref in (*pairs, ("ds", ds, gs)):
        err = (got.double() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
        assert err <= tol, f"{name}: relative error {err:.2e} over {tol:.0e} (cfg {cfg})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=65536, help="N (one sequence)")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.dry_run:
        a.rows, a.d, a.dtype = 45, 24, "fp32"
    device = "cpu" if a.dry_run else "cuda"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    torch.manual_seed(0)
    x = torch.randn(1, a.rows, a.d, device=device).to(dtype)
    x[:, 7] = x[:, 6]  # a zero difference (the 1e-8 clamp) inside the first segments
    dy = torch.randn_like(x)
    s = torch.tensor([0.7], device=device)
    cfgs = (
        [(8, 1, 1, 2), (16, 1, 2, 1), (5, 1, 1, 2)]
        if a.dry_run
        else [
            (seg, w, st, pf)
            for seg in (32, 64, 128)
            for w in (4, 8)
            for st in (1, 2)
            for pf in (1, 2)
        ]
    )
    for cfg in cfgs[:2]:  # each prefetch depth
        check(x[:, :4099] if not a.dry_run else x, s, dy[:, :4099] if not a.dry_run else dy, cfg)
    if a.dry_run:
        check(x, s, dy, cfgs[1])
        check(x, s, dy, cfgs[2])
        print("dry run: the stream kernels match float64 autograd of the reference")
        return 0
    from triton.testing import do_bench

    from sparkc import api

    def bench(fn):
        return do_bench(fn, warmup=10, rep=100, return_mode="median")

    nbytes = 2 * x.numel() * x.element_size()
    y = torch.empty_like(x)
    rows = [{"kernel": "torch copy", "ms": bench(lambda: y.copy_(x)), "cfg": None, "streams": 2}]
    for kind, fn, streams in (
        ("stream fwd", stream_forward, 2),
        ("stream bwd", stream_backward, 3),
    ):
        timed = []
        for cfg in cfgs:
            args = (x, s) if kind == "stream fwd" else (x, s, dy)
            try:
                timed.append((bench(lambda cfg=cfg, args=args, fn=fn: fn(*args, *cfg)), cfg))
            except Exception as e:  # noqa: BLE001 - a config that does not fit is reported
                print(f"  {kind} {cfg}: {type(e).__name__}: {str(e)[:80]}")
        best = min(timed) if timed else (float("nan"), None)
        rows.append({"kernel": kind, "ms": best[0], "cfg": best[1], "streams": streams,
                     "all": [[t, list(c)] for t, c in timed]})  # fmt: skip
    src = f"model T(d = {a.d}) {{\n input x: float[B, N, d]\n y = trajectory(x, window={W})\n output y\n}}\n"
    net = api.load_source(src, "traj_stream.spark").Model(impl="triton").to(device, dtype)
    with torch.no_grad():
        net(x=x)  # compile and tune
        rows.append({"kernel": "generated fwd (module call)", "ms": bench(lambda: net(x=x)),
                     "cfg": "tuned", "streams": 2})  # fmt: skip
    xg = x.detach().requires_grad_(True)
    yg = net(x=xg)["y"]
    torch.autograd.grad(yg, xg, dy, retain_graph=True)
    ms = bench(lambda: torch.autograd.grad(yg, xg, dy, retain_graph=True))
    rows.append({"kernel": "generated bwd (autograd)", "ms": ms, "cfg": "tuned", "streams": 3})
    print(f"{torch.cuda.get_device_name()}: x [1, {a.rows}, {a.d}] {a.dtype}, window {W}")
    # The table of bench/probe_trajectory_bound.py (run with `python3 -P`, which leaves the
    # script's folder off sys.path).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from probe_trajectory_bound import report

    report(rows, nbytes, rows[0]["ms"], "cfg", "cfg (SEG, warps, stages, prefetch)", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
