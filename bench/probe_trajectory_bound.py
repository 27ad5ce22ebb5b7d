"""Probe: what bounds the `trajectory` kernels below 80% of copy bandwidth (issue 19)?

The generated forward (codegen_templates/splat_trajectory.py.jinja) reads each tile of BR rows
twice (pass 1: difference norms over all of D; pass 2: the output rows, loading W + 1 shifted
[BQ, DC] row blocks per column chunk from cache) and writes y once. It measured 52–70% of a
copy on the H100 (2026-12-06). This times, on the same x [R, D] and the same tiling (a program
walks tiles pid, pid + G, … with G = PER_SM × SMs), kernels that add one ingredient at a time:

  copy_tiled    pass 2 only, one row block per chunk: y = x (the tiling and grid alone)
  two_pass      pass 1 (row sums of squares over D) then pass 2 with one row block: y = x·c_row
  shifted       pass 2 alone loading the W + 1 shifted row blocks, y = Σ_i w_i x_{p−i}
  shifted_norm  both: pass 1's row norms, then pass 2's shifted loads scaled by them (the
                generated kernel's structure without its bookkeeping)
  one_pass      shifted_norm with one column chunk spanning all of D (DC ≥ D): pass 2 re-reads
                the rows pass 1 has just loaded (L1, not L2); the registers then hold a [BR, D]
                tile, so only short tiles and many warps
  generated     the op's own forward kernel (compiled from a one-op program; its tuned tile)
  bwd_copy      the backward's traffic alone: dx = x + dy (3 streams), the tiling and grid
  bwd_shape     the backward's structure bare: pass 1 per-row Σ x², Σ x·dy over D, then pass 2
                dx_p from dy_p .. dy_{p+W} and x_{p−1}, x_p, x_{p+1} (the generated kernel's
                loads, without its bookkeeping)
  generated backward  the op's backward (autograd.grad through the module call's graph)

against `torch` copy of the same bytes. The first row that falls away from the copy names the
ingredient that costs: the grid/tiling, the second pass over cache, or the shifted loads (L1/L2
traffic W + 1 times the data). Each probe kernel is timed over a few tiles and its best shown
(medians of `triton.testing.do_bench`). Consumes a CUDA device (`--dry-run`: the interpreter at
a tiny shape, numbers mean nothing, checks the kernels against torch). Prints a table; `--json`.

    python3 -P bench/probe_trajectory_bound.py [--rows 65536] [--d 1024] [--window 6] [--json f]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch
import triton
import triton.language as tl


@triton.jit
def _probe_kernel(
    X, DY, Y, R, D, tiles, BQ,
    W: tl.constexpr, MODE: tl.constexpr, BR: tl.constexpr, DC: tl.constexpr,
):  # fmt: skip
    # MODE 0: copy_tiled, 1: two_pass, 2: shifted, 3: shifted_norm, 4: bwd_copy, 5: bwd_shape.
    # A forward tile covers output rows [t·BQ, t·BQ + BQ) and reads W − 1 halo rows above them
    # (BR = BQ + W − 1 rows in all, as the generated kernel); a backward tile (4, 5) is BQ = BR
    # rows of dx, its shifted rows (dy up to W ahead, x one either side) loaded in pass 2.
    pid = tl.program_id(0)
    rr = tl.arange(0, BR)
    cc = tl.arange(0, DC)
    for t in range(pid, tiles, tl.num_programs(0)):
        p0 = t * BQ
        rows_in = p0 - (W - 1) + rr  # the tile's rows, halo first
        ok_in = (rows_in >= 0) & (rows_in < R)
        out_rows = p0 + rr
        ok_out = (rr < BQ) & (out_rows < R)
        scale = tl.full((BR,), 1.0, tl.float32)
        if MODE == 1 or MODE == 3:
            ss = tl.zeros((BR,), tl.float32)
            for c0 in range(0, D, DC):
                m = ok_in[:, None] & (c0 + cc < D)[None, :]
                v = tl.load(X + rows_in[:, None] * D + c0 + cc[None, :], mask=m, other=0.0)
                v = v.to(tl.float32)
                ss += tl.sum(v * v, 1)
            scale = 1.0 / tl.sqrt(ss + 1.0)
        if MODE == 5:  # the backward's pass 1: per row Σ x² and Σ x·dy over all of D
            ss = tl.zeros((BR,), tl.float32)
            sg = tl.zeros((BR,), tl.float32)
            for c0 in range(0, D, DC):
                m = ok_out[:, None] & (c0 + cc < D)[None, :]
                offs = out_rows[:, None] * D + c0 + cc[None, :]
                v = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
                g = tl.load(DY + offs, mask=m, other=0.0).to(tl.float32)
                ss += tl.sum(v * v, 1)
                sg += tl.sum(v * g, 1)
            scale = sg / (ss + 1.0)
        for c0 in range(0, D, DC):
            cm = (c0 + cc < D)[None, :]
            if MODE >= 4:  # backward rows: dx from dy (W + 1 rows ahead) and x (3 rows)
                m = ok_out[:, None] & cm
                offs = out_rows[:, None] * D + c0 + cc[None, :]
                acc = tl.load(DY + offs, mask=m, other=0.0).to(tl.float32)
                v = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
                if MODE == 4:
                    acc += v
                else:
                    acc += scale[:, None] * v
                    for i in tl.static_range(1, W + 1):
                        src = out_rows + i
                        mi = (ok_out & (src < R))[:, None] & cm
                        g = tl.load(DY + src[:, None] * D + c0 + cc[None, :], mask=mi, other=0.0)
                        acc += (1.0 + 0.125 * i) * g.to(tl.float32)
                    for j in tl.static_range(2):
                        src = out_rows - 1 + 2 * j
                        mj = (ok_out & (src >= 0) & (src < R))[:, None] & cm
                        xv = tl.load(X + src[:, None] * D + c0 + cc[None, :], mask=mj, other=0.0)
                        acc += 0.5 * xv.to(tl.float32)
            elif MODE <= 1:
                m = ok_out[:, None] & cm
                v = tl.load(X + out_rows[:, None] * D + c0 + cc[None, :], mask=m, other=0.0)
                acc = v.to(tl.float32)
                if MODE == 1:
                    acc = acc * scale[:, None]
            else:
                acc = tl.zeros((BR, DC), tl.float32)
                for i in tl.static_range(W + 1):
                    src = out_rows - i
                    m = (ok_out & (src >= 0))[:, None] & cm
                    v = tl.load(X + src[:, None] * D + c0 + cc[None, :], mask=m, other=0.0)
                    acc += (1.0 + 0.125 * i) * v.to(tl.float32)
                if MODE == 3:
                    acc = acc * scale[:, None]
            tl.store(Y + out_rows[:, None] * D + c0 + cc[None, :], acc.to(Y.dtype.element_ty),
                     mask=ok_out[:, None] & cm)  # fmt: skip


MODES = {
    "copy_tiled": 0, "two_pass": 1, "shifted": 2, "shifted_norm": 3, "one_pass": 3,
    "bwd_copy": 4, "bwd_shape": 5,
}  # fmt: skip
BACKWARD = ("bwd_copy", "bwd_shape")


def run_probe(x, y, mode, br, dc, warps, per_sm, window, sms, dy=None):
    r, d = x.shape
    bq = br if mode in BACKWARD else br - (window - 1)
    tiles = triton.cdiv(r, bq)
    grid = (tiles if per_sm == 0 else min(tiles, per_sm * sms),)
    _probe_kernel[grid](x, x if dy is None else dy, y, r, d, tiles, bq, W=window, MODE=MODES[mode], BR=br, DC=dc,
                        num_warps=warps)  # fmt: skip


def reference(x, mode, window, dy=None):
    xf = x.float()
    if mode in BACKWARD:
        g = dy.float()
        if mode == "bwd_copy":
            return xf + g
        out = xf * ((xf * g).sum(1) / ((xf * xf).sum(1) + 1.0))[:, None] + g
        for i in range(1, window + 1):
            out[: xf.shape[0] - i] += (1.0 + 0.125 * i) * g[i:]
        out[1:] += 0.5 * xf[:-1]
        out[:-1] += 0.5 * xf[1:]
        return out
    if mode == "copy_tiled":
        return xf
    # two_pass / shifted_norm: row p scaled by the norm of row p − (W − 1), the tile's row r
    ss = torch.cat((xf.new_zeros(window - 1), (xf * xf).sum(1)))[: xf.shape[0]]
    if mode == "two_pass":
        return xf / torch.sqrt(ss + 1.0)[:, None]
    out = torch.zeros_like(xf)
    for i in range(window + 1):
        out[i:] += (1.0 + 0.125 * i) * xf[: xf.shape[0] - i]
    return out if mode == "shifted" else out / torch.sqrt(ss + 1.0)[:, None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=65536, help="B·N")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    dry = a.dry_run
    if dry:
        a.rows, a.d, a.dtype = 37, 24, "fp32"
    device = "cpu" if dry else "cuda"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    x = torch.randn(a.rows, a.d, device=device, generator=None).to(dtype)
    y = torch.empty_like(x)
    dy = torch.randn(a.rows, a.d, device=device).to(dtype)
    sms = 2 if dry else torch.cuda.get_device_properties(0).multi_processor_count
    tiles = [(16, 8, 1, 1)] if dry else [
        (br, dc, warps, per_sm)
        for br in (32, 64)
        for dc in (64, 128)
        for warps in (4, 8)
        for per_sm in (2, 4, 0)
    ]  # fmt: skip
    dp = triton.next_power_of_2(a.d)
    one_pass = [(16, dp, 1, 1)] if dry else [
        (br, dp, warps, per_sm)
        for br in (16, 32)
        for warps in (8, 16)
        for per_sm in (1, 2, 0)
    ]  # fmt: skip
    tiles_of = {m: one_pass if m == "one_pass" else tiles for m in MODES}
    for mode in MODES:  # correctness first, every probe against torch
        run_probe(x, y, mode, *tiles_of[mode][0], a.window, sms, dy=dy)
        want = reference(x, mode, a.window, dy)
        err = (y.float() - want).abs().max().item()
        scale = want.abs().max().item()
        assert err <= (1e-5 if dtype == torch.float32 else 2e-2) * scale, (mode, err)
    if dry:
        print("dry run: every probe kernel matches torch under the interpreter")
        return 0
    from triton.testing import do_bench

    from sparkc import api

    nbytes = 2 * x.numel() * x.element_size()
    copy = do_bench(lambda: y.copy_(x), warmup=25, rep=200, return_mode="median")
    rows = [{"kernel": "torch copy", "ms": copy, "tile": None}]
    for mode in MODES:
        timed = []
        for t in tiles_of[mode]:
            try:
                timed.append((do_bench(lambda t=t, mode=mode: run_probe(x, y, mode, *t, a.window, sms, dy=dy),
                                       warmup=10, rep=100, return_mode="median"), t))  # fmt: skip
            except Exception as e:  # noqa: BLE001 - a tile that does not fit is skipped
                print(f"  {mode} {t}: {type(e).__name__}")
        best = min(timed) if timed else (float("nan"), None)
        rows.append(
            {
                "kernel": mode,
                "ms": best[0],
                "tile": best[1],
                "streams": 3 if mode in BACKWARD else 2,
            }
        )
    src = f"model T(d = {a.d}) {{\n input x: float[B, N, d]\n y = trajectory(x, window={a.window})\n output y\n}}\n"
    module = api.load_source(src, "traj_probe.spark")
    net = module.Model(impl="triton").to(device=device, dtype=dtype)
    x3 = x.view(1, a.rows, a.d)
    with torch.no_grad():
        net(x=x3)  # compile and tune
        ms = do_bench(lambda: net(x=x3), warmup=10, rep=100, return_mode="median")
    rows.append({"kernel": "generated (module call)", "ms": ms, "tile": "tuned"})
    # The generated backward alone: autograd.grad through a kept graph (its kernels: dx and the
    # d strength slots; reads x and dy, writes dx).
    xg = x3.detach().requires_grad_(True)
    yg = net(x=xg)["y"]
    dy3 = dy.view_as(yg)
    torch.autograd.grad(yg, xg, dy3, retain_graph=True)
    ms = do_bench(lambda: torch.autograd.grad(yg, xg, dy3, retain_graph=True), warmup=10, rep=100,
                  return_mode="median")  # fmt: skip
    rows.append({"kernel": "generated backward", "ms": ms, "tile": "tuned", "streams": 3})
    print(f"{torch.cuda.get_device_name()}: x [{a.rows}, {a.d}] {a.dtype}, window {a.window},"
          f" {nbytes / 1e6:.0f} MB moved at least")  # fmt: skip
    report(rows, nbytes, copy, "tile", "tile (BR, DC, warps, PER_SM)", a.json)
    return 0


def report(rows, nbytes, copy_ms, key, label, json_path):
    """Print the table (and write `json_path`): per row its median ms, GB/s of its minimum bytes
    and % copy, the row's minimum bytes (2 streams forward: x in, y out; 3 backward: x and dy
    in, dx out; `nbytes` is 2 streams) per ms against the copy's bytes per ms."""
    print(f"{'kernel':28s} {'ms':>8s} {'GB/s':>7s} {'% copy':>7s}  {label}")
    for r in rows:
        moved = nbytes * r.get("streams", 2) / 2
        print(f"{r['kernel']:28s} {r['ms']:8.4f} {moved / r['ms'] / 1e6:7.0f}"
              f" {100 * (moved / r['ms']) / (nbytes / copy_ms):6.1f}%  {r[key]}")  # fmt: skip
    if json_path:
        Path(json_path).write_text(
            json.dumps({"device": torch.cuda.get_device_name(), "rows": rows})
        )


if __name__ == "__main__":
    sys.exit(main())
