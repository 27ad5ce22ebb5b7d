"""Shared driver of the per-template compile-only tests.

Each `test_<family>_compile.py` lists (template context, kernel name, signature, constexprs)
cases and doubles as the script of a subprocess run without TRITON_INTERPRET (under the
interpreter the JIT objects are replaced, and the interpreter accepts code the real compiler
rejects). `compile_all` renders each template once, loads it from a file and compiles every
case to PTX for sm_90; `run_in_subprocess` runs a test file as that script; `main` is its body.
`run_sweep(command, jobs)` runs a sweep script over JSON jobs and returns its results.
`spill_bytes(ptx)` assembles PTX with Triton's own ptxas and returns the spill-store bytes it
reports (for kernels that keep a tile in registers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile


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


def ptxas_path() -> str:
    from triton.backends.nvidia import compiler

    try:  # Triton 3.9: one ptxas per architecture family
        tool = compiler.get_ptxas(90)
    except TypeError:  # older 3.x: a single bundled ptxas
        tool = compiler.get_ptxas()
    return tool.path


def spill_bytes(ptx: str) -> int:
    """Spill-store bytes ptxas reports when assembling `ptx` for sm_90a."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run(  # noqa: PLW1510 - the output is parsed, failures asserted
            [ptxas_path(), "-arch=sm_90a", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"(\d+) bytes spill stores", proc.stderr)
    assert found, proc.stderr
    return sum(int(x) for x in found)


def run_sweep(command: list[str], jobs, timeout: int = 1500) -> list:
    """Runs `command + [json of jobs]` without the interpreter and returns the JSON list its
    last `RESULTS...` line carries (the sweep scripts of the attention-like families)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [*command, json.dumps(jobs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS")][-1]
    return json.loads(line[len("RESULTS") :])


def run_in_subprocess(path: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, path], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "compiled" in proc.stdout
    return proc.stdout


def main(case_list) -> int:
    failed = compile_all(case_list)
    print("\n".join(failed))
    print(f"compiled {len(case_list) - len(failed)}/{len(case_list)}")
    return 1 if failed else 0
