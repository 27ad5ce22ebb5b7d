"""Barriers and shared-memory traffic of the attention kernels with and without the procedural
basis bias, read from their sm_90 PTX (docs/kernels/attention.md, "Procedural bias"). No GPU.

Renders the attention template (causal, one kv group, no RoPE; basis `distance` with F = L = 4,
max_len 4096, or none), compiles the forward, dK/dV and dQ kernels at their first (heuristic)
tile for sm_90 in bf16 and counts `bar.sync`, `st.shared` and `ld.shared` in the PTX. A tile-wide
`tl.sum` is a shared-memory round trip with barriers; 2026-12-06 (F = L = 4): dK/dV 88 barriers
with a per-atom tile reduction, 20 after, 16 without a basis.

Run: python bench/probe_basis_barriers.py
"""

from __future__ import annotations

import argparse
import os
import re

FP32 = {"LSE", "DELTA", "DG_PART", "PART", "GAINS", "DG"}
HALF = {"Q", "K", "V", "O", "O_LO", "DO", "DV", "DQ", "DK", "Y", "X"}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    os.environ.pop("TRITON_INTERPRET", None)
    import triton
    from sparkc.runtime.loader import load_source
    from triton.backends.compiler import GPUTarget

    from sparkc.codegen.render import render

    basis = {"freqs": 4, "legendre": 4, "over": "distance", "max_len": 4096}
    for label, b in (("no basis", None), ("basis distance F4 L4", basis)):
        name = "probe_b" if b else "probe_p"
        ctx = {
            "name": name,
            "causal": True,
            "group": 1,
            "rope": False,
            "rope_base": 10000.0,
            "basis": b,
        }
        text = render("prelude.py.jinja", version="probe", source_name="probe")
        mod = load_source(name, text + render("attention.py.jinja", **ctx))
        table = getattr(mod, name + "_CONFIGS")
        for kernel, suffix in (
            ("fwd", "_fwd_kernel"),
            ("dkdv", "_bwd_dkdv_kernel"),
            ("dq", "_bwd_dq_kernel"),
        ):
            fn = getattr(mod, name + suffix)
            bm, bn, warps, stages = table[(kernel, 128, 2)][0]
            consts = {
                "HEAD_D": 128,
                "BLOCK_M": bm,
                "BLOCK_N": bn,
                "BLOCK_D": 128,
                "DOT_PREC": "ieee",
            }
            if kernel == "fwd":
                consts["SPLIT_O"] = True
            sig = {}
            for a in fn.arg_names:
                if a in consts:
                    sig[a] = "constexpr"
                else:
                    sig[a] = (
                        "*fp32"
                        if a in FP32
                        else "*bf16"
                        if a in HALF
                        else "fp32"
                        if a == "sm_scale"
                        else "i32"
                    )
            src = triton.compiler.ASTSource(
                fn=fn,
                signature=sig,
                constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()},
            )
            ptx = triton.compile(
                src,
                target=GPUTarget("cuda", 90, 32),
                options={"num_warps": warps, "num_stages": stages},
            ).asm["ptx"]
            counts = {
                k: len(re.findall(p, ptx))
                for k, p in (
                    ("bar.sync", r"\bbar\.sync|barrier\.sync"),
                    ("st.shared", r"st\.shared"),
                    ("ld.shared", r"ld\.shared"),
                )
            }
            print(
                f"{label:22s} {kernel:5s} tile {bm}x{bn} w{warps} s{stages}: "
                + "  ".join(f"{k} {v}" for k, v in counts.items())
            )


if __name__ == "__main__":
    main()
