"""Host-side launch helpers: `broadcast_shape` (what every generated launch uses instead of
`torch.broadcast_shapes`, which costs more host time than a small kernel runs) and the GEMM
tuning candidates of `tuned_gemm`."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sparkc.runtime import env, gemm, launch, tuning

dims = st.lists(st.integers(0, 4), min_size=0, max_size=4)


# deadline=None: torch.broadcast_shapes's first call is slow (it warms up), not wrong.
@settings(deadline=None)
@given(st.lists(dims, min_size=1, max_size=4))
def test_matches_torch_broadcast_shapes(shapes):
    try:
        want = tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        with pytest.raises(RuntimeError, match="cannot be broadcast"):
            launch.broadcast_shape(*shapes)
        return
    assert launch.broadcast_shape(*shapes) == want


def test_error_names_the_shapes():
    with pytest.raises(RuntimeError, match=r"\[2, 3\], \[4\]"):
        launch.broadcast_shape((2, 3), (4,))


def test_fit_gemm_halves_k_for_float32_and_drops_stages_to_fit_shared_memory():
    assert launch.fit_gemm((128, 128, 64, 8, 8, 3), 2) == (128, 128, 64, 8, 8, 3)
    assert launch.fit_gemm((128, 128, 64, 8, 8, 3), 4) == (128, 128, 32, 8, 8, 3)
    # Two operand pairs per stage: 4 x 2 x 128 x 128 x 2 B = 256 KB > budget -> 3 stages.
    assert launch.fit_gemm((64, 64, 128, 1, 4, 4), 2, dual=True) == (64, 64, 128, 1, 4, 3)
    for cand in launch.GEMM_CANDIDATES + launch.GEMM_SKINNY_CANDIDATES:
        for size in (2, 4):
            for dual in (False, True):
                bm, bn, bk, _, _, stages = launch.fit_gemm(cand, size, dual)
                pairs = 2 if dual else 1
                assert stages == 2 or stages * pairs * (bm + bn) * bk * size <= (200 << 10)


class _FakeCudaTensor:
    """Enough of a CUDA tensor for `tuned_gemm` to take its GPU branch."""

    dtype = torch.bfloat16

    class device:
        type = "cuda"
        index = 0

    @staticmethod
    def element_size():
        return 2


def _fake_gpu_tuning(patch_runtime, index, timed=True):
    """`tuned_gemm` as on a GPU, with `pick` replaced: it records the name, shape class and
    candidates into the returned dict, times candidate `index` (when `timed`) and picks it."""
    seen = {}

    def fake_pick(name, shape_class, candidates, bench_fn, *, source, like):
        candidates = candidates()  # evaluated only on a miss of the in-process memo
        seen.update(name=name, shape_class=shape_class, candidates=candidates)
        if timed:
            bench_fn(candidates[index])  # timing a candidate launches the kernel with it
        return candidates[index]

    patch_runtime("pick", fake_pick)
    patch_runtime("interpreting", lambda: False)
    patch_runtime("_GEMM_CHOICE", {})
    patch_runtime("bench_ms", lambda fn: fn() or 1.0)
    patch_runtime("capturing", lambda like: False)
    return seen


def _heuristic(M, N, K, dtype, like, dual=False):
    return dict(zip(launch.GEMM_KEYS, (128, 128, 64, 8, 8, 3)))


def _tune(runs, M=4096, **kw):
    """`tuned_gemm` of kernel "k" for a [M, 1024] output with K = 512 (fake GPU tensor)."""
    return launch.tuned_gemm("k", _heuristic, M, 1024, 512, _FakeCudaTensor(), runs.append, **kw)


def test_tuned_gemm_times_the_heuristic_first_then_every_fitted_candidate(
    patch_runtime, monkeypatch
):
    monkeypatch.setenv("SPARKC_TUNE_PRUNE", "0")  # the full list (pruning: its own test)
    seen = _fake_gpu_tuning(patch_runtime, 1)
    runs = []
    cfg = launch.tuned_gemm(
        "mm_kernel", _heuristic, 4096, 1024, 512, _FakeCudaTensor(), runs.append
    )
    cands = seen["candidates"]
    assert cands[0] == (128, 128, 64, 8, 8, 3)
    assert len(set(cands)) == len(cands) == len(launch.GEMM_CANDIDATES)
    assert seen["shape_class"] == [4096, 1024, 512, "torch.bfloat16", False, "full"]
    assert cfg == dict(zip(launch.GEMM_KEYS, cands[1])) == runs[0]
    # The next launch of the same shape class is a dictionary lookup: no pick, no timing.
    seen.clear()
    again = launch.tuned_gemm(
        "mm_kernel", _heuristic, 4000, 1024, 512, _FakeCudaTensor(), runs.append
    )
    assert again is cfg and not seen and len(runs) == 1


def test_tuned_gemm_offers_every_tile_both_ways_with_tma(patch_runtime, monkeypatch):
    monkeypatch.setenv("SPARKC_TUNE_PRUNE", "0")
    seen = _fake_gpu_tuning(patch_runtime, -1, timed=False)
    runs = []
    plain = _tune(runs)
    tiles = seen["candidates"]
    _tune(runs, tma=True)
    no_persistent = seen["candidates"]
    cfg = _tune(runs, tma=True, persistent=True)
    cands = seen["candidates"]
    n = len(tiles)
    assert no_persistent == cands[: 2 * n]  # persistent grids only for kernels that have them
    # Every tile with the pointer loop, then with the descriptor loop, then the 8-warp tiles
    # with the descriptor loop in a persistent grid.
    assert cands[:n] == [(*t, 0, 0) for t in tiles]
    assert cands[n : 2 * n] == [(*t, 1, 0) for t in tiles]
    assert cands[2 * n :] == [(*t, 1, 1) for t in tiles if t[4] == 8]
    assert 0 < len(cands) - 2 * n < n and tiles[0] == (128, 128, 64, 8, 8, 3)
    assert seen["shape_class"][-3:] == ["tma", "persistent", "full"]  # cached apart
    assert cfg["USE_TMA"] is True and cfg["PERSISTENT"] is True and "USE_TMA" not in plain
    assert {k: v for k, v in cfg.items() if k not in ("USE_TMA", "PERSISTENT")} == dict(
        zip(launch.GEMM_KEYS, cands[-1][:6])
    )
    # Skinny outputs (M <= 64) get no persistent candidates: too few tiles to walk.
    launch.tuned_gemm(
        "k", _heuristic, 32, 1024, 512, _FakeCudaTensor(), runs.append, tma=True, persistent=True
    )
    assert all(c[7] == 0 for c in seen["candidates"])


def test_tuning_off_takes_the_heuristic_without_timing(monkeypatch, tmp_path, patch_runtime):
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path))
    patch_runtime("interpreting", lambda: False)
    patch_runtime("_PICKED", {})
    patch_runtime("device_key", lambda like: "fake-gpu")
    patch_runtime("capturing", lambda like: False)
    timed = []

    def bench(cand):
        timed.append(cand)
        return {"a": 2.0, "b": 1.0}[cand]

    monkeypatch.setenv("SPARKC_TUNE", "0")
    assert not launch.tuning_enabled()
    assert launch.pick("k", 1, ["a", "b"], bench, source="src", like=_FakeCudaTensor()) == "a"
    assert timed == [] and not (tmp_path / "tuning").exists()
    monkeypatch.setenv("SPARKC_TUNE", "1")
    assert launch.pick("k", 2, ["a", "b"], bench, source="src", like=_FakeCudaTensor()) == "b"
    assert timed == ["a", "b"] * tuning.ROUNDS  # interleaved rounds


class _Double(torch.autograd.Function):
    seen: ClassVar[list] = []

    @staticmethod
    def forward(ctx, x, factor):
        _Double.seen.append(ctx.needs_input_grad)
        ctx.save_for_backward(x)
        ctx.mark_non_differentiable()
        ctx.factor = factor
        return x * factor

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


def test_apply_skips_autograd_when_no_gradient_can_flow():
    _Double.seen.clear()
    x = torch.ones(3)
    assert launch.apply(_Double, x, 2.0).grad_fn is None  # no input requires a gradient
    w = torch.ones(3, requires_grad=True)
    with torch.no_grad():
        y = launch.apply(_Double, w, 2.0)
    assert y.grad_fn is None and not y.requires_grad and torch.equal(y, 2 * x)
    assert _Double.seen == [(False, False), (False, False)]
    y = launch.apply(_Double, w, 3.0)  # recorded: the real Function.apply
    assert y.grad_fn is not None and _Double.seen[-1] == (True, False)
    y.sum().backward()
    assert torch.equal(w.grad, torch.full((3,), 3.0))


def test_tuned_gemm_offers_torch_gemm_last_and_returns_its_marker(patch_runtime, monkeypatch):
    # Timing the extern candidate calls `extern`, not `run`.
    monkeypatch.setenv("SPARKC_TUNE_PRUNE", "0")
    seen, calls = _fake_gpu_tuning(patch_runtime, -1), []
    runs = []
    plain = _tune(runs)
    tiles, plain_class = seen["candidates"], seen["shape_class"]
    assert launch.EXTERN not in tiles and plain is not launch.EXTERN_CFG and len(runs) == 1
    cfg = _tune(runs, extern=lambda: calls.append("extern"))
    assert seen["candidates"] == tiles + [launch.EXTERN]
    # Cached apart from the kernel-only class (which may not offer it).
    assert seen["shape_class"] == [*plain_class[:-1], "extern", "full"]
    assert cfg is launch.EXTERN_CFG and calls == ["extern"] and len(runs) == 1


def test_pruned_gemm_candidates_keep_the_heuristic_the_wide_descriptor_tiles_and_torch(
    patch_runtime, monkeypatch
):
    """16-bit GEMMs with M > 64 time a pruned list (runtime/gemm.py `pruned`, measured on the
    H100): the heuristic's tile in every form, the 128x256 tiles in descriptor forms, torch's
    GEMM; a large GEMM without an epilogue only the heuristic's tile and torch's GEMM. The key
    is the full list's (a choice timed over it still answers), float32 and skinny GEMMs and
    `$SPARKC_TUNE_PRUNE=0` keep every candidate."""
    seen = _fake_gpu_tuning(patch_runtime, 0, timed=False)
    monkeypatch.delenv("SPARKC_TUNE_PRUNE", raising=False)
    runs = []
    _tune(runs, tma=True, persistent=True, extern=lambda: None)
    cands = seen["candidates"]
    heur = (128, 128, 64, 8, 8, 3)
    assert cands[0] == (*heur, 0, 0) and cands[-1] == launch.EXTERN
    assert {c[6:] for c in cands[:-1] if c[:6] == heur} == {(0, 0), (1, 0), (1, 1)}
    wide = [c for c in cands[:-1] if c[:6] != heur]
    assert wide and all(c[:2] == (128, 256) and c[6] == 1 for c in wide)
    assert seen["shape_class"] == [
        4096,
        1024,
        512,
        "torch.bfloat16",
        False,
        "tma",
        "persistent",
        "extern",
    ]
    # No epilogue, every side >= 256: the heuristic and torch's GEMM only.
    launch.tuned_gemm(
        "k2", _heuristic, 4096, 1024, 512, _FakeCudaTensor(), runs.append, extern=lambda: None
    )
    assert seen["candidates"] == [heur, launch.EXTERN]
    # A small side keeps the wide tiles beside them.
    launch.tuned_gemm(
        "k3", _heuristic, 4096, 1024, 1, _FakeCudaTensor(), runs.append, extern=lambda: None
    )
    assert len(seen["candidates"]) > 2 and seen["candidates"][-1] == launch.EXTERN
    # Skinny outputs keep every candidate.
    launch.tuned_gemm("k4", _heuristic, 32, 1024, 512, _FakeCudaTensor(), runs.append)
    assert len(seen["candidates"]) == len(launch.GEMM_SKINNY_CANDIDATES) + 1
    # Switched off: the full list under its own key.
    monkeypatch.setenv("SPARKC_TUNE_PRUNE", "0")
    _tune(runs, tma=True, persistent=True, extern=lambda: None)
    assert len(seen["candidates"]) > len(cands) and seen["shape_class"][-1] == "full"


def test_extern_gemm_is_offered_for_16_bit_cuda_operands_only(monkeypatch):
    bf = torch.zeros(4, 4, dtype=torch.bfloat16)
    assert not launch.extern_gemm_ok(bf, bf, bf)  # CPU tensors

    class Cuda:
        def __init__(self, dtype):
            self.dtype = dtype
            self.device = torch.device("cuda", 0)

    a, f = Cuda(torch.bfloat16), Cuda(torch.float32)
    assert launch.extern_gemm_ok(a, a, a) and launch.extern_gemm_ok(a, a, f, f)
    assert not launch.extern_gemm_ok(f, f, f)  # float32 keeps the template's IEEE/TF32 choice
    assert not launch.extern_gemm_ok(a, Cuda(torch.float16), a)
    assert not launch.extern_gemm_ok(a, a, a, a)  # a 16-bit accumulator would round per chunk
    monkeypatch.setenv("SPARKC_EXTERN_GEMM", "0")
    assert not launch.extern_gemm_ok(a, a, a)


def test_extern_gemm_accumulates_into_acc_and_copies_to_out():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(7, 3, generator=g)
    acc = torch.randn(5, 3, generator=g)
    want = acc.double() + a.double() @ b.double()
    out = torch.empty(5, 3)
    assert launch.extern_gemm(a, b, out, acc) is out
    assert torch.allclose(out.double(), want, atol=1e-5) and torch.equal(acc, out)
    inplace = acc.clone()
    launch.extern_gemm(a, b, inplace, inplace)  # out is acc: one addmm, no copy
    assert torch.allclose(inplace.double(), want + a.double() @ b.double(), atol=1e-5)
    plain = launch.extern_gemm(a.t().contiguous().t(), b, torch.empty(5, 3))  # strided operand
    assert torch.allclose(plain.double(), a.double() @ b.double(), atol=1e-5)


def test_bench_ms_charges_gpu_and_host_time(monkeypatch, patch_runtime):
    import triton.testing

    # The tuner's score is the serial cost, GPU (flushed median) plus host (time to issue): a
    # candidate whose kernel is faster but whose host side is slower by more loses, also when
    # its kernel alone outlasts its host side (in a host-bound model the host time adds up).
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: 0.030)
    patch_runtime("issue_ms", lambda fn: 0.020)
    descriptor_loop = launch.bench_ms(lambda: None)
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: 0.036)
    patch_runtime("issue_ms", lambda fn: 0.008)
    pointer_loop = launch.bench_ms(lambda: None)
    assert descriptor_loop == pytest.approx(0.050) and pointer_loop == pytest.approx(0.044)
    # For CUDA-graph replays (SPARKC_TUNE_HOST=0) launches cost no host time: GPU time alone.
    monkeypatch.setenv("SPARKC_TUNE_HOST", "0")
    assert not launch.charge_host() and launch.bench_ms(lambda: None) == pytest.approx(0.036)
    monkeypatch.delenv("SPARKC_TUNE_HOST")


@pytest.mark.parametrize(
    "value,interp,tune",
    [
        (None, False, True),
        ("", False, True),
        ("1", True, True),
        ("0", False, False),
        ("off", False, False),
        (" No ", False, False),
        ("yes", True, True),
        ("false", False, False),
    ],
)
def test_environment_switches_follow_every_change(monkeypatch, value, interp, tune):
    # The switches are read on every call (through os.environ's own dictionary): a change made
    # at any time, by os.environ or monkeypatch, is seen by the next call.
    for name in ("TRITON_INTERPRET", "SPARKC_TUNE", "SPARKC_EXTERN_GEMM"):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert launch.interpreting() is interp
    assert launch.tuning_enabled() is tune
    assert env.switched_off("SPARKC_EXTERN_GEMM") is (not tune)
    assert env.switched_off("SPARKC_SOME_NEW_SWITCH") is False  # unset: on


def test_tuned_gemm_remembers_no_choice_made_inside_a_capture(patch_runtime):
    seen = _fake_gpu_tuning(patch_runtime, 0, timed=False)
    patch_runtime("capturing", lambda like: True)
    for _ in range(2):
        seen.clear()
        launch.tuned_gemm("k", _heuristic, 4096, 1024, 512, _FakeCudaTensor(), lambda cfg: None)
        assert seen  # asked pick() again: the provisional answer was not memoised
    assert gemm._GEMM_CHOICE == {}


def test_gpu_only_tuning_choices_are_stored_apart(monkeypatch, patch_runtime):
    from types import SimpleNamespace

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    patch_runtime("_cuda_identity", lambda index: ("NVIDIA H200", 9, 0, 132))
    like = SimpleNamespace(device=SimpleNamespace(type="cuda", index=0))
    charged = launch.device_key(like)
    monkeypatch.setenv("SPARKC_TUNE_HOST", "0")
    gpu_only = launch.device_key(like)
    assert charged.startswith("NVIDIA H200|sm90|triton-") and gpu_only == charged + "|gpu-only"
