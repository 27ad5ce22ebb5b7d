"""`sparkc.runtime.launch`, the facade generated code calls as `_launch.<name>`: every name the
templates and the golden generated files use is there, as the owning module's own object, and
the `patch_runtime` fixture replaces a name for generated code and the runtime's internals."""

from __future__ import annotations

import re
from pathlib import Path

from sparkc.runtime import autotune, device, env, launch, tiles

ROOT = Path(__file__).resolve().parents[2]
OWNERS = (
    "env",
    "device",
    "tiles",
    "autotune",
    "gemm",
    "pointwise",
    "sdpa",
    "stacking",
    "tma",
    "dispatch",
    "triton_compile",
)


def _generated_names() -> set[str]:
    names = set()
    for folder in ("codegen_templates", "tests/golden"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                names |= set(re.findall(r"\b_launch\.(\w+)", path.read_text(errors="replace")))
    return names


def test_every_name_generated_code_calls_is_on_the_facade():
    names = _generated_names()
    assert {"interpreting", "tuned_gemm", "apply", "_NoGradCtx", "wrap_kernels"} <= names
    assert sorted(n for n in names if not hasattr(launch, n)) == []


def test_facade_names_are_the_owning_modules_objects():
    import importlib

    modules = [importlib.import_module(f"sparkc.runtime.{m}") for m in OWNERS]
    for name in launch.__all__:
        if name == "wrap_kernels":  # imports the launcher (and triton) on first use
            continue
        # `_NoGradCtx` is generated code's name for dispatch.NoGradCtx (no private imports).
        owned = (name, name.lstrip("_"))
        owners = [
            m for m in modules if any(getattr(m, n, None) is getattr(launch, name) for n in owned)
        ]
        assert owners, f"launch.{name} is not an object of any owning module"


def test_patch_runtime_reaches_generated_code_and_internal_callers(monkeypatch, patch_runtime):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert tiles.row_tile(100) == (32, 128)  # compiled: rows stacked to ~4096 elements
    patch_runtime("interpreting", lambda: True)
    assert launch.interpreting() and env.interpreting()
    assert tiles.row_tile(100) == (2, 128)  # tiles calls env.interpreting()
    patch_runtime("_PICKED", {"sentinel": 1})
    assert autotune._PICKED == {"sentinel": 1}
    patch_runtime("capturing", lambda like: "patched")
    assert launch.capturing(None) == device.capturing(None) == "patched"
