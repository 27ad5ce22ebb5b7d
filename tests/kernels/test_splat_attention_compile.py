"""Compile-only tests of the splat-attention chunked-scan family: every kernel compiled to PTX
for sm_90.

Each kernel of `codegen_templates/splat_attention.py.jinja` (chunk-local states, the prefix scan
in its three modes, chunk output, chunk-local backward states, chunk backward) is compiled with
`triton.compile` for a `GPUTarget("cuda", 90, 32)` on this CPU machine, for every (causal,
normalize) specialisation, with bfloat16 and float32 activation pointers, the dot precisions and
the GPU tiles that `<name>_tiles` and `<name>_precisions` give (head width 128, 64 splats: the
benchmark's shape; head width 40 and 5 splats: padded tiles). Each kernel must fit the H100's
227 KiB of shared memory per block, 16-bit products must use wgmma, and at the benchmark's shape
ptxas (`-v`) must report at most SPILL_LIMIT bytes of spill stores per kernel. The work runs in a
subprocess without TRITON_INTERPRET (this file is its script).
"""

import json
import os
import sys

from compile_harness import run_sweep

H100_SHARED_BYTES = 232448
FP32_ARGS = {"CEN", "LS", "LA", "HS", "ZS", "DHS", "DZS", "DEN", "DELTA", "P1", "P2", "P3"}
KERNELS = ("local", "prefix", "out", "bwd_local", "bwd_chunk")


def signature(fn, elt, consts):
    sig = {}
    for a in fn.arg_names:
        if a in consts:
            sig[a] = "constexpr"
        elif a in FP32_ARGS or a == "X":
            sig[a] = "*fp32"
        elif a[0].islower() or a in ("H", "N", "K", "NCS", "NCH", "M"):
            sig[a] = "i32"
        else:
            sig[a] = elt
    return sig


def spill_bytes(ptx: str) -> int:
    """Spill-store bytes ptxas reports when assembling `ptx` for sm_90a."""
    from test_stack_scan_compile import spill_bytes as stack_spill_bytes

    return stack_spill_bytes(ptx)


def run_jobs(jobs):
    import triton
    from sparkc.runtime.loader import load_source
    from triton.backends.compiler import GPUTarget

    from sparkc.codegen.render import render

    os.environ.pop("TRITON_INTERPRET", None)
    results = []
    for causal, normalize, head_d, splats, dtype, spills in jobs:
        name = f"splc{int(causal)}{int(normalize)}"
        text = render("prelude.py.jinja", version="t", source_name="t")
        ctx = {"causal": causal, "normalize": normalize}
        mod = load_source(name, text + render("splat_attention.py.jinja", name=name, **ctx))
        like = mod.torch.empty(
            0, dtype=getattr(mod.torch, {"bf16": "bfloat16"}.get(dtype, "float32"))
        )
        bt, bk, sub, sub_bwd, block, warps = getattr(mod, name + "_tiles")(head_d, splats, like)
        phi_prec = getattr(mod, name + "_precision")(like)
        elt = "*bf16" if dtype == "bf16" else "*fp32"
        for kernel in KERNELS:
            fn = getattr(mod, f"{name}_{kernel}_kernel")
            fn = getattr(fn, "jit", fn)
            if kernel == "prefix":
                variants = [({"BLOCK": block, "MODE": mode}, 4) for mode in (0, 1, 2)]
            else:
                width = sub_bwd if kernel == "bwd_chunk" else sub
                consts = {"HEAD_D": head_d, "BLOCK_T": bt, "SUB_D": width, "BLOCK_K": bk}
                consts.update(PHI_PREC=phi_prec)
                if kernel in ("out", "bwd_local"):
                    consts.update(SPLIT_O=normalize and dtype == "bf16")
                variants = [(consts, warps)]
            for consts, w in variants:
                src = triton.compiler.ASTSource(
                    fn=fn,
                    signature=signature(fn, elt, consts),
                    constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()},
                )
                c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": w})
                ptx = c.asm["ptx"]
                results.append(
                    {
                        "job": [causal, normalize, head_d, splats, dtype, spills],
                        "kernel": kernel,
                        "sm90": ".target sm_90" in ptx,
                        "shared": c.metadata.shared,
                        "wgmma": "wgmma" in ptx,
                        "spill": spill_bytes(ptx) if spills else None,
                    }
                )
    return results


def compile_jobs(jobs):
    return run_sweep([sys.executable, __file__], jobs)


# (causal, normalize, head width, splats, dtype, check ptxas spills)
JOBS = [
    [True, True, 128, 64, "bf16", True],
    [True, False, 128, 64, "bf16", False],
    [False, True, 128, 64, "bf16", False],
    [False, False, 40, 5, "bf16", False],
    [True, True, 40, 5, "fp32", False],
]
# Spill stores ptxas may report at the benchmark's shape (head width 128, 64 splats, bf16): the
# chunk kernels keep their [T, ·] tiles in registers (measured with Triton 3.9: none, and 96
# bytes in the chunk backward; see `_GPU_TILES` in the template).
SPILL_LIMIT = 512


def test_compile_every_splat_kernel():
    results = compile_jobs(JOBS)
    for job in JOBS:
        kernels = {r["kernel"] for r in results if r["job"] == job}
        assert kernels == set(KERNELS), (job, kernels)
    for r in results:
        assert r["sm90"], r
        assert r["shared"] <= H100_SHARED_BYTES, r
        if r["spill"] is not None:
            assert r["spill"] <= SPILL_LIMIT, r
        if r["job"][4] == "bf16" and r["kernel"] != "prefix":
            assert r["wgmma"], r  # tf32 dots on Hopper's tensor-core instructions


if __name__ == "__main__":
    assert "TRITON_INTERPRET" not in os.environ
    print("RESULTS" + json.dumps(run_jobs(json.loads(sys.argv[1]))))
