"""Compile-only checks of Triton kernels for sm_90 on a machine without a GPU: a script run in a
subprocess without `TRITON_INTERPRET` (the interpreter replaces `triton.compile`'s backend),
whose last stdout line is JSON. Used by the kernel tests of runtime modules (decode steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

# Imported by a script: compile `fn` with `consts` for sm_90, pointer arguments typed by
# `ptr(name)`, the rest i32; the PTX's length.
PRELUDE = r"""
import json
import triton
from triton.backends.compiler import GPUTarget

def ptx_size(fn, consts, ptr, warps=4):
    sig = {a: ("constexpr" if a in consts else ptr(a)) for a in fn.arg_names}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs={
        (fn.arg_names.index(k),): v for k, v in consts.items()})
    c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    return len(c.asm["ptx"])
"""


def compile_script(body: str) -> Any:
    """Run PRELUDE + `body` (which prints one JSON line last) for sm_90; its parsed output."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + body],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
