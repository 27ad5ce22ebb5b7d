"""Compile-only tests of the fk_attention family: every kernel compiled to PTX for sm_90.

The interpreter accepts code the real compiler rejects (layouts, dot shapes, dtype rules), so each
kernel of `codegen_templates/spark_k_fk_attention.py.jinja` is compiled with `triton.compile` for a
`GPUTarget("cuda", 90, 32)` on this CPU machine, for bfloat16 and float32 pointers, causal and
not, with the default Hopper tiles the fragment would launch (every tuning candidate too in the
`slow` test). The hop kernel is compiled in each of its (FIRST, LAST) roles. Each kernel
must fit the H100's 227 KiB of shared memory per block, and 16-bit matmul kernels must use
Hopper's wgmma instructions. The work runs in a subprocess without TRITON_INTERPRET (this file
is that subprocess's script).
"""

import json
import os
import sys

import pytest
from compile_harness import run_sweep

H100_SHARED_BYTES = 232448
FP32_ARGS = {"LSE", "DELTA", "RACC"}
FLOAT_ARGS = {"sm_scale", "beta", "out_scale"}
INT_ARGS = {"H", "N", "HOPS"}
HOP_ROLES = [  # (FIRST, LAST): hops = 1, first of many, middle, last
    (True, True),
    (True, False),
    (False, False),
    (False, True),
]


def signature(fn, elt, consts):
    sig = {}
    for a in fn.arg_names:
        if a in consts:
            continue
        if a in FP32_ARGS:
            sig[a] = "*fp32"
        elif a in FLOAT_ARGS:
            sig[a] = "fp32"
        elif a in INT_ARGS or a.startswith("stride"):
            sig[a] = "i32"
        else:
            sig[a] = elt
    return sig


def compile_one(fn, elt, consts, warps, stages):
    import triton
    from triton.backends.compiler import GPUTarget

    sig = {a: ("constexpr" if a in consts else t) for a, t in signature(fn, elt, consts).items()}
    sig = {a: sig.get(a, "constexpr") for a in fn.arg_names}
    src = triton.compiler.ASTSource(
        fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()}
    )
    c = triton.compile(
        src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages}
    )
    ptx = c.asm["ptx"]
    assert ".target sm_90" in ptx
    return {"shared": c.metadata.shared, "wgmma": "wgmma" in ptx}


def run_jobs(jobs):
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    results = []
    for causal, head_d, dtype, all_configs, role_ids in jobs:
        name = f"fkc{int(causal)}"
        text = render("prelude.py.jinja", version="t", source_name="t")
        mod = load_source(
            name, text + render("spark_k_fk_attention.py.jinja", name=name, causal=causal)
        )
        elt = "*bf16" if dtype == "bf16" else "*fp32"
        block_d = max(16, 1 << (head_d - 1).bit_length())
        size = 2 if dtype == "bf16" else 4
        table = getattr(mod, name + "_CONFIGS")
        kernels = {
            "hop": "_hop_kernel",
            "g": "_bwd_g_kernel",
            "dkdv": "_bwd_dkdv_kernel",
            "dq": "_bwd_dq_kernel",
        }
        job = [causal, head_d, dtype, all_configs, role_ids]
        for kernel, suffix in kernels.items():
            fn = getattr(mod, name + suffix)
            cands = table[(kernel, max(64, block_d), size)]
            roles = [HOP_ROLES[i] for i in role_ids] if kernel == "hop" else [None]
            for bm, bn, warps, stages in cands if all_configs else cands[:1]:
                for role in roles:
                    consts = {
                        "HEAD_D": head_d,
                        "BLOCK_M": bm,
                        "BLOCK_N": bn,
                        "BLOCK_D": block_d,
                        "DOT_PREC": "ieee",
                    }
                    if role is not None:
                        consts.update(FIRST=role[0], LAST=role[1])
                    r = compile_one(fn, elt, consts, warps, stages)
                    results.append({"job": job, "kernel": kernel, "role": role, **r})
        fn = getattr(mod, name + "_bwd_prep_kernel")
        r = compile_one(fn, elt, {"HEAD_D": head_d, "BLOCK_M": 64, "BLOCK_D": block_d}, 4, 1)
        results.append({"job": job, "kernel": "prep", "role": None, **r})
    return results


def compile_jobs(jobs):
    return run_sweep([sys.executable, __file__], jobs)


def check_results(results, jobs):
    assert {json.dumps(r["job"]) for r in results} == {json.dumps(j) for j in jobs}
    kinds = {r["kernel"] for r in results}
    assert kinds == {"hop", "g", "dkdv", "dq", "prep"}, kinds
    for r in results:
        assert r["shared"] <= H100_SHARED_BYTES, r
        if r["kernel"] != "prep" and r["job"][2] == "bf16":
            assert r["wgmma"], r


ALL_ROLES = list(range(len(HOP_ROLES)))
# (causal, head width, dtype, every tuning candidate?, hop roles). float32 (IEEE dots) compiles
# take ~6 s each on this machine, so the default covers two hop roles there.
COVERING = [
    [True, 64, "bf16", False, ALL_ROLES],
    [False, 128, "bf16", False, ALL_ROLES],
    [False, 40, "fp32", False, [1, 3]],
]


def test_compile_every_kernel_and_hop_role():
    check_results(compile_jobs(COVERING), COVERING)


@pytest.mark.exhaustive
def test_compile_every_tuning_candidate():
    jobs = [
        [c, d, dt, True, ALL_ROLES]
        for c in (False, True)
        for d in (64, 128)
        for dt in ("bf16", "fp32")
    ]
    check_results(compile_jobs(jobs), jobs)


if __name__ == "__main__":
    assert "TRITON_INTERPRET" not in os.environ
    print("RESULTS" + json.dumps(run_jobs(json.loads(sys.argv[1]))))
