"""Triton's compiler as sparkc sets it up: its cache folder and ahead-of-time compiles.

Consumes: `$TRITON_CACHE_DIR` (a user's choice wins) and sparkc's cache root (`tuning.cache_root`);
a `@triton.jit` function (or a generated module's launcher around one), a type for each of its
arguments and a CUDA architecture. Produces: the path of Triton's kernel cache
(`configure_triton_cache`, which sets `$TRITON_CACHE_DIR`) and a kernel's assembly by stage
(`compile_for_target`: no GPU needed), used by the compile-only tests and checks.

triton is imported inside `compile_for_target` (through `env.require_triton`).
"""

from __future__ import annotations

import os
from typing import Any

from . import env, tuning


def configure_triton_cache() -> str:
    """Point Triton's kernel cache at a sparkc-owned folder unless the user chose one."""
    current = os.environ.get("TRITON_CACHE_DIR")
    if current:
        return current
    path = tuning.cache_root() / "triton"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TRITON_CACHE_DIR"] = str(path)
    return str(path)


def compile_for_target(
    fn: Any,
    signature: dict[str, str],
    constexprs: dict[str, Any],
    *,
    arch: int = 90,
    num_warps: int = 4,
    num_stages: int | None = None,
    divisible: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Compile a `@triton.jit` function ahead of time for CUDA `sm_<arch>` (no GPU needed) and
    return its assembly by stage (`ttir`, `ttgir`, `llir`, `ptx`, ...).

    `signature` maps every argument name to a Triton type string (`*fp32`, `*bf16`, `i32`, `fp32`,
    ...); constexpr arguments may be left out of it. `num_stages`: the software pipeline's depth
    (Triton's default when None). `divisible`: arguments to compile as multiples of 16 (pointers
    16-byte aligned), the specialisation a real launch gets for such values; without it every
    pointer and integer is compiled as unaligned, which blocks vectorised loads and inflates
    registers and spills (2026-12-07: the plain attention forward 255 registers and 280 bytes of
    stack unspecialised, 189 and none specialised, Triton 3.6). Works with Triton 3.2+ (constexpr
    keys are passed as `(index,)` tuples, the form every 3.x version accepts).
    """
    triton = env.require_triton()
    from triton.backends.compiler import GPUTarget

    fn = getattr(fn, "jit", fn)  # a generated module's launcher (runtime/launcher.py)

    sig = {}
    for arg in fn.arg_names:
        if arg in constexprs:
            sig[arg] = "constexpr"
        elif arg in signature:
            sig[arg] = signature[arg]
        else:
            raise KeyError(f"{fn.__name__}: no type for argument {arg!r}")
    consts = {(fn.arg_names.index(k),): v for k, v in constexprs.items()}
    unknown = set(divisible) - set(fn.arg_names)
    if unknown:
        raise KeyError(f"{fn.__name__}: no argument {min(unknown)!r}")
    attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in divisible}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
    options = {"num_warps": num_warps}
    if num_stages is not None:
        options["num_stages"] = num_stages
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    return dict(compiled.asm)
