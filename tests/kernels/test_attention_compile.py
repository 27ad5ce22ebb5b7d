"""Compile-only tests of the attention family: every kernel compiled to PTX for sm_90.

The interpreter accepts code the real compiler rejects (layouts, dot shapes, dtype rules), so each
kernel is compiled with `triton.compile` for a `GPUTarget("cuda", 90, 32)` on this CPU machine, for
bfloat16 and float32 pointers, with the Hopper block sizes the fragment would launch. The work runs
in a subprocess without TRITON_INTERPRET (under the interpreter `@triton.jit` objects are not
compilable). Each compiled kernel must fit the H100's 227 KiB of shared memory per block, and the
16-bit forward must use Hopper's wgmma tensor-core instructions.

The default test compiles a covering set of hook combinations (every value of every hook, the
interacting ones together); the `slow` test compiles the full product and every tuning candidate.
"""

import sys
import textwrap

import pytest
from compile_harness import run_sweep

H100_SHARED_BYTES = 232448

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    assert "TRITON_INTERPRET" not in os.environ
    import triton
    from triton.backends.compiler import GPUTarget
    from sparkc.codegen.render import render
    from sparkc.runtime.loader import load_source

    BASES = {None: None,
             "distance": {"freqs": 4, "legendre": 4, "over": "distance", "max_len": 4096},
             "key": {"freqs": 2, "legendre": 3, "over": "key", "max_len": 4096},
             # max_len 128: every Hopper tile is past the low-rank form's spread bound, so the
             # kernels keep the per-element bias (the other branch of the same code).
             "distance_pe": {"freqs": 4, "legendre": 4, "over": "distance", "max_len": 128}}
    FP32_ARGS = {"LSE", "DELTA", "DG_PART", "DGQ_PART", "PART", "PART_Q", "GAINS", "DG"}

    def signature(fn, elt, consts, grad_elt, x_elt):
        sig = {}
        for a in fn.arg_names:
            if a in consts:
                sig[a] = "constexpr"
            elif a in FP32_ARGS:
                sig[a] = "*fp32"
            elif a in ("DQ", "DK"):
                sig[a] = grad_elt
            elif a in ("X", "X2"):
                sig[a] = x_elt
            elif a in ("Q", "K", "V", "O", "O_LO", "DO", "DV", "Y", "Y2"):
                sig[a] = elt
            elif a == "sm_scale":
                sig[a] = "fp32"
            else:
                sig[a] = "i32"
        return sig

    def compile_one(fn, elt, consts, warps, stages, grad_elt=None, x_elt=None):
        sig = signature(fn, elt, consts, grad_elt or elt, x_elt or elt)
        src = triton.compiler.ASTSource(
            fn=fn, signature=sig,
            constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
        c = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": warps, "num_stages": stages})
        ptx = c.asm["ptx"]
        return {"shared": c.metadata.shared, "wgmma": "wgmma" in ptx, "ptx": len(ptx)}

    jobs = json.loads(sys.argv[1])
    results = []
    for job in jobs:
        causal, group, rope, basis, head_d, dtype, all_configs = job
        name = f"cc{int(causal)}g{group}r{int(rope)}{basis or 'none'}"
        ctx = dict(name=name, causal=causal, group=group, rope=rope, rope_base=10000.0,
                   basis=BASES[basis])
        text = render("prelude.py.jinja", version="t", source_name="t")
        mod = load_source(name, text + render("attention.py.jinja", **ctx))
        elt = "*bf16" if dtype == "bf16" else "*fp32"
        block_d = max(16, 1 << (head_d - 1).bit_length())
        # dq, dk are float32 only when a launch rotates them back (head width not the tile's).
        grad_elt = "*fp32" if rope and head_d != block_d else elt
        size = 2 if dtype == "bf16" else 4
        prec = "tf32" if dtype == "bf16" else "ieee"  # what NAME_prec passes at run time
        table = getattr(mod, name + "_CONFIGS")
        for kernel in ("fwd", "dkdv", "dq"):
            fn = getattr(mod, {"fwd": name + "_fwd_kernel", "dkdv": name + "_bwd_dkdv_kernel",
                               "dq": name + "_bwd_dq_kernel"}[kernel])
            cands = table[(kernel, max(64, block_d), size)]
            for bm, bn, warps, stages in (cands if all_configs else cands[:1]):
                consts = dict(HEAD_D=head_d, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=block_d,
                              DOT_PREC=prec)
                if kernel == "fwd":
                    consts["SPLIT_O"] = dtype == "bf16"
                r = compile_one(fn, elt, consts, warps, stages, grad_elt)
                results.append({"job": job, "kernel": kernel, "config": [bm, bn, warps, stages], **r})
        fused = getattr(mod, name + "_FUSED_CONFIGS").get((max(64, block_d), size), [])
        for bm1, bn1, bm2, bn2, warps, stages in (fused if all_configs else fused[:1]):
            consts = dict(HEAD_D=head_d, BLOCK_M1=bm1, BLOCK_N1=bn1, BLOCK_M2=bm2, BLOCK_N2=bn2,
                          BLOCK_D=block_d, DOT_PREC=prec)
            r = compile_one(getattr(mod, name + "_bwd_fused_kernel"), elt, consts, warps, stages,
                            grad_elt)
            results.append({"job": job, "kernel": "fused", "config": [bm1, bn1, bm2, bn2, warps, stages], **r})
        fn = getattr(mod, name + "_bwd_preprocess_kernel")
        r = compile_one(fn, elt, dict(HEAD_D=head_d, BLOCK_M=64, BLOCK_D=block_d,
                                      SPLIT_O=dtype == "bf16"), 4, 1)
        results.append({"job": job, "kernel": "preprocess", **r})
        if rope:
            fn = getattr(mod, name + "_rope_kernel")
            for inverse, x_elt in ((False, elt), (True, "*fp32")):
                consts = dict(HEAD_D=head_d, BLOCK_T=64, BLOCK_D=block_d, INVERSE=inverse)
                r = compile_one(fn, elt, consts, 4, 1, x_elt=x_elt)
                results.append({"job": job, "kernel": f"rope_inverse={inverse}", **r})
        if basis:
            fn = getattr(mod, name + "_dgains_kernel")
            a = 2 * BASES[basis]["freqs"] + BASES[basis]["legendre"]
            consts = dict(A=a, A_PAD=max(2, 1 << (a - 1).bit_length()), BLOCK_R=128)
            r = compile_one(fn, elt, consts, 4, 1)
            results.append({"job": job, "kernel": "dgains", **r})
    print("RESULTS" + json.dumps(results))
    """
)


def compile_jobs(jobs):
    return run_sweep([sys.executable, "-c", SCRIPT], jobs)


def check_results(results, jobs):
    assert {tuple(r["job"]) for r in results} == {tuple(j) for j in jobs}
    for r in results:
        assert r["ptx"] > 0
        assert r["shared"] <= H100_SHARED_BYTES, r
        if r["kernel"] == "fwd" and r["job"][5] == "bf16":
            assert r["wgmma"], r


# (causal, group, rope, basis, head width, dtype, every tuning candidate?)
COVERING = [
    [True, 1, True, None, 128, "bf16", False],
    [True, 2, False, "distance", 128, "bf16", False],
    [False, 2, True, "key", 64, "bf16", False],
    [False, 1, True, None, 40, "fp32", False],
    [True, 2, True, "distance_pe", 128, "fp32", False],
    [False, 1, False, "distance", 64, "bf16", False],
]


def test_compile_covering_hook_combinations():
    results = compile_jobs(COVERING)
    check_results(results, COVERING)
    # The one-launch backward is offered for 16-bit operands up to d = 128.
    fused = {tuple(r["job"]) for r in results if r["kernel"] == "fused"}
    assert fused == {tuple(j) for j in COVERING if j[5] == "bf16" and j[4] <= 128}


@pytest.mark.exhaustive
def test_compile_every_hook_combination_and_tuning_candidate():
    jobs = [
        [c, g, r, b, 128, dt, False]
        for c in (False, True)
        for g in (1, 2)
        for r in (False, True)
        for b in (None, "distance", "distance_pe", "key")
        for dt in ("bf16", "fp32")
    ]
    jobs += [[True, 2, True, "distance", d, dt, True] for d in (64, 256) for dt in ("bf16", "fp32")]
    jobs += [[False, 2, True, "distance", 128, dt, True] for dt in ("bf16", "fp32")]
    results = compile_jobs(jobs)
    check_results(results, jobs)
