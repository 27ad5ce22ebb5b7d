"""Compile-only checks of the GEMM + epilogue template: every kernel, for every epilogue hook
combination sparkc uses, compiled to PTX for sm_90 (no GPU needed) with bfloat16 and float32
pointers. The Triton interpreter accepts code the real compiler rejects, so this runs in a
subprocess without TRITON_INTERPRET (the interpreter replaces the JIT objects when it is set).
"""

import json
import os
import subprocess
import sys

import pytest

COMBOS = [
    {"epilogue": [], "dual": False},
    {"epilogue": ["bias"], "dual": False},
    {"epilogue": ["bias", "act:gelu"], "dual": False},
    {"epilogue": ["bias", "act:relu"], "dual": False},
    {"epilogue": [], "dual": True},
    {"epilogue": ["bias", "add:res"], "dual": False},
    {"epilogue": ["mul:gate"], "dual": False},
    {
        "epilogue": ["bias", "act:silu", "mul:g", "act:sigmoid", "act:tanh", "scale:0.5", "add:r"],
        "dual": False,
    },
    {"epilogue": ["scale:0.5", "add:res"], "dual": True},
]

SCRIPT = r"""
import json, sys
from sparkc.codegen.render import render
from sparkc.runtime import launch
from sparkc.runtime.loader import load_source

combos, dtypes = json.loads(sys.argv[1]), json.loads(sys.argv[2])
TY = {"bfloat16": "*bf16", "float32": "*fp32"}
INTS = {"M", "N", "K", "R"}
FP32_BUFFERS = {"P", "D_bias"}  # float32 partial sums whatever the operand dtype
report = []


def signature(fn, ptr):
    sig = {}
    for arg in fn.arg_names:
        if arg in INTS or "stride" in arg:
            sig[arg] = "i32"
        else:
            sig[arg] = "*fp32" if arg in FP32_BUFFERS else ptr
    return sig


def compile_one(fn, dtype, consts, warps, descriptors=None):
    sig = {k: v for k, v in signature(fn, TY[dtype]).items() if k not in consts}
    sig.update(descriptors or {})
    asm = launch.compile_for_target(fn, sig, consts, arch=90, num_warps=warps)
    assert "ptx" in asm and ".target sm_90" in asm["ptx"], fn.__name__
    tag = (":tma" if consts.get("USE_TMA") else "") + (":dev" if consts.get("TMA_DEVICE") else "")
    tag += ":persistent" if consts.get("PERSISTENT") else ""
    report.append(f"{fn.__name__}:{dtype}" + tag)


prelude = render("prelude.py.jinja", version="test", source_name="compile")
for i, combo in enumerate(combos):
    name = f"mmc{i}"
    mod = load_source(name, prelude + render("primitives_matmul.py.jinja", name=name, **combo))
    for dtype in dtypes:
        prec = "ieee" if dtype == "float32" else "tf32"
        bk = 32 if dtype == "float32" else 64
        tiles = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": bk, "GROUP_M": 8}
        fwd = getattr(mod, name + "_fwd_kernel")
        base = {"SAVE": True, "DOT_PRECISION": prec, "PERSISTENT": False, "TMA_DEVICE": False,
                **tiles}
        compile_one(fwd, dtype, {**base, "USE_TMA": False}, 8)
        if dtype == "bfloat16":  # the tensor-descriptor main loop (16-bit operands only)
            blocks = {"X": (128, bk), "W": (128, bk), "W_GATE": (128, bk), "W_UP": (128, bk)}
            desc = {a: "tensordesc<bf16[%d, %d]>" % blocks[a] for a in fwd.arg_names if a in blocks}
            compile_one(fwd, dtype, {**base, "USE_TMA": True}, 8, desc)
            # ... and in a persistent grid (the tile loop flattened with the K loop)
            compile_one(fwd, dtype, {**base, "USE_TMA": True, "PERSISTENT": True}, 8, desc)
            # ... with the descriptors built in the kernel from pointers (launch.tma_on_device)
            dev = {**base, "USE_TMA": True, "TMA_DEVICE": True}
            compile_one(fwd, dtype, dev, 8)
            compile_one(fwd, dtype, {**dev, "PERSISTENT": True}, 8)
        epi = getattr(mod, name + "_epi_kernel", None)  # the epilogue after torch's GEMM
        if combo["epilogue"] and not combo["dual"]:
            for z0_saved in (False, True):
                compile_one(epi, dtype, {"SAVE": True, "Z0_SAVED": z0_saved, "BLOCK_M": 32,
                                         "BLOCK_N": 128}, 4)
        else:
            assert epi is None
        bwd = getattr(mod, name + "_bwd_epilogue_kernel", None)
        if combo["epilogue"] or combo["dual"]:
            compile_one(bwd, dtype, {"BLOCK_M": 64, "BLOCK_N": 64, "STORE_TILES": True}, 4)
            kinds = {step.split(":")[0] for step in combo["epilogue"]}
            if combo["epilogue"] and not combo["dual"] and kinds <= {"bias", "add"}:
                # a pass-through chain: the bias column sums only
                compile_one(bwd, dtype, {"BLOCK_M": 64, "BLOCK_N": 64, "STORE_TILES": False}, 4)
        else:
            assert bwd is None
        if i == 0:  # shared kernels: their text does not depend on the hooks
            for second in (False, True):
                compile_one(getattr(mod, name + "_mm_kernel"), dtype,
                            {"HAS_SECOND": second, "DOT_PRECISION": prec, **tiles}, 8)
            compile_one(getattr(mod, name + "_colsum_kernel"), dtype,
                        {"BLOCK_R": 16, "BLOCK_N": 128}, 4)
print(json.dumps(report))
"""


