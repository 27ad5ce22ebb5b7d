"""Benchmark of sparkc's flash-attention template against torch SDPA and FlexAttention.

Consumes: command-line shape options (default B=4, H=16, N=4096, d=128, causal, bfloat16).
Produces: a table of median times (Triton `do_bench`) and TFLOP/s for the forward pass and for
forward+backward, for sparkc's kernels (plain, and with the RoPE / procedural-bias / GQA hooks),
`torch.nn.functional.scaled_dot_product_attention`, and FlexAttention (compiled) when importable;
`--json PATH` also writes the rows as JSON. Needs a CUDA GPU. Timings are printed, never asserted.

FLOP counts: forward 4·B·H·N²·d (two matmuls), halved when causal; forward+backward 3.5× that
(the backward recomputes QKᵀ and runs four more matmuls), the convention of the FlashAttention
papers, applied to every implementation alike.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render
from sparkc.tools.benchutil import median_ms


def build(name: str, **hooks: Any) -> Callable[..., torch.Tensor]:
    ctx = {
        "name": name,
        "causal": True,
        "group": 1,
        "rope": False,
        "rope_base": 10000.0,
        "basis": None,
    }
    ctx.update(hooks)
    text = render("prelude.py.jinja", version="bench", source_name="bench_attention")
    return getattr(load_source(name, text + "\n\n" + render("attention.py.jinja", **ctx)), name)


def chosen_tiles(fn: Callable[..., torch.Tensor]) -> dict[str, list[int]]:
    """The tile configurations a generated attention function's tuner settled on, by kernel."""
    choices = fn.__globals__.get(f"{fn.__name__}_CHOICES", {})
    return {shape_class[0]: list(choice) for (shape_class, _device), choice in choices.items()}


bench = functools.partial(median_ms, warmup=25, rep=100)


def time_fwd_bwd(run: Callable[[], torch.Tensor], inputs: list[torch.Tensor]) -> float:
    out = run()
    grad = torch.randn_like(out)

    def step() -> None:
        for t in inputs:
            t.grad = None
        run().backward(grad)

    return bench(step)


