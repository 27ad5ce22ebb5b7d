"""Compile-only tests of the verifier-stack scan family: every kernel compiled to PTX for sm_90.

Each kernel of `codegen_templates/spark_k_stack_scan.py.jinja` (forward scan with and without noise and
saving, loss reduction, reverse scan, logits gradient) is compiled with `triton.compile` for a
`GPUTarget("cuda", 90, 32)` on this CPU machine, for both read modes, with bfloat16 and float32
activation pointers and the GPU tiles of `<name>_config` (stack sizes 4 and 32). The scan keeps
an [S_PAD, BLOCK_E] float32 memory slice in registers: Triton's own ptxas (`-v`) must report no
spill stores for the scan kernels (PTX has unlimited virtual registers; spilling is decided by
ptxas). The work runs in a subprocess without TRITON_INTERPRET (this file is its script).
"""

import json
import os
import subprocess
import sys

from compile_harness import spill_bytes

FP32_ARGS = {"NOISE", "PTR", "PI", "CKPT", "LOSS_PART", "SCRATCH", "DPART", "DLOSS"}
INT_ARGS = {"N", "S", "ELEM", "R", "N_EB"}


def signature(fn, elt, consts):
    sig = {}
    for a in fn.arg_names:
        if a in consts:
            sig[a] = "constexpr"
        elif a == "coef":
            sig[a] = "fp32"
        elif a in INT_ARGS:
            sig[a] = "i32"
        elif a in FP32_ARGS:
            sig[a] = "*fp32"
        else:
            sig[a] = elt
    return sig


def compile_one(fn, elt, consts, warps):
    import triton
    from triton.backends.compiler import GPUTarget

    src = triton.compiler.ASTSource(
        fn=fn,
        signature=signature(fn, elt, consts),
        constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()},
    )
    c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    ptx = c.asm["ptx"]
    assert ".target sm_90" in ptx
    return {"spill_bytes": spill_bytes(ptx), "shared": c.metadata.shared}


def run_jobs(jobs):
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    results = []
    for read, dtype, s_pad, block_e in jobs:
        name = f"ssc_{read}"
        text = render("prelude.py.jinja", version="t", source_name="t")
        mod = load_source(name, text + render("spark_k_stack_scan.py.jinja", name=name, read=read))
        elt = "*bf16" if dtype == "bf16" else "*fp32"
        warps = 4 if s_pad * block_e >= 2048 else 2
        tiles = {"CHUNK": 64, "S_PAD": s_pad, "BLOCK_E": block_e}
        job = [read, dtype, s_pad, block_e]
        for noise, save in ((False, False), (True, True), (False, True)):
            consts = dict(tiles, HAS_NOISE=noise, SAVE=save)
            r = compile_one(getattr(mod, name + "_fwd_kernel"), elt, consts, warps)
            results.append({"job": job, "kernel": f"fwd noise={noise} save={save}", **r})
        r = compile_one(getattr(mod, name + "_bwd_kernel"), elt, tiles, warps)
        results.append({"job": job, "kernel": "bwd", **r})
        r = compile_one(getattr(mod, name + "_loss_kernel"), elt, {"BLOCK_R": 256}, 4)
        results.append({"job": job, "kernel": "loss", **r})
        r = compile_one(getattr(mod, name + "_dlogits_kernel"), elt, {"BLOCK_R": 256}, 4)
        results.append({"job": job, "kernel": "dlogits", **r})
    return results


# (read, dtype, S_PAD, BLOCK_E): stack 32 with the widest element block, stack 4 with a narrow one.
JOBS = [["top", "bf16", 32, 64], ["mean", "fp32", 32, 64], ["top", "fp32", 4, 16]]


def test_compile_every_scan_kernel():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(  # noqa: PLW1510 - the return code is asserted with the output
        [sys.executable, __file__, json.dumps(JOBS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS")][-1]
    results = json.loads(line[len("RESULTS") :])
    assert {json.dumps(r["job"]) for r in results} == {json.dumps(j) for j in JOBS}
    assert len(results) == 6 * len(JOBS)
    for r in results:
        assert r["spill_bytes"] == 0, r


if __name__ == "__main__":
    assert "TRITON_INTERPRET" not in os.environ
    print("RESULTS" + json.dumps(run_jobs(json.loads(sys.argv[1]))))
