"""Compile-only check: every kernel of the softmax template, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    ctx = {"template": "primitives_softmax.py.jinja", "name": "sm"}
    out = []
    for dt in ("fp32", "bf16"):
        p = f"*{dt}"
        for one_pass, block_r, block_d in ((True, 4, 1024), (False, 1, 8192)):
            consts = {"BLOCK_R": block_r, "BLOCK_D": block_d, "ONE_PASS": one_pass}
            out.append(
                (ctx, "sm_fwd_kernel", {"x_ptr": p, "y_ptr": p, "R": "i32", "D": "i32"}, consts)
            )
            out.append(
                (
                    ctx,
                    "sm_bwd_kernel",
                    {"y_ptr": p, "dy_ptr": p, "dx_ptr": p, "R": "i32", "D": "i32"},
                    consts,
                )
            )
    return out


def test_softmax_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
