"""Every block per call against `torch.compile` of its reference path (issue 22 item 4: "no block
slower than `torch.compile` of its reference per call, without CUDA graphs, at B=8, N=2048,
D=1024").

Consumes: command-line options. Each block in `BLOCKS` is a one-op program (`sparkc bench --op`)
or one of the bench/*.spark files for the blocks that take a second input (sqdk_attention's gate,
lora_linear's metadata); each runs in its own `sparkc bench` process (`--variants
sparkc,eager,compile` by default, forward and forward+backward, bf16) under its own time limit,
so a block that compiles long or fails costs its own row only. Produces: a table of per-call
medians (ms) with sparkc's speed-up over `torch.compile` and over eager (> 1: sparkc faster),
and `--json PATH` with every block's `sparkc bench` report and the ratios.

`opcode_tape` is not here: its inputs are a tape, not [B, N, D] (bench/procedural_tape.py times
it against its compiled reference).

`--dry-run` runs every block at a tiny shape on the CPU's reference path (eager only: `sparkc
bench` offers the generated kernels on a GPU only) to check the programs and the table; its
timings mean nothing. Timings are printed, never asserted.

Run: python3 -P bench/blocks_per_call.py [--only attention,spd_router] [--limit 240]
     [--budget 560] [--variants sparkc,eager,compile] [--json blocks.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Block:
    name: str
    op: str | None = None  # `--op` with `hp`; otherwise `file` with `defines`
    hp: dict[str, object] = field(default_factory=dict)
    file: str | None = None
    defines: dict[str, object] = field(default_factory=dict)


BLOCKS = (
    Block("attention", "attention", {"heads": 16}),
    Block("attention_gqa_rope", "attention", {"heads": 16, "kv_heads": 4, "rope": True}),
    Block("fk_attention", "fk_attention", {"heads": 16, "hops": 4, "beta": 0.5}),
    Block("spd_router", "spd_router"),
    Block("verifier_stack", "verifier_stack", {"stack": 32}),
    Block("splat_attention", "splat_attention", {"heads": 8, "splats": 64}),
    Block("trajectory", "trajectory", {"window": 6}),
    Block("token_router", "token_router", {"noise": False}),
    Block("conv1d", "conv1d", {"kernel": 4}),
    Block("mlp", "mlp", {"hidden": 4096}),
    Block("swiglu", "swiglu", {"hidden": 2816}),
    Block("routed_mlp", "routed_mlp", {"hidden": 4096, "groups": 8, "active": 2}),
    Block("demopack_linear", "demopack_linear", {"out": 1024}),
    Block("rmsnorm", "rmsnorm"),
    Block("sqdk_attention", file="bench/sqdk_block.spark", defines={"heads": 16, "kv": 4}),
    Block("lora_linear", file="bench/lora_linear.spark", defines={"out": 1024}),
)


def _value(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def command(block: Block, shape: dict[str, int], args: argparse.Namespace, out: Path) -> list[str]:
    """The `sparkc bench` command line of one block."""
    cmd = [sys.executable, "-P", "-m", "sparkc", "bench"]
    if block.op:
        cmd += ["--op", block.op]
        for k, v in block.hp.items():
            cmd += ["--hp", f"{k}={_value(v)}"]
        cmd += ["--shape", ",".join(f"{k}={v}" for k, v in shape.items())]
    else:
        cmd.append(str(ROOT / block.file))
        for k, v in {"d": shape["D"], **block.defines}.items():
            cmd += ["-D", f"{k}={_value(v)}"]
        cmd += ["--shape", f"B={shape['B']},N={shape['N']}"]
    cmd += ["--dtype", args.dtype, "--variants", args.variants, "--json", str(out)]
    if "compile" not in args.variants.split(","):
        cmd.append("--no-compile")
    if args.dry_run:
        cmd += ["--device", "cpu"]
    return cmd


def ratios(report: dict) -> dict[str, float]:
    """`sparkc bench` rows → {'fwd/compile': t_compile / t_sparkc, ...} for every mode and
    baseline present (> 1: sparkc faster)."""
    ms = {(r["variant"], r["mode"]): r["ms"] for r in report.get("rows", [])}
    out = {}
    for (variant, mode), t in ms.items():
        mine = ms.get(("sparkc", mode))
        if variant != "sparkc" and mine:
            out[f"{mode}/{variant}"] = t / mine
    return out


def table(results: dict[str, dict]) -> str:
    modes, variants = ("fwd", "fwd+bwd"), ("sparkc", "compile", "eager")
    head = ["block"] + [f"{v} {m}" for m in modes for v in variants]
    head += [f"×compile {m}" for m in modes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        if "error" in res:
            lines.append(f"| {name} | {res['error']} |")
            continue
        ms = {(r["variant"], r["mode"]): r["ms"] for r in res["report"]["rows"]}
        cells = [f"{ms[(v, m)]:.3f}" if (v, m) in ms else "—" for m in modes for v in variants]
        cells += [
            f"{res['ratios'][f'{m}/compile']:.2f}" if f"{m}/compile" in res["ratios"] else "—"
            for m in modes
        ]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def run_block(block: Block, shape: dict[str, int], args: argparse.Namespace, limit: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                command(block, shape, args, out),
                capture_output=True,
                text=True,
                timeout=limit,
                cwd=ROOT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"over its {limit:.0f} s limit"}
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {tail[0][:160]}"}
        report = json.loads(out.read_text())
    return {"report": report, "ratios": ratios(report), "s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated block names (default: every block)")
    p.add_argument("--shape", default="B=8,N=2048,D=1024")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "f16", "f32"))
    p.add_argument("--variants", default="sparkc,eager,compile")
    p.add_argument("--limit", type=float, default=240.0, help="seconds per block")
    p.add_argument("--budget", type=float, default=1e9, help="start no block after this many s")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes, CPU reference path")
    args = p.parse_args(argv)
    if args.dry_run:
        args.shape, args.variants, args.dtype = "B=2,N=16,D=32", "eager", "f32"
    shape = {k: int(v) for k, v in (kv.split("=") for kv in args.shape.split(","))}
    names = args.only.split(",") if args.only else [b.name for b in BLOCKS]
    unknown = sorted(set(names) - {b.name for b in BLOCKS})
    if unknown:
        p.error(
            f"unknown block(s) {', '.join(unknown)}; known: {', '.join(b.name for b in BLOCKS)}"
        )
    chosen = [b for b in BLOCKS if b.name in names]
    if args.dry_run:  # the tiny width: the blocks' head counts and widths scaled down
        chosen = [_tiny(b) for b in chosen]
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    for block in chosen:
        left = args.budget - (time.perf_counter() - t0)
        if left <= 10:
            results[block.name] = {"error": "not started: out of --budget"}
            continue
        results[block.name] = res = run_block(block, shape, args, min(args.limit, left))
        print(f"{block.name}: {res.get('error') or res['ratios']}", flush=True)
    print(table(results))
    if args.json:
        meta = {"shape": shape, "dtype": args.dtype, "variants": args.variants}
        Path(args.json).write_text(json.dumps({"meta": meta, "blocks": results}, indent=1) + "\n")
    return 0


def _tiny(block: Block) -> Block:
    """`block` at D = 32: heads 2 (kv 1), hidden and out 64, splats 4, stack 8."""
    small = {"heads": 2, "kv_heads": 1, "kv": 1, "hidden": 64, "out": 64, "splats": 4, "stack": 8}
    hp = {k: small.get(k, v) for k, v in block.hp.items()}
    defines = {k: small.get(k, v) for k, v in block.defines.items()}
    return Block(block.name, block.op, hp, block.file, defines)


if __name__ == "__main__":
    sys.exit(main())
