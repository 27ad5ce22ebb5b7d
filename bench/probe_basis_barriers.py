"""What the procedural basis bias adds to the attention kernels, read from their sm_90 code
(docs/kernels/attention.md, "Procedural bias"). No GPU.

Renders the attention template (causal, one kv group, RoPE with `--rope`) with no basis, with the basis
`distance` (F = L = 4, max_len 4096) in its per-element form (`lowrank=False`) and in its
low-rank form, compiles the forward, dK/dV and dQ kernels at their first (heuristic) tile for
sm_90 in bf16, and counts in the PTX: barriers (`bar.sync`; a tile-wide `tl.sum` is a
shared-memory round trip with two), special-function instructions (`sin`/`cos`/`ex2`/`lg2`
approximations: the SFU work), tensor-core instructions (`wgmma`/`mma`), and from ptxas the
registers per thread and spilled bytes. 2026-12-06: dK/dV had 88 barriers with a per-atom tile
reduction, 20 after the row-accumulated gradient, 16 without a basis. Arguments are compiled
with the divisibility a launch at the benchmark shape gives them (before 2026-12-07 they were
not, and every kernel showed 255 registers and a stack, an artefact of unaligned loads).
Under `PYTHONPATH=<a Triton 3.6 install>` it reads the lent GPU machine's compiler.

`--kernel dkdv --all-tiles` compiles one kernel at every tuning candidate instead (the spill
range a tuner chooses from); `--rope` compiles the kernels with RoPE (the backward's stores
rotating dq, dk back).

Run: python bench/probe_basis_barriers.py [--causal 0|1] [--kernel K] [--all-tiles] [--rope] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

FP32 = {"LSE", "DELTA", "DG_PART", "DGQ_PART", "PART", "PART_Q", "GAINS", "DG"}
HALF = {"Q", "K", "V", "O", "O_LO", "DO", "DV", "DQ", "DK", "Y", "X"}
PTX_COUNTS = {
    "bar.sync": r"\bbar\.sync|barrier\.sync",
    "sfu": r"\b(?:sin|cos|ex2|lg2)\.approx",
    "mma": r"\bwgmma\.mma_async|\bmma\.sync",
}


def resources(cubin: bytes, triton_dir: Path) -> dict:
    """Registers per thread and spill bytes of a cubin, from cuobjdump's resource usage."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        tool = triton_dir / "backends" / "nvidia" / "bin" / "cuobjdump"
        out = subprocess.run(
            [str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    regs = re.search(r"REG:(\d+)", out)
    spill = re.search(r"STACK:(\d+)", out)
    return {
        "regs": int(regs.group(1)) if regs else -1,
        "stack": int(spill.group(1)) if spill else -1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--causal", type=int, default=1)
    ap.add_argument("--kernel", choices=("fwd", "dkdv", "dq"), help="only this kernel")
    ap.add_argument("--all-tiles", action="store_true", help="every tuning candidate")
    ap.add_argument("--rope", action="store_true", help="kernels with RoPE")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.pop("TRITON_INTERPRET", None)
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    basis = {"freqs": 4, "legendre": 4, "over": "distance", "max_len": 4096}
    variants = (("no basis", None, True), ("per-element", basis, False), ("low-rank", basis, True))
    rows = []
    for label, b, lowrank in variants:
        name = f"probe_{len(rows)}"
        ctx = {
            "name": name,
            "causal": bool(args.causal),
            "group": 1,
            "rope": args.rope,
            "rope_base": 10000.0,
            "basis": b,
            "lowrank": lowrank,
        }
        text = render("prelude.py.jinja", version="probe", source_name="probe")
        mod = load_source(name, text + render("attention.py.jinja", **ctx))
        table = getattr(mod, name + "_CONFIGS")
        for kernel, suffix in (
            ("fwd", "_fwd_kernel"),
            ("dkdv", "_bwd_dkdv_kernel"),
            ("dq", "_bwd_dq_kernel"),
        ):
            if args.kernel not in (None, kernel):
                continue
            fn = getattr(mod, name + suffix)
            tiles = table[(kernel, 128, 2)]
            for bm, bn, warps, stages in tiles if args.all_tiles else tiles[:1]:
                rows.append(probe(fn, kernel, label, bm, bn, warps, stages))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


def probe(fn, kernel: str, label: str, bm: int, bn: int, warps: int, stages: int) -> dict:
    """Compile one kernel at one tile for sm_90 and read its counts and resources."""
    import triton
    from sparkc.runtime.launch import compile_for_target

    consts = {"HEAD_D": 128, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_D": 128}
    consts["DOT_PREC"] = "tf32"  # what the launchers pass for 16-bit inputs
    if kernel == "fwd":
        consts["SPLIT_O"] = True
    sig = {
        a: "*fp32" if a in FP32 else "*bf16" if a in HALF else "i32"
        for a in fn.arg_names
        if a not in consts
    }
    sig["sm_scale"] = "fp32"
    # As a real launch specialises them at the benchmark shape: every pointer 16-byte
    # aligned, every integer (strides, lengths) a multiple of 16.
    divisible = tuple(a for a, t in sig.items() if t != "fp32")
    asm = compile_for_target(
        fn, sig, consts, num_warps=warps, num_stages=stages, divisible=divisible
    )
    ptx = asm["ptx"]
    row = {"variant": label, "kernel": kernel, "tile": [bm, bn, warps, stages]}
    row.update({k: len(re.findall(p, ptx)) for k, p in PTX_COUNTS.items()})
    row.update(resources(asm["cubin"], Path(triton.__file__).parent))
    print(
        f"{label:12s} {kernel:5s} tile {bm}x{bn} w{warps} s{stages}: "
        + "  ".join(f"{k} {row[k]}" for k in (*PTX_COUNTS, "regs", "stack"))
    )
    return row


if __name__ == "__main__":
    main()
