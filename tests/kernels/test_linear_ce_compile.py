"""Compile-only checks of the fused linear + cross-entropy template: every kernel compiled to PTX
for sm_90 (no GPU needed) with bfloat16 and float32 operands, with and without a bias, at the
Hopper tile sizes the launcher picks; the forward at every tuning candidate
(`NAME_fwd_candidates` for a CUDA tensor: one vocabulary tile per program at 128x128, 128x256,
256x128, 64x128 with their warps, pipeline stages and register limit, and the ranges of tiles),
specialised as a launch at M = 8192, D = 1024, V = 32000 is (unit strides, sizes and pointers
divisible by 16: the software-pipelined main loop), the dlogits GEMM at every shared GEMM
tuning candidate likewise, and each within the H200's shared memory.
Runs in a subprocess without TRITON_INTERPRET.
"""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys, types
import triton
from triton.backends.compiler import GPUTarget
from sparkc.codegen.render import render
from sparkc.runtime.loader import load_source

TY = {"bfloat16": "*bf16", "float32": "*fp32"}
SIZE = {"bfloat16": 2, "float32": 4}
FP32 = {"PL", "Z", "LSE", "PSUM", "LOSS", "G", "PB", "P", "ACC", "L", "LROW"}
INTS = {"M", "V", "D", "N", "K", "R", "v0", "VC", "SPLITS", "v_per_split", "ignore_index"}
SPECIAL = {"T": "*i64", "COUNT": "*i32", "PCNT": "*i32"}
UNIT = {"stride_hd", "stride_wd", "stride_b"}  # Triton specialises an int argument of 1
SMEM = 227 * 1024
report = []


def compile_one(fn, dtype, consts, warps=8, stages=3, maxnreg=0, aligned=False, desc=None):
    # launch.compile_for_target, plus pipeline depth, register limit and the specialisation of a
    # real launch (`aligned`): without it the loads cannot be vectorised or pipelined. `desc`:
    # arguments passed as tensor descriptors (their types), with USE_TMA.
    consts = {"USE_TMA": bool(desc), **consts} if "USE_TMA" in fn.arg_names else dict(consts)
    desc = desc or {}
    if aligned:
        consts.update({a: 1 for a in fn.arg_names if a in UNIT})
    sig, attrs = {}, {}
    for i, arg in enumerate(fn.arg_names):
        if arg in consts:
            sig[arg] = "constexpr"
            continue
        if arg in desc:
            sig[arg] = desc[arg]
            continue
        if arg in INTS or arg.startswith("stride"):
            sig[arg] = "i32"
        else:
            sig[arg] = SPECIAL.get(arg, "*fp32" if arg in FP32 else TY[dtype])
        if aligned and arg not in ("v0", "ignore_index"):
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = triton.compiler.ASTSource(
        fn=fn,
        signature=sig,
        constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()},
        attrs=attrs,
    )
    options = {"num_warps": warps, "num_stages": stages}
    if maxnreg:
        options["maxnreg"] = maxnreg
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    assert ".target sm_90" in kernel.asm["ptx"], fn.__name__
    assert kernel.metadata.shared <= SMEM, (fn.__name__, consts, kernel.metadata.shared)
    report.append(f"{fn.__name__}:{dtype}:{sorted(consts.items())}:{warps}:{stages}:{maxnreg}")


def descriptors(dtype, bm, bv, bd):
    return {"H": f"tensordesc<bf16[{bm}, {bd}]>", "W": f"tensordesc<bf16[{bv}, {bd}]>"}


