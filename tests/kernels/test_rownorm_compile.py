"""Compile-only check: every kernel of the rownorm template, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    out = []
    # Signatures name every optional argument; compile_for_target uses those the kernel has.
    for kind in ("rms", "layer"):
        for residual in (False, True):
            ctx = {
                "template": "primitives_rownorm.py.jinja",
                "name": "nrm",
                "kind": kind,
                "residual": residual,
            }
            for dt in ("fp32", "bf16"):
                p = f"*{dt}"
                fwd = {
                    "x_ptr": p,
                    "r_ptr": p,
                    "s_ptr": p,
                    "w_ptr": p,
                    "b_ptr": p,
                    "y_ptr": p,
                    "rstd_ptr": "*fp32",
                    "mean_ptr": "*fp32",
                    "R": "i32",
                    "D": "i32",
                    "eps": "fp32",
                }
                out.append((ctx, "nrm_fwd_kernel", fwd, {"BLOCK_R": 4, "BLOCK_D": 1024}))
                bwd = {
                    "dy_ptr": p,
                    "x_ptr": p,
                    "w_ptr": p,
                    "rstd_ptr": "*fp32",
                    "mean_ptr": "*fp32",
                    "ds_ptr": p,
                    "dr_ptr": p,
                    "dx_ptr": p,
                    "dw_part_ptr": "*fp32",
                    "db_part_ptr": "*fp32",
                    "R": "i32",
                    "D": "i32",
                    "nprog": "i32",
                }
                consts = {"BLOCK_R": 4, "BLOCK_D": 1024}
                if residual:
                    consts.update(HAS_DS=True, HAS_DR=True)
                out.append((ctx, "nrm_bwd_kernel", bwd, consts))
                # The shared column sum at the launcher's tiles for D = 1024 and 32000.
                col = {"P": "*fp32", "OUT": p, "R": "i32", "N": "i32"}
                for tile in ({"BLOCK_R": 128, "BLOCK_N": 16}, {"BLOCK_R": 16, "BLOCK_N": 128}):
                    out.append((ctx, "nrm_colsum_kernel", col, tile))
    return out


def test_rownorm_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