# The rows --only can choose from.
IMPLS = ("sdpa", "sparkc", "flex", "rope", "basis", "gqa")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--non-causal", action="store_true")
    ap.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    ap.add_argument(
        "--basis-rows",
        default="distance,per-element,key",
        help="which basis rows of --only basis (each compiles and tunes its own kernels)",
    )
    ap.add_argument(
        "--only",
        default=",".join(IMPLS),
        help=f"comma-separated subset of {','.join(IMPLS)} (sdpa is always run: it is the check)",
    )
    args = ap.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(IMPLS)
    if unknown:
        sys.exit(f"--only: unknown entries {sorted(unknown)}; choose from {','.join(IMPLS)}")
    if not torch.cuda.is_available():
        sys.exit("bench_attention needs a CUDA GPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    causal = not args.non_causal
    b, h, n, d = args.batch, args.heads, args.seq, args.dim
    flops_fwd = 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)
    dev = "cuda"
    torch.manual_seed(0)
    # sparkc reads [B, N, H, d] (the projections' layout); SDPA and Flex read [B, H, N, d].
    q = torch.randn(b, n, h, d, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(b, n, h, d, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(b, n, h, d, device=dev, dtype=dtype, requires_grad=True)
    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_(True) for t in (q, k, v))

    rows: list[dict[str, Any]] = []

    def record(
        impl: str,
        run: Callable[[], torch.Tensor],
        inputs: list[torch.Tensor],
        check: torch.Tensor | None,
        run_fn: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        with torch.no_grad():
            out = run()
            err = None
            if check is not None:
                err = float((out.float() - check.float()).abs().max())
            fwd = bench(run)
        both = time_fwd_bwd(run, inputs)
        row = {
            "impl": impl,
            "fwd_ms": fwd,
            "fwd_tflops": flops_fwd / fwd * 1e-9,
            "fwd_bwd_ms": both,
            "fwd_bwd_tflops": 3.5 * flops_fwd / both * 1e-9,
            "max_abs_err_vs_sdpa": err,
        }
        tiles = chosen_tiles(run_fn) if run_fn is not None else None
        if tiles:
            row["tiles"] = tiles  # (BLOCK_M, BLOCK_N, warps, stages) the tuner chose per kernel
        rows.append(row)
        # Each row as soon as it is measured: a run cut short by a time limit keeps its rows.
        print(f"  measured {impl}: fwd {fwd:.3f} ms, fwd+bwd {both:.3f} ms", flush=True)
        if tiles:
            print(f"    tiles: {tiles}", flush=True)

    def sdpa() -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

    with torch.no_grad():
        ref = sdpa().transpose(1, 2)
    record("torch sdpa", sdpa, [qt, kt, vt], None)

    if "sparkc" in only:
        plain = build("bench_attn", causal=causal)
        # As shipped: the tuner's choice between the generated kernels and torch's fused
        # attention (runtime/sdpa.py); then the generated kernels alone.
        record("sparkc (tuned choice)", lambda: plain(q, k, v), [q, k, v], ref, plain)
        os.environ["SPARKC_EXTERN_ATTENTION"] = "0"
        try:
            record("sparkc kernels", lambda: plain(q, k, v), [q, k, v], ref, plain)
        finally:
            del os.environ["SPARKC_EXTERN_ATTENTION"]

    try:
        if "flex" not in only:
            raise LookupError("not asked for (--only)")
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
        mask = None
        if causal:
            mask = create_block_mask(lambda b_, h_, i, j: j <= i, None, None, n, n, device=dev)
        record(
            "flex_attention (compiled)",
            lambda: flex(qt, kt, vt, block_mask=mask),
            [qt, kt, vt],
            None,
        )
    except Exception as e:  # noqa: BLE001  FlexAttention is optional: report why it is missing
        rows.append({"impl": "flex_attention", "error": f"{type(e).__name__}: {e}"[:200]})

    if "rope" in only:
        rope = build("bench_attn_rope", causal=causal, rope=True)
        record("sparkc +rope", lambda: rope(q, k, v), [q, k, v], None, rope)
    if "basis" in only:
        # The distance bias in its low-rank form (the default where it applies), the same in its
        # per-element form (lowrank=False: the A/B of docs/kernels/attention.md), the key bias.
        gains = (0.1 * torch.randn(h, 12, device=dev)).requires_grad_(True)
        rows = {x.strip() for x in args.basis_rows.split(",")}
        for key, label, over, lowrank in (
            ("distance", "distance,F4,L4", "distance", True),
            ("per-element", "distance,F4,L4 per-element", "distance", False),
            ("key", "key,F4,L4", "key", True),
        ):
            if key not in rows:
                continue
            basis = {"freqs": 4, "legendre": 4, "over": over, "max_len": n}
            name = "bench_attn_basis_" + label.replace(",", "_").replace(" ", "_").replace("-", "_")
            biased = build(name, causal=causal, basis=basis, lowrank=lowrank)
            record(
                f"sparkc +basis({label})",
                lambda biased=biased: biased(q, k, v, gains),
                [q, k, v, gains],
                None,
                biased,
            )
    if "gqa" in only:
        gqa = build("bench_attn_gqa", causal=causal, group=4)
        kg = k[:, :, : h // 4].detach().contiguous().requires_grad_(True)
        vg = v[:, :, : h // 4].detach().contiguous().requires_grad_(True)
        record("sparkc GQA G=4", lambda: gqa(q, kg, vg), [q, kg, vg], None, gqa)

    title = (
        f"attention B={b} H={h} N={n} d={d} {'causal' if causal else 'non-causal'} "
        f"{args.dtype} on {torch.cuda.get_device_name()}"
    )
    print(title)
    print(
        f"{'impl':32s} {'fwd ms':>9s} {'fwd TF/s':>9s} {'f+b ms':>9s} {'f+b TF/s':>9s} {'max err':>9s}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['impl']:32s} unavailable: {r['error']}")
            continue
        err = "" if r["max_abs_err_vs_sdpa"] is None else f"{r['max_abs_err_vs_sdpa']:.2e}"
        print(
            f"{r['impl']:32s} {r['fwd_ms']:9.3f} {r['fwd_tflops']:9.1f} "
            f"{r['fwd_bwd_ms']:9.3f} {r['fwd_bwd_tflops']:9.1f} {err:>9s}"
        )
    if args.json:
        payload = {
            "title": title,
            "shape": {"B": b, "H": h, "N": n, "d": d, "causal": causal, "dtype": args.dtype},
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if not math.isfinite(sum(r.get("fwd_ms", 0.0) for r in rows)):
        sys.exit(1)


if __name__ == "__main__":
    main()
