"""Compile-only check of the procedural family's GEMM-side kernels: lora_linear's low-rank GEMM
(forward: bias and T stored; backward dx: neither), per-sample row reduction and its finishing
kernel, one-kernel hypernetwork (forward, and the backward's three kernels, at gen_dim 128),
demopack_linear's mixing-matrix kernels (forward and scale gradient), compiled to PTX for sm_90
with float32 and bfloat16 pointers and Hopper tiles, without a GPU (the strided GEMM the template
takes from primitives_gemm_common, and demopack_linear's two GEMM fragments, are compiled by
test_matmul_compile.py).

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess

LORA = {"template": "procedural_lora_linear.py.jinja", "name": "lora"}
LORA_HYPER = {"template": "procedural_lora_hyper.py.jinja", "name": "lorah"}
DEMOPACK = {"template": "procedural_demopack.py.jinja", "name": "dp"}
INTS = {"NB", "NSEQ", "NOUT", "K", "R", "RO", "CHUNK", "M", "N", "C", "MM", "G"}
INTS |= {"NA", "NBM", "NCH"}
MIX = {
    "dp_mix_kernel": "COUNTS SCALE GOUT R C inv_p",
    "dp_dscale_kernel": "DG COUNTS DSCALE R C inv_p",
}
HYPER_F32 = {"Z1", "Z2", "DZ1", "DZ2", "DHP"}


def sig_of(args, ptr, fp32=(), ints=INTS):
    sig = {}
    for a in args:
        if a in ints or a.startswith("s") and a[1:2] in "xwlrq" and len(a) == 3:
            sig[a] = "i32"
        else:
            sig[a] = "*fp32" if a in fp32 else ptr
    return sig


LR_ARGS = ["X", "W", "BIAS", "L", "RM", "Y", "T", "NB", "NSEQ", "NOUT", "K", "R"]
LR_ARGS += ["sxb", "sxn", "sxk", "swn", "swk", "slb", "slr", "slk", "srb", "srn", "srr"]
PSUM_ARGS = ["P", "Q", "OUT", "NSEQ", "C", "R", "RO", "CHUNK", "sqb", "sqn", "sqc"]
FINISH_ARGS = ["PART", "OUT", "BIAS", "SPLIT", "NB", "R", "RO", "C", "sob", "sor", "soc"]
FINISH_INTS = INTS | {"SPLIT", "sob", "sor", "soc"}
HYPER = {
    "lorah_fwd_kernel": "META W1 B1 W2 B2 WA BA WB BB AOUT BOUT Z1 Z2 NB MM G NA NBM",
    "lorah_bwd_kernel": "DA DBM Z2 WA WB BA BB DWA DWB DBA DBB DHP NB G NA NBM",
    "lorah_head_kernel": "DHP NCH Z1 Z2 W1 W2 DZ1 DZ2 DMETA NB MM G",
    "lorah_wgrad_kernel": "META Z1 DZ1 DZ2 DW1 DB1 DW2 DB2 NB MM G",
}


def cases():
    out = []
    for dt in ("fp32", "bf16"):
        p, prec = f"*{dt}", ("ieee" if dt == "fp32" else "tf32")
        bk = 32 if dt == "fp32" else 64
        tiles = {"BLOCK_M": 128, "BLOCK_N": 256 if dt == "bf16" else 128, "BLOCK_K": bk}
        for bias, store_t in ((True, True), (False, True), (True, False)):
            consts = {"HAS_BIAS": bias, "STORE_T": store_t, "DOT_PRECISION": prec, "R_PAD": 16}
            consts |= {**tiles, "GROUP_M": 8}
            out.append((LORA, "lora_lr_kernel", sig_of(LR_ARGS, p, {"T"}), consts))
        for ones in (True, False):
            consts = {"ONES": ones, "DOT_PRECISION": prec, "R_PAD": 16}
            consts |= {"BLOCK_R": 64, "BLOCK_C": 128}
            out.append((LORA, "lora_psum_kernel", sig_of(PSUM_ARGS, p, {"P", "OUT"}), consts))
            sig = sig_of(FINISH_ARGS, p, {"PART"}, FINISH_INTS)
            out.append((LORA, "lora_finish_kernel", sig, {"HAS_BIAS": ones, "BLOCK_C": 128}))
        for kernel, args in HYPER.items():
            consts = {"DOT_PRECISION": prec, "G_PAD": 128, "BLOCK_B": 16}
            consts |= {"BLOCK_C": 128} if kernel == "lorah_bwd_kernel" else {"BLOCK_K": 64}
            if kernel == "lorah_fwd_kernel":
                consts |= {"STORE_Z": True, "BLOCK_C": 128}
            out.append((LORA_HYPER, kernel, sig_of(args.split(), p, HYPER_F32), consts))
        for kernel, args in MIX.items():  # demopack's mixing matrix and its scale gradient
            sig = sig_of(args.split(), p, {"COUNTS"}) | {"inv_p": "fp32"}
            out.append((DEMOPACK, kernel, sig, {"BLOCK_R": 16, "BLOCK_C": 256}))
    return out


def test_procedural_kernels_compile_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
