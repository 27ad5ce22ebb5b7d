"""Test-suite configuration shared by every layer of tests.

- Without CUDA, Triton kernels run under the interpreter: TRITON_INTERPRET=1 must be set before
  anything imports triton, hence the import of torch and the environment at the very top.
  Compile-only tests (PTX for sm_90) run in subprocesses that remove it.
- `pytest --update-goldens` rewrites golden files instead of comparing (fixture `update_goldens`).
- Tests marked `gpu` are skipped when `torch.cuda.is_available()` is False: the only skip allowed.
"""

import os
from pathlib import Path

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
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        # The marker, not `item.keywords`: keywords also hold node names (a tests/gpu/ folder).
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture
def force_extern_gemm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
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

    monkeypatch.setattr(launch, "tuned_gemm", forced)
    if not HAS_CUDA:
        monkeypatch.setattr(launch, "extern_gemm_ok", lambda a, b, out, acc=None: True)
    return used
