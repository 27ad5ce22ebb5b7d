"""Test-suite configuration shared by every layer of tests.

- Without CUDA, Triton kernels run under the interpreter: TRITON_INTERPRET=1 must be set before
  anything imports triton, hence the import of torch and the environment at the very top.
  Compile-only tests (PTX for sm_90) run in subprocesses that remove it.
- `pytest --update-goldens` rewrites golden files instead of comparing (fixture `update_goldens`).
- `patch_runtime(name, value)` (fixture) replaces a runtime name for generated code and for the
  runtime's own modules at once.
- Tests marked `gpu` are skipped when `torch.cuda.is_available()` is False: the only skip allowed.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

HAS_CUDA = torch.cuda.is_available()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden files (expected IR, generated code, diagnostics) instead of comparing",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


# The quick check of README.md, `pytest -m "not slow and not exhaustive"`, leaves these out: they
# run generated Triton kernels (under the interpreter without a GPU) or train models, most of the
# suite's time. Paths relative to the repository root; a file of QUICK_PATHS stays in.
SLOW_PATHS = (
    "tests/kernels/",
    "tests/codegen/",
    "tests/property/test_codegen_random.py",
    "tests/cli/test_demo.py",
)
QUICK_PATHS = ("tests/codegen/test_golden_codegen.py",)
ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else ""
        if rel.startswith(SLOW_PATHS) and not rel.startswith(QUICK_PATHS):
            item.add_marker(pytest.mark.slow)
        # A fuzz campaign runs for minutes: `-m "not slow ..."` replaces the default
        # `not fuzz`, so the quick check must see it as slow too.
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(pytest.mark.slow)
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        # The marker, not `item.keywords`: keywords also hold node names (a tests/gpu/ folder).
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture
def patch_runtime(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Any], None]:
    """`patch_runtime(name, value)`: for this test, `value` replaces the runtime object `name`
    wherever it is looked up: on `sparkc.runtime.launch` (the facade generated code calls as
    `_launch.<name>`) and on every other `sparkc.runtime` module that binds the same object (the
    module that defines it, through which the runtime's own modules call it, e.g.
    `env.interpreting`, `autotune.pick`, `gemm._GEMM_CHOICE`). An unknown name is an error.

    The tuner's parallel compile pass is off for the test (one compile worker) unless the
    environment or the test sets `$SPARKC_COMPILE_WORKERS`: a test that patches the runtime fakes
    the GPU or counts timing calls, and the pass would put its threads on a CUDA stream (which a
    fake GPU tensor does not have) and call each candidate once more ahead of the timing."""
    import sys

    from sparkc.runtime import launch

    if "SPARKC_COMPILE_WORKERS" not in os.environ:
        monkeypatch.setenv("SPARKC_COMPILE_WORKERS", "1")

    def patch(name: str, value: Any) -> None:
        runtime = [
            m
            for key, m in sorted(sys.modules.items())
            if m is not None and (key == "sparkc.runtime" or key.startswith("sparkc.runtime."))
        ]
        missing = object()
        original = getattr(launch, name, missing)
        if original is missing:
            owners = [m for m in runtime if name in vars(m)]
            if len(owners) != 1:
                raise AttributeError(f"no single sparkc.runtime module defines {name!r}: {owners}")
            original = vars(owners[0])[name]
        for module in runtime:
            if vars(module).get(name, missing) is original:
                monkeypatch.setattr(module, name, value)

    return patch


@pytest.fixture
def force_extern_gemm(
    monkeypatch: pytest.MonkeyPatch, patch_runtime: Callable[[str, Any], None]
) -> list[str]:
    """Every GEMM that offers torch's own GEMM (`tuned_gemm(extern=...)`) gets it, as if it had
    won the tuning; the list collects the names of those kernels. Off GPU the offer is widened
    to CPU (and float32) operands, so the interpreter tests run the generated code's extern
    branch through `launch.extern_gemm` (torch.mm / addmm)."""
    from sparkc.runtime import launch

    real, used = launch.tuned_gemm, []

    def forced(kernel, heuristic, M, N, K, like, run, dual=False, tma=False, extern=None, **kw):
        if extern is not None:
            used.append(getattr(kernel, "fn", kernel).__name__)
            return launch.EXTERN_CFG
        return real(kernel, heuristic, M, N, K, like, run, dual, tma=tma)

    monkeypatch.setattr(launch, "tuned_gemm", forced)  # generated code's `_launch.tuned_gemm`
    if not HAS_CUDA:  # for generated code and for `extern_call`, which asks it
        patch_runtime("extern_gemm_ok", lambda a, b, out, acc=None: True)
    return used
