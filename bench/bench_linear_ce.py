"""Benchmark of the fused linear + cross-entropy template (primitives_linear_cross_entropy.py.jinja) on a GPU.

At M = 8192 rows, D = 1024, V = 32000 (bfloat16 by default) it times, with triton.testing.do_bench
medians, the forward and forward + backward of
  - sparkc: the default path, recompute=None: below D = 2048 (TRAIN_FORWARD_MIN_D) the
    log-sum-exp forward (one vocabulary tile per program on a GPU, tuned; only lse [M] is kept)
    and a backward that recomputes the logits a vocabulary chunk at a time (four GEMMs, least
    memory), at or above it the training forward;
  - sparkc-train: recompute=False, the training forward (loss and gradients together, a 256 MB
    chunk of float32 logits at a time: three GEMMs); its no-gradient forward (the "fwd" column)
    is the log-sum-exp forward, as for sparkc;
  - eager: F.cross_entropy(h @ w.T + b);
  - compile: torch.compile of the eager function (unless --no-compile);
and measures each one's peak extra memory over its inputs (torch.cuda.max_memory_allocated during
one forward + backward). Prints a table and, with --json PATH, writes the rows. `--v-split N`
passes v_split=N (vocabulary columns per forward program, rounded up to whole tiles: 1 for one
tile per program, V for a single split) to the sparkc rows instead of the tuned choice.

Run: python bench/bench_linear_ce.py [--M 8192 --D 1024 --V 32000] [--v-split N] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import torch
import torch.nn.functional as F
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render
from sparkc.tools.benchutil import median_ms, peak_mb


def build(name: str = "bench_lce"):
    prelude = render("prelude.py.jinja", version="bench", source_name="bench_linear_ce")
    text = prelude + "\n\n" + render("primitives_linear_cross_entropy.py.jinja", name=name)
    return getattr(load_source(name, text), name)


def eager(h, w, b, t, ignore_index=-100):
    return F.cross_entropy(h @ w.t() + b, t, ignore_index=ignore_index)


bench = functools.partial(median_ms, warmup=10, rep=50)


def measure(label: str, fn, h, w, b, t) -> dict:
    leaves = [x.detach().requires_grad_(True) for x in (h, w, b)]

    def fwd():
        with torch.no_grad():
            return fn(h, w, b, t)

    def fwd_bwd():
        loss = fn(*leaves, t)
        loss.backward()
        for x in leaves:
            x.grad = None
        return loss

    fwd_bwd()  # compile / warm up
    losses = []
    peak = peak_mb(lambda: losses.append(fwd_bwd()))
    loss = losses[0]
    return {
        "impl": label,
        "fwd_ms": bench(fwd),
        "fwd_bwd_ms": bench(fwd_bwd),
        "peak_extra_mib": peak,
        "loss": float(loss.item()),
    }


def tuned_choices(fn) -> dict:
    """What the tuner chose in this process for the generated function `fn`: the loss forward's
    candidate (a 7-tuple, or 8 ending in 1 for the descriptor loop), the dlogits GEMM's and the
    epilogue-free GEMMs' configurations ({"EXTERN": True}: torch's GEMM)."""
    from sparkc.runtime import autotune, gemm

    name, scope = fn.__name__, fn.__globals__
    out: dict = {}
    for key, choice in autotune._PICKED.items():
        if key[0] == f"{name}_fwd_kernel":
            out.setdefault("fwd", []).append(list(choice))
    ids = {id(scope[f"{name}_dlogits_kernel"]): "dlogits", id(scope[f"{name}_mm_kernel"]): "mm"}
    for key, cfg in gemm._GEMM_CHOICE.items():
        if key[0] in ids:
            out.setdefault(ids[key[0]], []).append(dict(cfg))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--M", type=int, default=8192)
    p.add_argument("--D", type=int, default=1024)
    p.add_argument("--V", type=int, default=32000)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument(
        "--v-split",
        type=int,
        default=None,
        help="vocabulary columns per forward program (default: tuned; 1: one tile per program)",
    )
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_linear_ce needs a CUDA GPU", file=sys.stderr)
        return 2
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    h = torch.randn(a.M, a.D, device="cuda", dtype=dtype)
    w = torch.randn(a.V, a.D, device="cuda", dtype=dtype) / a.D**0.5
    b = torch.randn(a.V, device="cuda", dtype=dtype) * 0.1
    t = torch.randint(0, a.V, (a.M,), device="cuda")
    t[::17] = -100
    ours = build()
    vs = a.v_split
    impls = [
        ("sparkc", lambda h, w, b, t: ours(h, w, b, t, v_split=vs)),
        ("sparkc-train", lambda h, w, b, t: ours(h, w, b, t, recompute=False, v_split=vs)),
        ("eager", eager),
    ]
    if not a.no_compile:
        impls.append(("compile", torch.compile(eager)))
    logits_mib = a.M * a.V * h.element_size() / 2**20
    print(
        f"device: {torch.cuda.get_device_name()}  M={a.M} D={a.D} V={a.V} dtype={a.dtype}  "
        f"v_split={vs}  (logits would be {logits_mib:.0f} MiB; times in ms, median)"
    )
    print(f"{'impl':>12} {'fwd':>8} {'fwd+bwd':>8} {'peak MiB':>9} {'loss':>9}")
    rows = []
    flops = 2.0 * a.M * a.V * a.D
    for label, fn in impls:
        r = measure(label, fn, h, w, b, t)
        r["fwd_tflops"] = flops / r["fwd_ms"] * 1e-9
        rows.append(r)
        print(
            f"{label:>12} {r['fwd_ms']:>8.3f} {r['fwd_bwd_ms']:>8.3f} "
            f"{r['peak_extra_mib']:>9.0f} {r['loss']:>9.4f}",
            flush=True,
        )
    choices = tuned_choices(ours)
    for kind, picked in choices.items():
        print(f"  tuned {kind}: {picked}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "device": torch.cuda.get_device_name(),
                    "M": a.M,
                    "D": a.D,
                    "V": a.V,
                    "dtype": a.dtype,
                    "v_split": vs,
                    "logits_mib": logits_mib,
                    "rows": rows,
                    "tuned": choices,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