def run_script(script, *args, timeout=600):
    """Run `script` in a subprocess without TRITON_INTERPRET; its last line of output is JSON."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_compile(combos, dtypes):
    return run_script(SCRIPT, json.dumps(combos), json.dumps(dtypes))


# float32 pointers change only loads, casts and the dot's precision, not the hook code: a subset
# of the combinations (one of each shape of kernel) keeps the test under ~30 s on two cores.
FP32_COMBOS = [COMBOS[0], COMBOS[2], COMBOS[4], COMBOS[7]]


@pytest.mark.parametrize(
    "dtype,combos", [("bfloat16", COMBOS), ("float32", FP32_COMBOS)], ids=["bf16", "fp32"]
)
def test_all_kernels_compile_for_sm90(dtype, combos):
    compiled = run_compile(combos, [dtype])
    n_bwd = sum(1 for c in combos if c["epilogue"] or c["dual"])
    # pass-through chains (bias and residual adds only) also compile without the tile stores
    n_bwd += sum(
        1
        for c in combos
        if c["epilogue"]
        and not c["dual"]
        and {s.split(":")[0] for s in c["epilogue"]} <= {"bias", "add"}
    )
    n_tma = 4 * len(combos) if dtype == "bfloat16" else 0
    n_epi = 2 * sum(1 for c in combos if c["epilogue"] and not c["dual"])
    # fwd per combo (and its TMA main loop, one tile per program and persistent, with host and
    # with in-kernel descriptors) + epilogue
    # backward where present + mm (two hooks) + colsum, and the separate epilogue pass twice
    assert len(compiled) == len(combos) + n_tma + n_bwd + 3 + n_epi
    assert n_epi > 0 and f"mmc1_epi_kernel:{dtype}" in compiled
    assert f"mmc0_mm_kernel:{dtype}" in compiled
    assert (f"mmc4_fwd_kernel:{dtype}:tma" in compiled) == (dtype == "bfloat16")
    assert (f"mmc7_fwd_kernel:{dtype}:tma:persistent" in compiled) == (dtype == "bfloat16")
    assert (f"mmc7_fwd_kernel:{dtype}:tma:dev:persistent" in compiled) == (dtype == "bfloat16")


TUNING_SCRIPT = r"""
import json, sys
import torch
from sparkc.codegen.render import render
from sparkc.runtime import launch
from sparkc.runtime.loader import load_source

prelude = render("prelude.py.jinja", version="test", source_name="compile")
report = []
for dual in (False, True):
    name = f"mmt{int(dual)}"
    mod = load_source(name, prelude + render("primitives_matmul.py.jinja", name=name, epilogue=["bias"],
                                             dual=dual))
    for dtype, ptr, prec in ((torch.bfloat16, "*bf16", "tf32"), (torch.float32, "*fp32", "ieee")):
        size = torch.empty(0, dtype=dtype).element_size()
        cands = {launch.fit_gemm(c, size, dual)
                 for c in launch.GEMM_CANDIDATES + launch.GEMM_SKINNY_CANDIDATES}
        for bm, bn, bk, group, warps, stages in sorted(cands):
            tiles = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group}
            fwd = getattr(mod, name + "_fwd_kernel")
            plain = {"SAVE": True, "USE_TMA": False, "PERSISTENT": False, "TMA_DEVICE": False}
            variants = [(fwd, plain, {}),
                        (getattr(mod, name + "_mm_kernel"), {"HAS_SECOND": dual}, {})]
            if dtype == torch.bfloat16:
                blocks = {"X": (bm, bk), "W": (bn, bk), "W_GATE": (bn, bk), "W_UP": (bn, bk)}
                desc = {a: "tensordesc<bf16[%d, %d]>" % blocks[a]
                        for a in fwd.arg_names if a in blocks}
                dev = {**plain, "USE_TMA": True, "TMA_DEVICE": True}
                variants += [(fwd, {**plain, "USE_TMA": True}, desc), (fwd, dev, {})]
                if warps == 8:  # the persistent candidates (launch.tuned_gemm)
                    variants.append((fwd, {**plain, "USE_TMA": True, "PERSISTENT": True}, desc))
                    variants.append((fwd, {**dev, "PERSISTENT": True}, {}))
            for fn, consts, desc in variants:
                sig = {a: ("i32" if a in ("M", "N", "K") or "stride" in a else ptr)
                       for a in fn.arg_names}
                consts = {**consts, "DOT_PRECISION": prec, **tiles}
                sig = {k: v for k, v in sig.items() if k not in consts}
                sig.update(desc)
                asm = launch.compile_for_target(fn, sig, consts, arch=90, num_warps=warps)
                report.append([fn.__name__, str(dtype), bm, bn, bk, warps, stages, bool(desc)])
print(json.dumps(report))
"""


@pytest.mark.exhaustive
def test_every_tuning_candidate_compiles_for_sm90():
    """Each (fitted) GEMM tuning candidate of `launch.tuned_gemm` compiles for sm_90 in the
    matmul template's kernels, plain and dual."""
    report = run_script(TUNING_SCRIPT, timeout=1800)
    assert len(report) >= 2 * 2 * 2 * 8, report
