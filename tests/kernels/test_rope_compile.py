"""Compile-only check: every kernel of the rope template, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    ctx = {"template": "primitives_rope.py.jinja", "name": "rp"}
    out = []
    for dt in ("fp32", "bf16"):
        p = f"*{dt}"
        sig = {
            "x_ptr": p,
            "y_ptr": p,
            "R": "i32",
            "N": "i32",
            "H": "i32",
            "half": "i32",
            "pos_offset": "i32",
            "log2_base": "fp32",
        }
        for sign in (1, -1):
            out.append((ctx, "rp_kernel", sig, {"SIGN": sign, "BLOCK_R": 64, "BLOCK_H": 32}))
    return out


def test_rope_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
