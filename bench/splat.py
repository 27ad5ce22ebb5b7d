"""Benchmark of SplatFlow's splat attention block (SPEC §3.1) on a GPU: sparkc's chunked-scan
kernels against the same block written with flash-linear-attention, the eager reference, its
torch.compile, and causal SDPA attention of the same width.

The block is y = wo(mix(φ, wv x)) with φ = softmax_k(−‖wa x − c_k‖²/(2σ_k²) + log_amp_k) per head
(D=1024, H=8, K=64 by default), causal and normalised, at B=4 N=4096, B=1 N=16384 and B=1
N=65536. Rows, each forward (no grad) and forward+backward (of Σ y), timed with
triton.testing.do_bench medians, with the peak memory of one call above what was allocated:
  - sparkc: the generated module of a one-op `.spark` program (Triton path: one fused wa/wv GEMM,
    the chunked-scan kernels, the wo GEMM);
  - fla-core: projections and responsibilities in torch, then fla's
    `chunk_linear_attn(φ, φ, v, scale=1, normalize=True)` (fla-core 0.6.0, imported from the
    installed package or, failing that, unpacked from the wheels in --wheels; skipped with a
    note when neither works);
  - eager: the module's reference path (the chunked state form in PyTorch);
  - torch.compile: that reference path compiled (unless --no-compile);
  - sdpa: causal attention of the same width (q, k, v, o projections + scaled_dot_product_attention).
Time per token (ns) and its ratio to the shortest length show the scaling in N (target: within
1.2× from 4k to 64k). A first check compares sparkc's and fla's outputs on the same parameters.

`--chunks 64,32` adds a sparkc row per chunk size (the first is the default row "sparkc").

`--model` times instead a training step (forward, loss.backward(), AdamW step) of
examples/splatflow.spark at d=1024, 8 heads, 64 splats, 4 layers, vocab 32000, N=4096 (B=4 by
default) on sparkc's kernels, against torch.compile of its reference path and against the same
model with `attention` in place of `splat_attention` (sparkc kernels), and prints the loss
before and after --model-steps steps on next-token progressions (it must fall).

Run: python bench/splat.py [--dtype bf16|fp32] [--shapes 4x4096,1x16384,1x65536] [--out r.json]
     [--no-compile] [--no-eager] [--wheels .whl] [--chunks 64,32]
     python bench/splat.py --model [--model-batch 4] [--model-seq 4096] [--out m.json]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from sparkc.tools.benchutil import median_ms, peak_mb

SRC = """
model SplatBench(d = {d}) {{
  input x: float[B, N, d]
  y = splat_attention(x, splats={k}, heads={h}, causal=true, normalize=true)
  output y
}}
"""


bench = functools.partial(median_ms, warmup=3, rep=30)


def import_fla(wheels: Path):
    """fla's chunk_linear_attn, from the installed package or from the wheels in `wheels`
    (fla-core and einops are pure Python: unpacking them onto sys.path is an install)."""
    try:
        return importlib.import_module("fla.ops.linear_attn").chunk_linear_attn, "installed"
    except ImportError:
        pass
    found = sorted(wheels.glob("fla_core-*.whl")) + sorted(wheels.glob("einops-*.whl"))
    if not found:
        return None, f"not installed and no fla_core wheel in {wheels}"
    target = Path(tempfile.mkdtemp(prefix="fla_wheels_"))
    for whl in found:
        with zipfile.ZipFile(whl) as z:
            z.extractall(target)
    sys.path.insert(0, str(target))
    try:
        fn = importlib.import_module("fla.ops.linear_attn").chunk_linear_attn
    except Exception as e:  # noqa: BLE001 - reported in the table instead
        return None, f"import failed: {type(e).__name__}: {e}"
    return fn, ", ".join(w.name for w in found)


def fla_block(chunk_linear_attn, p: dict, heads: int):
    """The block as a user writes it with fla: GEMMs and the responsibilities in torch (float32
    softmax, cast back), then fla's chunked linear attention with the normaliser."""

    def run(x):
        b, n, dm = x.shape
        hd = dm // heads
        u = (x @ p["wa.weight"].T).view(b, n, heads, hd).float()
        v = (x @ p["wv.weight"].T).view(b, n, heads, hd)
        c = p["centers"].float()
        dist = (
            u.square().sum(-1, keepdim=True)
            - 2 * torch.einsum("bnhd,hkd->bnhk", u, c)
            + c.square().sum(-1)[None, None]
        )
        z = -dist * 0.5 * torch.exp(-2 * p["log_scale"].float()) + p["log_amp"].float()
        phi = torch.softmax(z, -1).to(x.dtype)  # [B, N, H, K]
        o, _ = chunk_linear_attn(phi, phi, v, scale=1.0, normalize=True)
        return o.reshape(b, n, dm) @ p["wo.weight"].T

    return run


