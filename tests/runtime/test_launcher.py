"""sparkc's cached launcher (`sparkc/runtime/launcher.py`): argument order, the specialisation
key, when it takes Triton's normal path, and (on a GPU) that a model launched through it computes
what Triton's own launches compute."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
import triton
import triton.language as tl
from sparkc.runtime import launcher

ROOT = Path(__file__).resolve().parents[2]


@triton.jit
def _demo_kernel(x_ptr, y_ptr, n, scale, flag, BLOCK: tl.constexpr, EXTRA: tl.constexpr = 3):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + i, tl.load(x_ptr + i, mask=i < n) * scale, mask=(i < n) & flag)


class _Compiled:
    """Stands in for Triton's CompiledKernel: records the direct launches."""

    function = "fn-handle"
    packed_metadata = ("meta",)

    def __init__(self):
        self.launches = []

    def run(self, *args):
        self.launches.append(args)


class _FakeJit:
    """Stands in for a JIT function: the normal path, counted, returning one compiled kernel
    per call (as Triton's run returns the kernel it launched)."""

    def __init__(self, real):
        self.fn = real.fn
        self.arg_names = real.arg_names
        self.normal = []
        self.compiled = []

    def __getitem__(self, grid):
        def launch_(*args, **kwargs):
            self.normal.append((grid, args, kwargs))
            self.compiled.append(_Compiled())
            return self.compiled[-1]

        return launch_


