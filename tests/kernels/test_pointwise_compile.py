"""Compile-only check: every kernel of the pointwise and reduce templates, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess

PROGRAM = {
    "inputs": ["a", "b"],
    "body": ["t0 = a + b", "t1 = t0 * tl.sigmoid(t0) * alpha"],
    "outputs": [("y", "t1"), ("z", "t0")],
    "scalars": ["alpha"],
}


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    out = []
    for dt in ("fp32", "bf16"):
        p = f"*{dt}"
        sig = {
            "a_ptr": p,
            "b_ptr": p,
            "y_ptr": p,
            "z_ptr": "*fp32",
            "alpha": "fp32",
            "numel": "i32",
            "size1": "i32",
            "size2": "i32",
            "size3": "i32",
        }
        sig.update({f"{x}_st{k}": "i32" for x in "ab" for k in range(4)})
        ctx = dict(template="primitives_pointwise.py.jinja", name="pw", **PROGRAM)
        for ndim in (1, 4):
            for int64 in (False, True):
                for unit in (False, True):
                    consts = {"NDIM": ndim, "BLOCK": 1024, "INT64": int64}
                    consts.update(a_UNIT=unit, b_UNIT=not unit)
                    out.append((ctx, "pw_kernel", sig, consts))
        for mode in ("all", "leading"):
            ctx = {
                "template": "primitives_reduce.py.jinja",
                "name": "rd",
                "mode": mode,
                "inputs": ["g", "h"],
                "body": ["t0 = (g - h) * (g - h)"],
                "value": "t0",
            }
            sig = {"g_ptr": p, "h_ptr": p, "part_ptr": "*fp32"}
            if mode == "all":
                sig.update(numel="i32", nprog="i32")
                out.append((ctx, "rd_partial_kernel", sig, {"BLOCK": 2048, "INT64": True}))
                fsig = {"part_ptr": "*fp32", "out_ptr": p, "nparts": "i32", "scale": "fp32"}
                out.append((ctx, "rd_finish_kernel", fsig, {"BLOCK_P": 512}))
            else:
                sig.update(R="i32", D="i32", rows_per_prog="i32")
                out.append(
                    (ctx, "rd_partial_kernel", sig, {"BLOCK_R": 32, "BLOCK_D": 128, "INT64": False})
                )
                fsig = {
                    "part_ptr": "*fp32",
                    "out_ptr": p,
                    "nparts": "i32",
                    "D": "i32",
                    "scale": "fp32",
                }
                out.append((ctx, "rd_finish_kernel", fsig, {"BLOCK_D": 128}))
    return out


def test_pointwise_and_reduce_compile_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
