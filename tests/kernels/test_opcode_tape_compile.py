"""Compile-only check of the opcode tape machine (codegen_templates/procedural_opcode_tape.py.jinja,
SPEC §5.1): the forward and the backward kernel compiled to PTX for sm_90 without a GPU, with
float32 and bfloat16 activation pointers, at the tiles `<name>_config` picks on a GPU for the
benchmark shape (capacity 32: CAP_PAD 32, BLOCK_D 128), for a deep stack (CAP_PAD 256,
BLOCK_D 64) and at the backward's narrowest tuning candidate (CAP_PAD 32, BLOCK_D 16).

At the benchmark tile (4 warps, the warps `<name>_config` gives it) Triton's own ptxas must report
no spill stores: the stack tile and its adjoint stay in registers.

The interpreter accepts code the real compiler rejects (scalar `if` regions yielding register
tiles, the Jinja-unrolled chunk), so this runs in a subprocess without TRITON_INTERPRET (the file
doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess, spill_bytes

# (CAP_PAD, BLOCK_D): the benchmark's tile, the deepest on-chip stack, the narrowest backward tile.
TILES = ((32, 128), (256, 64), (32, 16))


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/dtype/tile."""
    ctx = {"template": "procedural_opcode_tape.py.jinja", "name": "tp"}
    out = []
    for dt in ("fp32", "bf16"):
        p = f"*{dt}"
        fwd = {
            "OPS": "*i32",
            "HAS": "*u8",
            "ARGS": p,
            "BRANCH": p,
            "TOP": p,
            "DEPTH": "*i32",
            "STATUS": "*i32",
            "STEPS": "*i32",
            "CHECKS": p,
            "TRACE": "*i32",
            "DEP": "*i32",
            "T": "i32",
            "D": "i32",
            "budget": "i32",
            "capacity": "i32",
        }
        bwd = {
            "TRACE": "*i32",
            "DEP": "*i32",
            "HAS": "*u8",
            "DEPTH": "*i32",
            "DTOP": p,
            "DCHECKS": p,
            "DARGS": p,
            "DBR": "*fp32",
            "T": "i32",
            "D": "i32",
        }
        for cap_pad, block_d in TILES:
            consts = {"CAP_PAD": cap_pad, "BLOCK_D": block_d}
            out.append((ctx, "tp_fwd_kernel", fwd, consts))
            out.append((ctx, "tp_bwd_kernel", bwd, consts))
    return out


def test_opcode_tape_kernels_compile_for_sm90():
    run_in_subprocess(__file__)


def spills() -> list[str]:
    """Kernels of the benchmark tile (CAP_PAD 32, BLOCK_D 128, 4 warps) that spill."""
    from sparkc.runtime.launch import compile_for_target
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    text = render("prelude.py.jinja", version="t", source_name="t")
    mod = load_source("tp_spill", text + render("procedural_opcode_tape.py.jinja", name="tp"))
    bad = []
    for ctx, kernel, sig, consts in cases():
        if consts != {"CAP_PAD": TILES[0][0], "BLOCK_D": TILES[0][1]}:
            continue
        asm = compile_for_target(getattr(mod, kernel), sig, consts, num_warps=4)
        spilled = spill_bytes(asm["ptx"])
        print(f"{kernel} {sig.get('ARGS', sig.get('DARGS'))}: {spilled} spill bytes")
        if spilled:
            bad.append(f"{kernel}: {spilled} bytes")
    return bad


if __name__ == "__main__":
    code = main(cases())
    spilled = spills()
    print("\n".join(f"spills: {s}" for s in spilled))
    sys.exit(code or (1 if spilled else 0))
