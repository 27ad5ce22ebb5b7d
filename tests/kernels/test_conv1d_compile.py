"""Compile-only check: every kernel of the conv1d template, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    out = []
    for kernel, causal in ((4, True), (3, False)):
        ctx = {
            "template": "primitives_conv1d.py.jinja",
            "name": "cv",
            "kernel": kernel,
            "causal": causal,
        }
        for dt in ("fp32", "bf16"):
            p = f"*{dt}"
            tiles = {"BLOCK_N": 32, "BLOCK_D": 128}
            out.append(
                (
                    ctx,
                    "cv_fwd_kernel",
                    {"x_ptr": p, "w_ptr": p, "b_ptr": p, "y_ptr": p, "N": "i32", "D": "i32"},
                    tiles,
                )
            )
            out.append(
                (
                    ctx,
                    "cv_bwd_kernel",
                    {
                        "dy_ptr": p,
                        "x_ptr": p,
                        "w_ptr": p,
                        "dx_ptr": p,
                        "dw_part_ptr": "*fp32",
                        "db_part_ptr": "*fp32",
                        "N": "i32",
                        "D": "i32",
                    },
                    tiles,
                )
            )
            out.append(
                (
                    ctx,
                    "cv_param_grad_kernel",
                    {
                        "dw_part_ptr": "*fp32",
                        "db_part_ptr": "*fp32",
                        "dw_ptr": p,
                        "db_ptr": p,
                        "nparts": "i32",
                        "D": "i32",
                    },
                    {"BLOCK_D": 128},
                )
            )
    return out


def test_conv1d_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
