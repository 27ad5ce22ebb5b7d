"""Which GEMM main-loop structure closes the gap to cuBLAS on this GPU: a probe outside the
template, so the answer is known before the template (codegen_templates/primitives_matmul.py.jinja) grows
another constexpr.

One hand-written Triton GEMM, Y = act(X @ W.T + b) (X [M, K], W [N, K], bf16, fp32 accumulate),
built from device-side tensor descriptors, with the variants the template does not have yet:
  - WS: Triton's automatic warp specialisation of the K loop (`tl.range(..., warp_specialize=
    True)`; producer warps issue the TMA loads, consumer warps the wgmma), or of the tile loop of
    the persistent grid (no flattening: on Hopper WS and `flatten` do not combine);
  - STORE: the output tile written through a descriptor (TMA store) instead of masked stores;
and the template's own structures for reference (one program per tile; the persistent grid with
the tile loop flattened into the K loop). Each variant is compiled for each configuration
(tile, stages, warps); a configuration the compiler rejects prints why and is skipped. Times
are `triton.testing.do_bench` medians next to `torch.matmul` (F.linear) alone and with the
epilogue in torch, all in one run; the best configuration per variant and size is printed.
Timings only: no assertions. --json PATH writes every row.

Run on the GPU machine: python bench/probe_gemm_loops.py [--sizes 1024,2048,4096] [--M 8192]
[--epilogue none|bias+gelu] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit
def _gelu(z):
    return 0.5 * z * (1.0 + tl.erf(z * 0.7071067811865476))


@triton.jit
def _tile_coords(tile, num_m, num_n, GROUP_M: tl.constexpr):
    width = GROUP_M * num_n
    first_m = (tile // width) * GROUP_M
    group = min(num_m - first_m, GROUP_M)
    return first_m + (tile % width) % group, (tile % width) // group


@triton.jit
def _finish(
    acc,
    B,
    Y,
    y_desc,
    pid_m,
    pid_n,
    M,
    N,
    BM: tl.constexpr,
    BN: tl.constexpr,
    EPI: tl.constexpr,
    STORE_DESC: tl.constexpr,
):
    rn = pid_n * BN + tl.arange(0, BN)
    if EPI:
        bias = tl.load(B + rn, mask=rn < N, other=0.0).to(tl.float32)
        acc = _gelu(acc + bias[None, :])
    out = acc.to(tl.bfloat16)
    if STORE_DESC:
        y_desc.store([pid_m * BM, pid_n * BN], out)
    else:
        rm = pid_m * BM + tl.arange(0, BM)
        mask = (rm < M)[:, None] & (rn < N)[None, :]
        tl.store(Y + rm.to(tl.int64)[:, None] * N + rn[None, :], out, mask=mask)


@triton.jit
def probe_kernel(
    X,
    W,
    B,
    Y,
    M,
    N,
    K,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    GROUP_M: tl.constexpr,
    PERSISTENT: tl.constexpr,
    WS: tl.constexpr,
    FLATTEN: tl.constexpr,
    EPI: tl.constexpr,
    STORE_DESC: tl.constexpr,
):
    x_desc = tl.make_tensor_descriptor(X, [M, K], [K, 1], [BM, BK])
    w_desc = tl.make_tensor_descriptor(W, [N, K], [K, 1], [BN, BK])
    y_desc = tl.make_tensor_descriptor(Y, [M, N], [N, 1], [BM, BN])
    num_m = tl.cdiv(M, BM)
    num_n = tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    if PERSISTENT:
        for tile in tl.range(
            tl.program_id(0), num_m * num_n, tl.num_programs(0), flatten=FLATTEN, warp_specialize=WS
        ):
            pid_m, pid_n = _tile_coords(tile, num_m, num_n, GROUP_M)
            acc = tl.zeros((BM, BN), dtype=tl.float32)
            for k in range(k_tiles):
                a = x_desc.load([pid_m * BM, k * BK])
                b = w_desc.load([pid_n * BN, k * BK])
                acc = tl.dot(a, b.T, acc)
            _finish(acc, B, Y, y_desc, pid_m, pid_n, M, N, BM, BN, EPI, STORE_DESC)
    else:
        pid_m, pid_n = _tile_coords(tl.program_id(0), num_m, num_n, GROUP_M)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k in tl.range(k_tiles, warp_specialize=WS):
            a = x_desc.load([pid_m * BM, k * BK])
            b = w_desc.load([pid_n * BN, k * BK])
            acc = tl.dot(a, b.T, acc)
        _finish(acc, B, Y, y_desc, pid_m, pid_n, M, N, BM, BN, EPI, STORE_DESC)


# variant -> (PERSISTENT, WS, FLATTEN)
VARIANTS = {
    "tile": (False, False, False),
    "tile+ws": (False, True, False),
    "persistent+flatten": (True, False, True),
    "persistent": (True, False, False),
    "persistent+ws": (True, True, False),
}
# (BM, BN, BK, stages, warps)
CONFIGS = [
    (128, 128, 64, 4, 4),
    (128, 128, 64, 5, 4),
    (128, 128, 64, 4, 8),
    (128, 256, 64, 3, 8),
    (128, 256, 64, 4, 8),
    (256, 128, 64, 3, 8),
    (128, 128, 128, 3, 8),
    (64, 256, 64, 4, 4),
]
QUICK = [(128, 128, 64, 4, 4), (128, 256, 64, 3, 8)]


def _scratch(size: int, alignment: int, stream) -> torch.Tensor:
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _eager(x, w, b):
    return F.linear(x, w) if b is None else F.gelu(F.linear(x, w, b))


def launch(x, w, b, y, cfg, variant, epi, store_desc, sms):
    bm, bn, bk, stages, warps = cfg
    persistent, ws, flatten = VARIANTS[variant]
    m, k = x.shape
    n = w.shape[0]
    tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
    grid = (min(sms, tiles),) if persistent else (tiles,)
    probe_kernel[grid](
        x,
        w,
        b,
        y,
        m,
        n,
        k,
        BM=bm,
        BN=bn,
        BK=bk,
        GROUP_M=8,
        PERSISTENT=persistent,
        WS=ws,
        FLATTEN=flatten,
        EPI=epi,
        STORE_DESC=store_desc,
        num_stages=stages,
        num_warps=warps,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--M", type=int, default=8192)
    ap.add_argument("--epilogue", choices=("none", "bias+gelu"), default="bias+gelu")
    ap.add_argument("--quick", action="store_true", help="two configurations only")
    ap.add_argument("--json")
    args = ap.parse_args()
    triton.set_allocator(_scratch)
    dev = torch.cuda.get_device_properties(0)
    sms = dev.multi_processor_count
    epi = args.epilogue != "none"
    rows = []
    print(
        f"{dev.name}, torch {torch.__version__}, triton {triton.__version__}, "
        f"M={args.M}, bf16, epilogue {args.epilogue}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        m, n, k = args.M, size, size
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g) / math.sqrt(k)
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=g)
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        flops = 2 * m * n * k
        ref = F.gelu(F.linear(x.float(), w.float(), b.float())) if epi else x.float() @ w.float().T
        t_mm = triton.testing.do_bench(functools.partial(F.linear, x, w), warmup=50, rep=200)
        t_eager = triton.testing.do_bench(
            functools.partial(_eager, x, w, b if epi else None), warmup=50, rep=200
        )
        print(
            f"\nK=N={size}: torch.matmul {t_mm * 1e3:.1f} us ({flops / t_mm / 1e9:.0f} TFLOP/s), "
            f"eager with epilogue {t_eager * 1e3:.1f} us"
        )
        rows.append({"size": size, "variant": "torch.matmul", "us": t_mm * 1e3})
        rows.append({"size": size, "variant": "eager", "us": t_eager * 1e3})
        for variant in VARIANTS:
            for store_desc in (False, True):
                best = None
                for cfg in QUICK if args.quick else CONFIGS:
                    try:
                        y.zero_()
                        launch(x, w, b, y, cfg, variant, epi, store_desc, sms)
                        torch.cuda.synchronize()
                        err = ((y.float() - ref).norm() / ref.norm()).item()
                        if not err < 2e-2:
                            print(
                                f"  {variant:20s} store_desc={store_desc!s:5s} {cfg}: WRONG (rel err {err:.3g})"
                            )
                            continue
                        t = triton.testing.do_bench(
                            functools.partial(
                                launch, x, w, b, y, cfg, variant, epi, store_desc, sms
                            ),
                            warmup=50,
                            rep=200,
                        )
                    except Exception as e:  # noqa: BLE001 - a rejected configuration is a result
                        msg = str(e).strip().splitlines()
                        print(
                            f"  {variant:20s} store_desc={store_desc!s:5s} {cfg}: failed: "
                            f"{type(e).__name__}: {msg[0][:120] if msg else ''}"
                        )
                        torch.cuda.synchronize()
                        continue
                    rows.append(
                        {
                            "size": size,
                            "variant": variant,
                            "store_desc": store_desc,
                            "cfg": list(cfg),
                            "us": t * 1e3,
                        }
                    )
                    if best is None or t < best[0]:
                        best = (t, cfg)
                if best:
                    t, cfg = best
                    print(
                        f"  {variant:20s} store_desc={store_desc!s:5s} best {cfg}: {t * 1e3:7.1f} us "
                        f"{flops / t / 1e9:5.0f} TFLOP/s  {t_mm / t:6.1%} of torch.matmul"
                    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