prelude = render("prelude.py.jinja", version="test", source_name="compile")
mod = load_source("lcec", prelude + render("primitives_linear_cross_entropy.py.jinja", name="lcec"))
for dtype in json.loads(sys.argv[1]):
    prec = "ieee" if dtype == "float32" else "tf32"
    bk = 32 if dtype == "float32" else 64
    like = types.SimpleNamespace(
        device=types.SimpleNamespace(type="cuda"), element_size=lambda: SIZE[dtype]
    )
    tma = dtype == "bfloat16"  # descriptor main loops: 16-bit operands only
    cands = mod.lcec_fwd_candidates(8192, 32000, 1024, getattr(mod.torch, dtype), like, tma)
    assert cands[0] == (128, 128, bk, 8, 3, 0, 128 if dtype == "bfloat16" else 0), cands
    assert len([c for c in cands if len(c) == 8]) == (len(cands) // 2 if tma else 0)
    for i, cand in enumerate(cands):
        bm, bv, bd, warps, stages, _, maxnreg = cand[:7]
        desc = descriptors(dtype, bm, bv, bd) if len(cand) == 8 else None
        tiles = {"DOT_PRECISION": prec, "BLOCK_M": bm, "BLOCK_V": bv, "BLOCK_D": bd, "GROUP_V": 8}
        for has_bias in (False, True) if i == 0 else (True,):
            consts = {"HAS_BIAS": has_bias, **tiles}
            compile_one(mod.lcec_fwd_kernel, dtype, consts, warps, stages, maxnreg, aligned=True,
                        desc=desc)
        if i == 0:  # any sizes and strides (V = 50257, a column slice of h)
            compile_one(mod.lcec_fwd_kernel, dtype, {"HAS_BIAS": True, **tiles}, warps, stages,
                        maxnreg)
    for has_bias in (False, True):
        compile_one(mod.lcec_dlogits_kernel, dtype, {"HAS_BIAS": has_bias, "DOT_PRECISION": prec,
                    "BLOCK_M": 128, "BLOCK_V": 128, "BLOCK_D": bk, "GROUP_M": 8})
        compile_one(mod.lcec_rowgrad_kernel, dtype, {"HAS_BIAS": has_bias, "BLOCK_V": 2048})
    # The dlogits GEMM is tuned over the shared GEMM candidates (launch.tuned_gemm): each one,
    # fitted to the element size, specialised as a real launch.
    from sparkc.runtime import launch
    for cand in launch.GEMM_CANDIDATES:
        bm, bn, bk_c, group, warps, stages = launch.fit_gemm(cand, SIZE[dtype])
        for desc in [None] + ([descriptors(dtype, bm, bn, bk_c)] if tma else []):
            compile_one(mod.lcec_dlogits_kernel, dtype, {"HAS_BIAS": True, "DOT_PRECISION": prec,
                        "BLOCK_M": bm, "BLOCK_V": bn, "BLOCK_D": bk_c, "GROUP_M": group}, warps,
                        stages, aligned=True, desc=desc)
    for add in (False, True):
        compile_one(mod.lcec_mm_kernel, dtype, {"ADD_ACC": add, "DOT_PRECISION": prec,
                    "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": bk, "GROUP_M": 8})
    for block_s in (1, 64):
        compile_one(mod.lcec_combine_kernel, dtype, {"BLOCK_M": 64, "BLOCK_S": block_s}, 4)
    compile_one(mod.lcec_mean_kernel, dtype, {"BLOCK": 1024}, 4)
    compile_one(mod.lcec_colsum_kernel, dtype, {"BLOCK_R": 16, "BLOCK_N": 128}, 4)
print(json.dumps(report))
"""


def test_all_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(["bfloat16", "float32"])],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    compiled = json.loads(proc.stdout.strip().splitlines()[-1])
    fwd = [c for c in compiled if c.startswith("lcec_fwd_kernel:")]
    assert any("('BLOCK_V', 256)" in c for c in fwd) and any("('BLOCK_M', 256)" in c for c in fwd)
    assert any(c.startswith("lcec_fwd_kernel:bfloat16") and c.endswith(":8:3:128") for c in fwd)
    from sparkc.runtime import launch

    tuned_dlogits = len(launch.GEMM_CANDIDATES)  # twice in bfloat16: pointer and TMA loops
    assert len(compiled) - len(fwd) == 2 * (2 + tuned_dlogits + 2 + 2 + 2 + 1 + 1) + tuned_dlogits
    assert any("('USE_TMA', True)" in c for c in fwd)
    assert any(c.startswith("lcec_dlogits_kernel:bfloat16") for c in compiled)
    assert any(c.startswith("lcec_rowgrad_kernel:float32") for c in compiled)
    assert any(c.startswith("lcec_mean_kernel:float32") for c in compiled)