def sdpa_block(d: int, heads: int, dtype):
    g = torch.Generator(device="cuda").manual_seed(1)
    ws = [
        (torch.randn(d, d, device="cuda", generator=g) / math.sqrt(d)).to(dtype).requires_grad_()
        for _ in range(4)
    ]

    def run(x):
        b, n, dm = x.shape
        q, k, v = ((x @ w.T).view(b, n, heads, dm // heads).transpose(1, 2) for w in ws[:3])
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2).reshape(b, n, dm) @ ws[3].T

    return run


def rows_for(impl: str, fn, x: torch.Tensor, shape: tuple[int, int]) -> list[dict]:
    xg = x.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return fn(x)

    def fwd_bwd():
        fn(xg).float().sum().backward()

    out = []
    for mode, f in (("forward", fwd), ("forward+backward", fwd_bwd)):
        try:
            f()  # warm-up: compiles kernels, tunes tiles, builds torch.compile graphs
            ms = bench(f)
            mb = peak_mb(f)
        except torch.cuda.OutOfMemoryError:
            ms, mb = float("nan"), float("nan")
            torch.cuda.empty_cache()
        b, n = shape
        out.append(
            {
                "impl": impl,
                "mode": mode,
                "B": b,
                "N": n,
                "ms": ms,
                "peak_mb": mb,
                "ns_per_token": ms * 1e6 / (b * n),
            }
        )
    return out


SPLAT_CALL = "splat_attention(layernorm(x), splats=splats, heads=heads, causal=true)"
ATTN_CALL = "attention(layernorm(x), heads=heads, causal=true)"


def model_rows(args, dtype) -> list[dict]:
    from sparkc import api
    from sparkc.tools.demo_data import progressions

    src = (Path(__file__).resolve().parents[1] / "examples" / "splatflow.spark").read_text()
    assert SPLAT_CALL in src, "examples/splatflow.spark no longer has the mixer this replaces"
    b, n = args.model_batch, args.model_seq
    hyper = {"vocab": 32000, "d": 1024, "heads": 8, "splats": 64, "layers": 4, "max_len": n}
    splat = api.load_source(src, "splatflow.spark", **hyper)
    attn = api.load_source(src.replace(SPLAT_CALL, ATTN_CALL), "splatflow_attn.spark", **hyper)
    tokens, targets = progressions(b, n, hyper["vocab"], torch.Generator().manual_seed(0))
    tokens, targets = tokens.cuda(), targets.cuda()
    variants = [("sparkc splatflow", splat, "triton", False)]
    if not args.no_compile:
        variants.append(("torch.compile splatflow reference", splat, "reference", True))
    variants.append(("sparkc splatflow with attention", attn, "triton", False))
    rows = []
    for label, module, impl, compiled in variants:
        torch.manual_seed(0)
        net = module.Model(impl=impl).cuda().to(dtype)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
        run = torch.compile(net) if compiled else net

        def step(run=run, opt=opt):
            opt.zero_grad(set_to_none=True)
            out = run(tokens, targets)
            out.loss.backward()
            opt.step()
            return out.loss.detach()

        first = float(step())
        for _ in range(args.model_steps - 1):
            last = step()
        last = float(last)
        ms = bench(step)
        mb = peak_mb(step)
        rows.append(
            {
                "impl": label,
                "mode": "train step",
                "B": b,
                "N": n,
                "ms": ms,
                "peak_mb": mb,
                "ns_per_token": ms * 1e6 / (b * n),
                "loss_first": first,
                "loss_last": last,
            }
        )
        print(f"{label:<36}{ms:>10.2f} ms{mb:>10.0f} MB  loss {first:.3f} -> {last:.3f}")
        del net, opt, run
        torch.cuda.empty_cache()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--shapes", default="4x4096,1x16384,1x65536", help="BxN,BxN,...")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--splats", type=int, default=64)
    ap.add_argument("--out", "--json", dest="out", default=None, help="write the rows as JSON here")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager reference")
    ap.add_argument("--wheels", default=".whl", help="folder with fla_core/einops wheels")
    ap.add_argument(
        "--chunks", default="64", help="sparkc chunk sizes to time (one row each), e.g. 64,32"
    )
    ap.add_argument("--model", action="store_true", help="time splatflow.spark training steps")
    ap.add_argument("--model-batch", type=int, default=4)
    ap.add_argument("--model-seq", type=int, default=4096)
    ap.add_argument("--model-steps", type=int, default=30, help="steps before timing")
    args = ap.parse_args()

    from sparkc import api

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if args.model:
        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  {args.dtype}")
        rows = model_rows(args, dtype)
        if args.out:
            meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
            Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return 0
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    module = api.load_source(SRC.format(d=args.d, k=args.splats, h=args.heads), "splat_bench.spark")
    torch.manual_seed(0)
    tri = module.Model(impl="triton").cuda().to(dtype)
    ref = module.Model(impl="reference").cuda().to(dtype)
    ref.load_state_dict(tri.state_dict())
    with torch.no_grad():  # splats that differ from one another (log_amp starts at zero)
        for m in (tri, ref):
            m.get_parameter("y.log_amp").copy_(
                torch.randn(args.heads, args.splats, generator=torch.Generator().manual_seed(3))
            )
    params = {k[2:]: v for k, v in tri.named_parameters()}
    cla, fla_note = import_fla(Path(args.wheels))
    tri(x=torch.randn(1, 8, args.d, device="cuda", dtype=dtype))  # loads the kernels module
    tiles = [
        getattr(m, a)
        for n, m in list(sys.modules.items())
        if n.startswith(module.__name__) and n.endswith(".kernels")
        for a in dir(m)
        if a.endswith("_GPU_TILES")
    ]
    assert tiles, "no splat fragment found in the generated kernels"

    def sparkc(chunk: int):
        def run(x):
            for t in tiles:  # read by the forward and the backward launches of this call
                t["chunk"] = chunk
            return tri(x=x).y

        return run

    chunks = [int(c) for c in args.chunks.split(",")]
    impls = [("sparkc" if c == chunks[0] else f"sparkc T={c}", sparkc(c)) for c in chunks]
    if cla is not None:
        impls.append(("fla-core", fla_block(cla, params, args.heads)))
    if not args.no_eager:
        impls.append(("eager", lambda x: ref(x=x).y))
    if not args.no_compile:
        compiled = torch.compile(ref)
        impls.append(("torch.compile", lambda x: compiled(x=x).y))
    impls.append(("sdpa", sdpa_block(args.d, args.heads, dtype)))

    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  dtype {args.dtype}")
    print(f"fla-core: {fla_note}")
    g = torch.Generator(device="cuda").manual_seed(0)
    check = torch.randn(1, 1024, args.d, device="cuda", generator=g, dtype=dtype)
    with torch.no_grad():
        want = ref(x=check).y.float()
        for impl, fn in impls:
            if not impl.startswith(("sparkc", "fla-core")):
                continue
            got = fn(check).float()
            err = float((got - want).norm() / want.norm())
            print(f"check {impl} vs eager reference at N=1024: relative error {err:.2e}")
    rows = []
    for b, n in shapes:
        x = torch.randn(b, n, args.d, device="cuda", generator=g, dtype=dtype)
        for impl, fn in impls:
            rows += rows_for(impl, fn, x, (b, n))
        del x
        torch.cuda.empty_cache()
    first = {(r["impl"], r["mode"]): r["ns_per_token"] for r in rows if r["N"] == shapes[0][1]}
    head = f"{'impl':<14}{'mode':<18}{'B':>3}{'N':>7}{'ms':>10}{'peak MB':>10}"
    print(head + f"{'ns/token':>10}{'vs first N':>11}")
    for r in rows:
        ratio = r["ns_per_token"] / first.get((r["impl"], r["mode"]), float("nan"))
        r["per_token_vs_first"] = ratio
        print(
            f"{r['impl']:<14}{r['mode']:<18}{r['B']:>3}{r['N']:>7}{r['ms']:>10.3f}"
            f"{r['peak_mb']:>10.0f}{r['ns_per_token']:>10.2f}{ratio:>11.2f}"
        )
    by = {(r["impl"], r["mode"], r["N"]): r["ms"] for r in rows}
    for mode in ("forward", "forward+backward"):
        for _, n in shapes:
            if ("fla-core", mode, n) in by:
                speed = by[("fla-core", mode, n)] / by[("sparkc", mode, n)]
                print(f"fla-core / sparkc {mode} N={n}: {speed:.2f}x (target > 1)")
    if args.out:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        meta.update(dtype=args.dtype, d=args.d, heads=args.heads, splats=args.splats, fla=fla_note)
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
