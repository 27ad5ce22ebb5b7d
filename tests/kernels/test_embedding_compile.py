"""Compile-only check: every kernel of the embedding template, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import sys

from compile_harness import main, run_in_subprocess


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    out = []
    for pos in (False, True):
        ctx = {"template": "primitives_embedding.py.jinja", "name": "emb", "pos": pos}
        for dt, tok in (("fp32", "*i64"), ("bf16", "*i32")):
            p = f"*{dt}"
            ints = {
                "M": "i32",
                "N": "i32",
                "V": "i32",
                "D": "i32",
                "pos_offset": "i32",
                "Bsz": "i32",
            }
            tiles = {"BLOCK_R": 4, "BLOCK_D": 1024}
            out.append(
                (
                    ctx,
                    "emb_fwd_kernel",
                    {"tok_ptr": tok, "w_ptr": p, "p_ptr": p, "y_ptr": p, "err_ptr": "*i32", **ints},
                    tiles,
                )
            )
            out.append(
                (
                    ctx,
                    "emb_dw_atomic_kernel",
                    {"tok_ptr": tok, "dy_ptr": p, "dw_ptr": "*fp32", **ints},
                    tiles,
                )
            )
            out.append(
                (
                    ctx,
                    "emb_dw_sorted_kernel",
                    {"sorted_ptr": tok, "perm_ptr": "*i64", "dy_ptr": p, "dw_ptr": p, **ints},
                    {"BLOCK_D": 1024},
                )
            )
            if pos:
                out.append((ctx, "emb_dp_kernel", {"dy_ptr": p, "dp_ptr": p, **ints}, tiles))
    return out


def test_embedding_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    sys.exit(main(cases()))
