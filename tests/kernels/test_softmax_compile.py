"""Compile-only check: every kernel of the softmax template, for each constexpr
specialisation, compiled to PTX for sm_90 (float32 and bfloat16 pointers) without a GPU.

The interpreter accepts code the real compiler rejects, so this runs in a subprocess without
TRITON_INTERPRET (the file doubles as that subprocess's script).
"""

import os
import subprocess
import sys


def cases():
    """(template context, kernel attribute, signature, constexprs) for every kernel/hook/dtype."""
    ctx = {"template": "softmax.py.jinja", "name": "sm"}
    out = []
    for dt in ("fp32", "bf16"):
        p = f"*{dt}"
        for one_pass, block_r, block_d in ((True, 4, 1024), (False, 1, 8192)):
            consts = {"BLOCK_R": block_r, "BLOCK_D": block_d, "ONE_PASS": one_pass}
            out.append(
                (ctx, "sm_fwd_kernel", {"x_ptr": p, "y_ptr": p, "R": "i32", "D": "i32"}, consts)
            )
            out.append(
                (
                    ctx,
                    "sm_bwd_kernel",
                    {"y_ptr": p, "dy_ptr": p, "dx_ptr": p, "R": "i32", "D": "i32"},
                    consts,
                )
            )
    return out


def compile_all(case_list) -> list[str]:
    from sparkc.runtime.launch import compile_for_target
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    prelude = render("prelude.py.jinja", version="test", source_name="compile_test")
    modules, failures = {}, []
    for ctx, kernel, sig, consts in case_list:
        ctx = dict(ctx)
        template = ctx.pop("template")
        text = prelude + render(template, **ctx)
        if text not in modules:
            modules[text] = load_source(f"compile_{ctx['name']}", text)
        try:
            asm = compile_for_target(getattr(modules[text], kernel), sig, consts)
            assert ".target sm_90" in asm["ptx"], "no sm_90 PTX"
        except Exception as e:  # noqa: BLE001 - report every failing case, not just the first
            failures.append(f"{template} {kernel} {sig} {consts}: {type(e).__name__}: {e}")
    return failures


def run_in_subprocess(path: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(  # noqa: PLW1510 - the return code is asserted with the output
        [sys.executable, path], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "compiled" in proc.stdout


def test_softmax_compiles_for_sm90():
    run_in_subprocess(__file__)


if __name__ == "__main__":
    all_cases = cases()
    failed = compile_all(all_cases)
    print("\n".join(failed))
    print(f"compiled {len(all_cases) - len(failed)}/{len(all_cases)}")
    sys.exit(1 if failed else 0)