@pytest.fixture
def fake_cuda(monkeypatch):
    """The launcher's device and stream queries, without a GPU; fast launches switched on."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda d: 1234, raising=False)
    monkeypatch.setattr(launcher, "fast_launch", lambda: True)


def test_arguments_come_in_signature_order_with_defaults():
    k = launcher.Kernel(_demo_kernel)
    x = torch.zeros(4)
    full = k.arguments((x,), {"BLOCK": 16, "flag": True, "n": 4, "y_ptr": x, "scale": 2.0})
    assert full == (x, x, 4, 2.0, True, 16, 3)
    assert k.arguments((x, x, 4, 2.0, True), {"BLOCK": 16, "EXTRA": 5})[-1] == 5
    assert k.arguments((x,), {"BLOCK": 16}) is None  # missing arguments: Triton's path raises


def _key(kernel, *args, **kwargs):
    return kernel.key(0, args, kwargs, torch.Tensor)


def test_key_separates_what_triton_specialises_on():
    k = launcher.Kernel(_demo_kernel)
    x = torch.zeros(64)
    base = _key(k, x, x, 32, 1.0, True, BLOCK=16, num_warps=4)
    assert base == _key(k, torch.ones(64), x, 48, 2.5, False, BLOCK=16, num_warps=4)
    different = [
        _key(k, x[1:], x, 32, 1.0, True, BLOCK=16, num_warps=4),  # 4-byte offset: misaligned
        _key(k, x.double(), x, 32, 1.0, True, BLOCK=16, num_warps=4),  # dtype
        _key(k, x, x, 33, 1.0, True, BLOCK=16, num_warps=4),  # 16 no longer divides n
        _key(k, x, x, 1, 1.0, True, BLOCK=16, num_warps=4),  # n == 1 (Triton bakes it in)
        _key(k, x, x, 2**33, 1.0, True, BLOCK=16, num_warps=4),  # 64-bit n
        _key(k, x, x, 32, 1.0, True, BLOCK=32, num_warps=4),  # a constexpr
        _key(k, x, x, 32, 1.0, True, BLOCK=16, num_warps=8),  # a launch option
        _key(k, x, x, 32, 1.0, True, BLOCK=16, EXTRA=4, num_warps=4),  # a defaulted constexpr
    ]
    assert base not in different and len(set(different)) == len(different)
    # Runtime arguments passed by keyword enter by kind too, not by value.
    by_kw = _key(k, x, y_ptr=x, n=32, scale=1.0, flag=True, BLOCK=16)
    assert by_kw == _key(
        k, torch.ones(64), y_ptr=torch.ones(64), n=64, scale=3.0, flag=False, BLOCK=16
    )
    assert by_kw != _key(k, x, y_ptr=x[1:], n=32, scale=1.0, flag=True, BLOCK=16)
    assert by_kw != _key(k, x, y_ptr=x, n=-32, scale=1.0, flag=True, BLOCK=16)  # negative n
    # Anything else (a host tensor descriptor, say) is not keyed: Triton's own path runs.
    assert _key(k, x, x, 32, 1.0, object(), BLOCK=16) is None
    assert _key(k, x, x, 32, 1.0, flag=object(), BLOCK=16) is None


def test_second_launch_of_a_key_calls_the_compiled_kernel_directly(fake_cuda):
    jit = _FakeJit(_demo_kernel)
    k = launcher.Kernel(jit)
    x = torch.zeros(64)
    first = k[(4,)](x, x, 32, 1.0, True, BLOCK=16, num_warps=4)
    assert len(jit.normal) == 1 and first is jit.compiled[0]
    k[(4, 2)](x, x, 32, 2.0, False, BLOCK=16, num_warps=4)
    assert len(jit.normal) == 1
    (args,) = jit.compiled[0].launches
    assert args[:9] == (4, 2, 1, 1234, "fn-handle", ("meta",), None, None, None)
    assert args[9:] == (x, x, 32, 2.0, False, 16, 3)
    # A new key (misaligned pointer), a callable grid, a launch hook: Triton's path.
    k[(4,)](x[1:], x, 32, 1.0, True, BLOCK=16, num_warps=4)
    k[lambda meta: (4,)](x, x, 32, 1.0, True, BLOCK=16, num_warps=4)
    assert len(jit.normal) == 3
    from triton import knobs

    old = knobs.runtime.launch_enter_hook
    assert not launcher._hooked(old)  # Triton's default: none (3.6) or an empty chain (3.9)
    knobs.runtime.launch_enter_hook = lambda *a: None
    try:
        k[(4,)](x, x, 32, 1.0, True, BLOCK=16, num_warps=4)
    finally:
        knobs.runtime.launch_enter_hook = old
    assert len(jit.normal) == 4 and len(jit.compiled[0].launches) == 1


def test_switched_off_it_is_tritons_launch(monkeypatch):
    jit = _FakeJit(_demo_kernel)
    k = launcher.Kernel(jit)
    x = torch.zeros(64)
    for _ in range(2):
        k[(4,)](x, x, 32, 1.0, True, BLOCK=16)
    assert len(jit.normal) == 2
    monkeypatch.setenv("SPARKC_FAST_LAUNCH", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not launcher.fast_launch()  # never under the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert launcher.fast_launch()
    monkeypatch.setenv("SPARKC_FAST_LAUNCH", "0")
    assert not launcher.fast_launch()


@pytest.mark.parametrize("version, default", [("3.6.0", True), ("3.9.0", False), ("3.10.1", False)])
def test_on_by_default_only_where_verified(monkeypatch, version, default):
    import triton

    monkeypatch.delenv("SPARKC_FAST_LAUNCH", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(triton, "__version__", version)
    monkeypatch.setattr(launcher, "_fast_default", [])
    assert launcher.fast_launch() is default
    monkeypatch.setenv("SPARKC_FAST_LAUNCH", "0" if default else "1")
    assert launcher.fast_launch() is not default


def test_generated_kernels_are_wrapped_and_helpers_are_not():
    from sparkc import api

    module = api.load(ROOT / "examples" / "tiny_gpt.spark")
    kernels = __import__(module.__name__ + ".kernels", fromlist=["_"])
    launched = {n: v for n, v in vars(kernels).items() if n.endswith("_kernel")}
    assert launched and all(isinstance(v, launcher.Kernel) for v in launched.values())
    ns = {"a_kernel": _demo_kernel, "helper": _demo_kernel, "other": types.SimpleNamespace()}
    launcher.wrap_kernels(ns)
    assert isinstance(ns["a_kernel"], launcher.Kernel) and ns["helper"] is _demo_kernel
    assert ns["a_kernel"].arg_names == _demo_kernel.arg_names  # attributes pass through


@pytest.mark.gpu
def test_fast_launches_compute_what_tritons_launches_compute(monkeypatch):
    """tiny_gpt forward + backward on the GPU with `SPARKC_FAST_LAUNCH=1` against the same
    model launched by Triton alone (deterministic embedding backward: no atomics)."""
    from sparkc import api
    from sparkc.tools.demo_data import progressions

    module = api.load(ROOT / "examples" / "tiny_gpt.spark")
    torch.manual_seed(0)
    net = module.Model(impl="triton").cuda()
    tokens, targets = progressions(3, 37, 64, torch.Generator().manual_seed(2))
    tokens, targets = tokens.cuda(), targets.cuda()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        results = []
        for flag in ("0", "1", "1"):  # the second fast pass runs on cached kernels
            monkeypatch.setenv("SPARKC_FAST_LAUNCH", flag)
            net.zero_grad(set_to_none=True)
            out = net(tokens, targets)
            out.loss.backward()
            results.append([out.loss.detach()] + [p.grad.clone() for p in net.parameters()])
    finally:
        torch.use_deterministic_algorithms(False)
    kernels = __import__(module.__name__ + ".kernels", fromlist=["_"])
    cached = sum(len(v._compiled) for n, v in vars(kernels).items() if n.endswith("_kernel"))
    assert cached > 0
    for a, b in zip(results[0], results[2]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_a_launch_inside_compile_only_compiles_and_runs_nothing():
    """The tuner's compile pass (`autotune.compile_only`): a `Kernel` launch becomes Triton's
    `warmup` with the same grid and arguments (it compiles for them and launches nothing)."""
    from sparkc.runtime import autotune, launcher

    def signature(X, n, BLOCK):  # the kernel's parameters, which Kernel reads
        pass

    class Jit:
        fn = staticmethod(signature)

        def __init__(self):
            self.warmed, self.launched = [], []

        def warmup(self, *args, grid, **kwargs):
            self.warmed.append((grid, args, kwargs))

        def __getitem__(self, grid):
            return lambda *a, **k: self.launched.append(grid)

    jit = Jit()
    kernel = launcher.Kernel(jit)
    x = torch.zeros(4)
    with autotune.compile_only():
        kernel[(3, 1)](x, 4, BLOCK=16)
    assert jit.warmed == [((3, 1), (x, 4), {"BLOCK": 16})] and jit.launched == []
