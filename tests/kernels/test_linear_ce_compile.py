"""Compile-only checks of the fused linear + cross-entropy template: every kernel compiled to PTX
for sm_90 (no GPU needed) with bfloat16 and float32 operands, with and without a bias, at the
Hopper tile sizes the launcher picks. Runs in a subprocess without TRITON_INTERPRET.
"""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
from sparkc.codegen.render import render
from sparkc.runtime import launch
from sparkc.runtime.loader import load_source

TY = {"bfloat16": "*bf16", "float32": "*fp32"}
FP32 = {"PM", "PS", "PZ", "LSE", "LOSS", "G", "PB", "P", "ACC", "L", "LROW"}
INTS = {"M", "V", "D", "N", "K", "R", "v0", "VC", "SPLITS", "v_per_split", "ignore_index"}
SPECIAL = {"T": "*i64", "COUNT": "*i32"}
report = []


def compile_one(fn, dtype, consts, warps=8):
    sig = {}
    for arg in fn.arg_names:
        if arg in consts:
            continue
        if arg in INTS or arg.startswith("stride"):
            sig[arg] = "i32"
        else:
            sig[arg] = SPECIAL.get(arg, "*fp32" if arg in FP32 else TY[dtype])
    asm = launch.compile_for_target(fn, sig, consts, arch=90, num_warps=warps)
    assert ".target sm_90" in asm["ptx"], fn.__name__
    report.append(f"{fn.__name__}:{dtype}:{sorted(consts.items())}")


prelude = render("prelude.py.jinja", version="test", source_name="compile")
mod = load_source("lcec", prelude + render("linear_cross_entropy.py.jinja", name="lcec"))
for dtype in json.loads(sys.argv[1]):
    prec = "ieee" if dtype == "float32" else "tf32"
    bk = 32 if dtype == "float32" else 64
    for has_bias in (False, True):
        compile_one(mod.lcec_fwd_kernel, dtype, {"HAS_BIAS": has_bias, "DOT_PRECISION": prec,
                    "BLOCK_M": 128, "BLOCK_V": 128, "BLOCK_D": bk})
        compile_one(mod.lcec_dlogits_kernel, dtype, {"HAS_BIAS": has_bias, "DOT_PRECISION": prec,
                    "BLOCK_M": 128, "BLOCK_V": 128, "BLOCK_D": bk, "GROUP_M": 8})
        compile_one(mod.lcec_rowgrad_kernel, dtype, {"HAS_BIAS": has_bias, "BLOCK_V": 2048})
    for add in (False, True):
        compile_one(mod.lcec_mm_kernel, dtype, {"ADD_ACC": add, "DOT_PRECISION": prec,
                    "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": bk, "GROUP_M": 8})
    compile_one(mod.lcec_combine_kernel, dtype, {"BLOCK_M": 128, "BLOCK_S": 32}, warps=4)
    compile_one(mod.lcec_colsum_kernel, dtype, {"BLOCK_R": 16, "BLOCK_N": 128}, warps=4)
print(json.dumps(report))
"""


def test_all_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(["bfloat16", "float32"])],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    compiled = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(compiled) == 2 * (2 + 2 + 2 + 2 + 1 + 1)
    assert any(c.startswith("lcec_dlogits_kernel:bfloat16") for c in compiled)
    assert any(c.startswith("lcec_rowgrad_kernel:float32") for c in compiled)
