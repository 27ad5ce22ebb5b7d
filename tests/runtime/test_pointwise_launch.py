"""`launch_pointwise` (runtime/pointwise.py), the host side every generated pointwise kernel
shares, with a stand-in kernel that records its launches: the arguments it assembles, the tile
under the interpreter, below 2^20 elements and as tuned (name, shape class and candidates given
to `pick`), the int64 switch and the checks on the outputs. The generated kernels themselves run
in tests/kernels/test_pointwise.py."""

from __future__ import annotations

import pytest
import torch
from sparkc.runtime import launch, pointwise


class _Kernel:
    """Records `kernel[grid](*args, **kwargs)` as (grid, args, kwargs)."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((grid, args, kwargs))


def test_arguments_and_interpreter_tile(patch_runtime):
    patch_runtime("interpreting", lambda: True)
    k = _Kernel()
    a = torch.randn(5, 3)
    b = torch.randn(3, 5).t()  # transposed: innermost stride 5
    y, z = torch.empty(5, 3), torch.empty(5, 3)
    launch.launch_pointwise(k, "pw", ("a_UNIT", "b_UNIT"), [a, b], [y, z], 2)
    ((grid, args, kwargs),) = k.calls
    assert grid == (1,)  # 15 elements, BLOCK 32
    assert [t.data_ptr() for t in args[:4]] == [t.data_ptr() for t in (a, b, y, z)]
    assert args[2] is y and args[3] is z
    assert args[4] == 2.0 and type(args[4]) is float
    assert args[5] == 15
    assert kwargs == {
        "a_UNIT": True,
        "b_UNIT": False,
        "NDIM": 2,
        "BLOCK": 32,
        "INT64": False,
        "num_warps": 1,
    }


def test_small_tensors_take_the_default_tile_untimed(patch_runtime):
    patch_runtime("interpreting", lambda: False)
    patch_runtime("pick", lambda *a, **k: pytest.fail("timed a small launch"))
    k = _Kernel()
    y = torch.empty(1000)
    launch.launch_pointwise(k, "pw", ("a_UNIT",), [torch.ones(())], [y])
    ((grid, _, kwargs),) = k.calls
    assert grid == (1,) and kwargs["BLOCK"] == 1024 and kwargs["num_warps"] == 4
    assert kwargs["a_UNIT"] is False  # a broadcast scalar walks with stride 0


def test_large_tensors_are_tuned_under_the_fragment_name(patch_runtime):
    patch_runtime("interpreting", lambda: False)
    patch_runtime("bench_ms", lambda fn: fn() or 1.0)
    seen = {}

    def pick(name, shape_class, candidates, bench_fn, *, source, like):
        seen.update(name=name, shape_class=shape_class, candidates=candidates)
        assert source is k and like is y
        bench_fn(candidates[2])  # timing launches the kernel with that tile
        return candidates[2]

    patch_runtime("pick", pick)
    k = _Kernel()
    y = torch.empty(1 << 20)
    x = torch.ones(1, dtype=torch.bfloat16).expand(1 << 20)
    launch.launch_pointwise(k, "pw3_f", ("a0_UNIT",), [x], [y])
    assert seen["name"] == "pw3_f"
    assert seen["shape_class"] == [1, 1 << 20, "torch.bfloat16", "torch.float32"]
    assert list(seen["candidates"]) == [(1024, 4), (2048, 4), (4096, 8), (8192, 8)]
    timed, run = k.calls
    assert timed[0] == run[0] == ((1 << 20) // 4096,)
    assert timed[2]["INT64"] is False and timed[2]["BLOCK"] == 4096
    assert run[2] == {"a0_UNIT": False, "NDIM": 1, "BLOCK": 4096, "INT64": False, "num_warps": 8}


def test_int64_offsets_when_an_input_reaches_past_2_31(patch_runtime):
    patch_runtime("interpreting", lambda: True)
    k = _Kernel()
    # A meta tensor: strides of a 2^31-element storage without the memory.
    big = torch.empty(2**31 + 3, device="meta").as_strided((2, 3), (2**31, 1))
    launch.launch_pointwise(k, "pw", ("a_UNIT",), [big], [torch.empty(2, 3)])
    assert k.calls[0][2]["INT64"] is True


def test_outputs_checked_and_empty_launches_nothing():
    k = _Kernel()
    with pytest.raises(AssertionError, match="pointwise outputs: contiguous, one shape"):
        launch.launch_pointwise(k, "pw", ("a_UNIT",), [torch.ones(3)], [torch.empty(3, 2).t()])
    launch.launch_pointwise(k, "pw", ("a_UNIT",), [torch.ones(())], [torch.empty(0, 3)])
    assert k.calls == [] and launch.launch_pointwise is pointwise.launch_pointwise
