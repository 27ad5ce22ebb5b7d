"""Compile-only check of the routed_mlp template (codegen_templates/procedural_routed_mlp.py.jinja):
every kernel, for each constexpr specialisation the launchers use (learned and hash routing,
each grouped-GEMM epilogue and gather/scatter mode, the weight-gradient modes), compiled to PTX
for sm_90 with float32 and bfloat16 pointers at the GPU tiles of `<name>_config`, without a GPU.

The interpreter accepts code the real compiler rejects (early returns, loop-carried scalars of
the tile-to-group search), so this runs in a subprocess without TRITON_INTERPRET (the file
doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess

ACT = {"act_f": "0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))"}
ACT["act_df"] = "1.0 * tl.where(z > 0.0, 1.0, 0.0) + 0.0 * h"


def cases():
    out = []
    for learned in (True, False):
        ctx = {
            "template": "procedural_routed_mlp.py.jinja",
            "name": "rm",
            "groups": 8,
            "active": 2,
            "learned": learned,
            **ACT,
        }
        s_type = "*bf16" if learned else "*i64"
        route_sig = {"S": s_type, "SEL": "*i32", "WT": "*fp32", "T": "i32"}
        out.append(
            (
                ctx,
                "rm_route_kernel",
                route_sig,
                {"GROUPS": 8, "ACTIVE": 2, "G_PAD": 8, "BLOCK_T": 64},
            )
        )
        if not learned:
            continue
        hist_sig = {"SEL": "*i32", "HIST": "*i32", "E": "i32"}
        out.append((ctx, "rm_hist_kernel", hist_sig, {"G_PAD": 8, "BLOCK": 1024}))
        scat_sig = {"SEL": "*i32", "HIST": "*i32", "COUNTS": "*i32", "OFFS": "*i32", "PERM": "*i32"}
        scat_sig.update({"E": "i32", "NB": "i32"})
        consts = {"GROUPS": 8, "G_PAD": 8, "BLOCK": 1024, "CHUNK": 64}
        out.append((ctx, "rm_scatter_kernel", scat_sig, consts))
        for dt in ("fp32", "bf16"):
            p = f"*{dt}"
            tiles = (
                {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}
                if dt == "fp32"
                else {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}
            )
            prec = "ieee" if dt == "fp32" else "tf32"
            index = {"WT": "*fp32", "PERM": "*i32", "COUNTS": "*i32", "OFFS": "*i32"}
            gsig = {"A": p, "B": p, "C": p, "Z": p, "BIAS": p, "AUX": p, "PART": "*fp32", **index}
            gsig.update(
                {
                    k: "i32"
                    for k in (
                        "N",
                        "K",
                        "stride_am",
                        "b_group",
                        "stride_bk",
                        "stride_bn",
                        "part_stride",
                    )
                }
            )
            for gather, scatter, epi, save, dw in (
                (True, False, 1, True, False),
                (True, False, 1, False, False),
                (False, True, 0, False, False),
                (True, False, 2, False, True),
                (True, False, 2, False, False),
            ):
                consts = dict(
                    tiles,
                    GATHER_A=gather,
                    SCATTER_C=scatter,
                    EPI=epi,
                    SAVE_Z=save,
                    DW=dw,
                    GROUPS=8,
                    ACTIVE=2,
                    DOT_PRECISION=prec,
                )
                out.append((ctx, "rm_gmm_kernel", gsig, consts))
            wsig = {"L": p, "R": p, "C": p, "DB": p, **index}
            wsig.update({k: "i32" for k in ("I", "J", "c_group", "stride_ci")})
            for gl, gr, scale, db in ((False, True, False, True), (True, False, True, False)):
                consts = {
                    "GATHER_L": gl,
                    "GATHER_R": gr,
                    "SCALE": scale,
                    "HAS_DB": db,
                    "ACTIVE": 2,
                    "DOT_PRECISION": prec,
                    "BLOCK_I": tiles["BLOCK_M"],
                    "BLOCK_J": tiles["BLOCK_N"],
                    "BLOCK_K": tiles["BLOCK_K"],
                }
                out.append((ctx, "rm_wgrad_kernel", wsig, consts))
            csig = {"S": p, "OUT": p, "BIAS": p, "WT": "*fp32", "D": "i32"}
            for bias_w in (True, False):
                consts = {"ACTIVE": 2, "HAS_BIAS": bias_w, "HAS_W": bias_w, "BLOCK_D": 1024}
                out.append((ctx, "rm_combine_kernel", csig, consts))
            dsig = {
                "PART": "*fp32",
                "S": p,
                "SEL": "*i32",
                "DS": p,
                "NP": "i32",
                "part_stride": "i32",
            }
            consts = {"GROUPS": 8, "ACTIVE": 2, "G_PAD": 8, "BLOCK_P": 64}
            out.append((ctx, "rm_dscore_kernel", dsig, consts))
    return out


def test_routed_mlp_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
