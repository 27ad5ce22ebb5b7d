"""Unit tests of the on-disk tuning cache (`sparkc.runtime.tuning`) and the launch helpers that
use it (`sparkc.runtime.launch`): hits and misses, keys that include the source hash, shape class
and device, corrupted files, atomic rewrites, the interpreter shortcut, cache folders."""

import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch
from sparkc.runtime import autotune, env, launch, tuning


class Bench:
    """A fake timer: fixed times per candidate, counting calls."""

    def __init__(self, times):
        self.times = times
        self.calls = []

    def __call__(self, cand):
        self.calls.append(cand)
        t = self.times[cand[0]]
        if isinstance(t, Exception):
            raise t
        return t


CANDS = [(1024, 4), (2048, 8), (4096, 8)]


def test_miss_times_every_candidate_then_hits(tmp_path):
    cache = tuning.TuningCache(tmp_path)
    bench = Bench({1024: 3.0, 2048: 1.0, 4096: 2.0})
    assert cache.choose("k", "h1", [16, 1 << 20], "gpu", CANDS, bench) == (2048, 8)
    assert len(bench.calls) == 3 * tuning.ROUNDS
    assert cache.choose("k", "h1", [16, 1 << 20], "gpu", CANDS, bench) == (2048, 8)
    assert len(bench.calls) == 3 * tuning.ROUNDS  # in-process hit
    fresh = tuning.TuningCache(tmp_path)  # a new process reads the file
    assert fresh.choose("k", "h1", [16, 1 << 20], "gpu", CANDS, Bench({})) == (2048, 8)


def test_key_includes_source_hash_shape_class_and_device(tmp_path):
    cache = tuning.TuningCache(tmp_path)
    cache.choose("k", "h1", "small", "gpuA", CANDS, Bench({1024: 1, 2048: 2, 4096: 3}))
    for src, cls, dev in [
        ("h2", "small", "gpuA"),
        ("h1", "large", "gpuA"),
        ("h1", "small", "gpuB"),
    ]:
        bench = Bench({1024: 9.0, 2048: 1.0, 4096: 9.0})
        assert cache.choose("k", src, cls, dev, CANDS, bench) == (2048, 8)
        assert len(bench.calls) == 3 * tuning.ROUNDS, (src, cls, dev)
    entries = json.loads(cache.path("k").read_text())["entries"]
    assert len(entries) == 4


def test_source_hash_changes_with_source_and_reads_jit_src():
    class FakeJit:
        src = "def kernel(): pass"

    assert tuning.source_hash("a") != tuning.source_hash("b")
    assert tuning.source_hash(FakeJit()) == tuning.source_hash("def kernel(): pass")
    with pytest.raises(TypeError):
        tuning.source_hash(object())


@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"version": 99, "entries": {}}', ""])
def test_corrupted_file_is_ignored_and_rewritten(tmp_path, garbage):
    cache = tuning.TuningCache(tmp_path)
    path = cache.path("k")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(garbage)
    bench = Bench({1024: 2.0, 2048: 3.0, 4096: 1.0})
    assert cache.choose("k", "h", 1, "gpu", CANDS, bench) == (4096, 8)
    data = json.loads(path.read_text())
    assert data["version"] == tuning.FORMAT_VERSION and len(data["entries"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_stale_choice_not_among_candidates_is_a_miss(tmp_path):
    cache = tuning.TuningCache(tmp_path)
    cache.choose("k", "h", 1, "gpu", CANDS, Bench({1024: 1.0, 2048: 2.0, 4096: 3.0}))
    bench = Bench({512: 5.0, 2048: 1.0})
    assert cache.choose("k", "h", 1, "gpu", [(512, 2), (2048, 8)], bench) == (2048, 8)
    assert len(bench.calls) == 2 * tuning.ROUNDS


def test_failing_candidates_are_skipped_and_all_failing_raises(tmp_path):
    cache = tuning.TuningCache(tmp_path)
    bench = Bench({1024: RuntimeError("out of resources"), 2048: float("nan"), 4096: 4.0})
    assert cache.choose("k", "h", 1, "gpu", CANDS, bench) == (4096, 8)
    with pytest.raises(RuntimeError, match="every tuning candidate"):
        cache.choose("k2", "h", 1, "gpu", CANDS[:1], Bench({1024: RuntimeError("x")}))
    with pytest.raises(ValueError):
        cache.choose("k3", "h", 1, "gpu", [], Bench({}))


def test_rounds_interleave_so_a_slow_spell_does_not_decide(tmp_path):
    # The device is slow (2x) during the first measurement: a single pass times the truly
    # fastest candidate during that spell and picks the second best.
    calls = []

    def drifting(cand):
        calls.append(cand)
        base = {1024: 1.0, 2048: 1.2, 4096: 3.0}[cand[0]]
        return base * (2.0 if len(calls) == 1 else 1.0)

    cache = tuning.TuningCache(tmp_path)
    assert cache.choose("k", "h", 1, "gpu", CANDS, drifting, rounds=1) == (2048, 8)
    calls.clear()
    assert cache.choose("k2", "h", 1, "gpu", CANDS, drifting) == (1024, 4)
    # Round-robin order: every candidate once per round.
    assert calls == CANDS * tuning.ROUNDS
    timings = json.loads(cache.path("k2").read_text())["entries"]
    assert [round(t, 6) for t in next(iter(timings.values()))["timings_ms"]] == [1.0, 1.2, 3.0]


def test_rounds_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKC_TUNE_ROUNDS", "1")
    bench = Bench({1024: 3.0, 2048: 1.0, 4096: 2.0})
    assert tuning.TuningCache(tmp_path).choose("k", "h", 1, "gpu", CANDS, bench) == (2048, 8)
    assert len(bench.calls) == 3
    for junk in ("0", "x"):
        monkeypatch.setenv("SPARKC_TUNE_ROUNDS", junk)
        assert tuning.tuning_rounds() == (1 if junk == "0" else tuning.ROUNDS)


def test_a_failing_candidate_is_not_timed_again(tmp_path):
    cache = tuning.TuningCache(tmp_path)
    bench = Bench({1024: RuntimeError("out of resources"), 2048: 2.0, 4096: 1.0})
    assert cache.choose("k", "h", 1, "gpu", CANDS, bench) == (4096, 8)
    assert bench.calls.count((1024, 4)) == 1
    assert bench.calls.count((4096, 8)) == tuning.ROUNDS


def test_two_writers_merge_entries(tmp_path):
    a, b = tuning.TuningCache(tmp_path), tuning.TuningCache(tmp_path)
    a.choose("k", "h", "x", "gpu", CANDS, Bench({1024: 1.0, 2048: 2.0, 4096: 3.0}))
    b.choose("k", "h", "y", "gpu", CANDS, Bench({1024: 3.0, 2048: 2.0, 4096: 1.0}))
    entries = json.loads(a.path("k").read_text())["entries"]
    assert len(entries) == 2


def test_default_cache_follows_sparkc_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path / "c1"))
    assert tuning.default_cache().directory == tmp_path / "c1" / "tuning"
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path / "c2"))
    assert tuning.default_cache().directory == tmp_path / "c2" / "tuning"
    monkeypatch.delenv("SPARKC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_root() == tmp_path / "xdg" / "sparkc"


def test_pick_without_gpu_returns_first_candidate_untimed(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path))
    bench = Bench({})
    like = torch.zeros(1)
    assert launch.pick("k", 1, CANDS, bench, source="src", like=like) == CANDS[0]
    assert bench.calls == [] and not (tmp_path / "tuning").exists()


class Cuda:
    """Stands for a tensor on a GPU (pick only reads its device)."""

    class device:
        type = "cuda"
        index = 0


def _fake_gpu(tmp_path, monkeypatch, patch_runtime, capturing) -> None:
    """pick() as on a GPU: a fresh cache in tmp_path, no interpreter, an empty memo."""
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_default", None)
    patch_runtime("interpreting", lambda: False)
    patch_runtime("device_key", lambda like: "gpu")
    patch_runtime("_PICKED", {})
    patch_runtime("capturing", capturing)


def test_pick_inside_a_cuda_graph_capture_never_times(tmp_path, monkeypatch, patch_runtime):
    # Timing synchronises, which a capture forbids: the stored choice if any, else the
    # heuristic, and nothing is remembered, so the first call after the capture tunes.
    capture = [True]
    _fake_gpu(tmp_path, monkeypatch, patch_runtime, lambda like: capture[0])
    bench = Bench({1024: 3.0, 2048: 1.0, 4096: 2.0})
    assert launch.pick("k", [7], CANDS, bench, source="src", like=Cuda()) == CANDS[0]
    assert bench.calls == [] and autotune._PICKED == {}
    capture[0] = False  # after the capture: timed, stored, remembered
    assert launch.pick("k", [7], CANDS, bench, source="src", like=Cuda()) == (2048, 8)
    assert bench.calls and autotune._PICKED
    autotune._PICKED.clear()
    capture[0] = True  # a later capture (another process would be the same) reads the disk
    calls = len(bench.calls)
    assert launch.pick("k", [7], CANDS, bench, source="src", like=Cuda()) == (2048, 8)
    assert len(bench.calls) == calls and autotune._PICKED == {}


def test_small_helpers(monkeypatch):
    assert [launch.next_pow2(n) for n in (0, 1, 2, 3, 17, 64)] == [1, 1, 2, 4, 32, 64]
    assert [launch.cdiv(a, 4) for a in (0, 1, 4, 5)] == [0, 1, 1, 2]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert launch.interpreting()
    assert launch.device_key(torch.zeros(1)).startswith("cpu-interpreter|triton-")
    launch.require_cuda(torch.zeros(1))  # CPU tensors are fine under the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not launch.interpreting()
    with pytest.raises(RuntimeError, match="impl='triton' runs generated kernels on a CUDA"):
        launch.require_cuda(torch.zeros(1))
    assert launch.num_warps_for(128) == 1 and launch.num_warps_for(1 << 16) == 16


def test_configure_triton_cache_respects_user_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))
    assert launch.configure_triton_cache() == str(tmp_path / "mine")
    monkeypatch.delenv("TRITON_CACHE_DIR")
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path / "sp"))
    assert launch.configure_triton_cache() == str(tmp_path / "sp" / "triton")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "sp" / "triton")
    assert (tmp_path / "sp" / "triton").is_dir()


def test_require_triton_gives_an_install_hint_when_missing():
    # A meta-path hook makes `import triton` fail in a fresh interpreter.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'triton' or name.startswith('triton.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from sparkc.runtime import launch\n"
        "try:\n"
        "    launch.require_triton()\n"
        "except ImportError as e:\n"
        "    print('HINT:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert "HINT:" in out.stdout and "pip install" in out.stdout, out.stderr


def test_choose_prepares_only_when_it_times(tmp_path):
    """`prepare` (the tuner's compile pass) runs once before the timing rounds of a miss, never
    for a cached choice."""
    cache, prepared = tuning.TuningCache(tmp_path), []
    bench = Bench({1024: 3.0, 2048: 1.0, 4096: 2.0})
    prepare = lambda: prepared.append(len(bench.calls))
    assert cache.choose("k", "h", [1], "gpu", CANDS, bench, prepare=prepare) == (2048, 8)
    assert prepared == [0]  # before any timing
    assert cache.choose("k", "h", [1], "gpu", CANDS, bench, prepare=prepare) == (2048, 8)
    assert prepared == [0]


class CompileProbe:
    """A fake bench_fn recording, per call, the candidate, its thread and the compile-only
    state; candidate 4096 fails."""

    def __init__(self):
        self.calls = []

    def __call__(self, cand):
        import threading

        self.calls.append((cand, threading.get_ident(), autotune.compiling_only()))
        if cand[0] == 4096:
            raise RuntimeError("the compiler rejects this tile")
        return {1024: 3.0, 2048: 1.0}[cand[0]]


def test_precompile_compiles_each_candidate_once_in_worker_threads(monkeypatch):
    import threading

    probe, like = CompileProbe(), torch.zeros(1)
    monkeypatch.setenv("SPARKC_COMPILE_WORKERS", "1")
    autotune.precompile(CANDS, probe, like)
    assert probe.calls == []  # one worker: nothing ahead of the timing
    monkeypatch.delenv("SPARKC_COMPILE_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert env.compile_workers() == env.DEFAULT_COMPILE_WORKERS  # unset: on, bounded
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert env.compile_workers() == 2  # never more threads than CPUs
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert env.compile_workers() == 1
    monkeypatch.setenv("SPARKC_COMPILE_WORKERS", "3")
    autotune.precompile(CANDS, probe, like)  # the failing candidate does not raise here
    assert sorted(c for c, _, _ in probe.calls) == sorted(CANDS)
    assert all(only for _, _, only in probe.calls)
    first, rest = probe.calls[0], probe.calls[1:]
    assert first[0] == CANDS[0] and first[1] == threading.get_ident()  # alone, first
    assert all(thread != threading.get_ident() for _, thread, _ in rest)
    assert not autotune.compiling_only()
    for bad in ("0", "two"):
        monkeypatch.setenv("SPARKC_COMPILE_WORKERS", bad)
        with pytest.raises(ValueError, match="SPARKC_COMPILE_WORKERS must be a positive"):
            autotune.precompile(CANDS, probe, like)


def test_pick_compiles_every_candidate_before_timing_any(tmp_path, monkeypatch, patch_runtime):
    _fake_gpu(tmp_path, monkeypatch, patch_runtime, lambda like: False)
    monkeypatch.setenv("SPARKC_COMPILE_WORKERS", "2")
    monkeypatch.setattr(autotune, "_caller_place", lambda like: contextlib.nullcontext)
    probe = CompileProbe()
    assert launch.pick("k", [3], CANDS, probe, source="src", like=Cuda()) == (2048, 8)
    only = [o for _, _, o in probe.calls]
    assert only[:3] == [True] * 3 and not any(only[3:])  # compiled first, then timed
    assert len(probe.calls) == 3 + 2 * tuning.ROUNDS + 1  # the failing one is timed once


def test_bench_ms_inside_compile_only_calls_once_and_times_nothing():
    calls = []
    with autotune.compile_only():
        assert autotune.bench_ms(lambda: calls.append(1)) == 0.0
        with autotune.compile_only():
            pass
        assert autotune.compiling_only()  # nesting restores the outer state
    assert calls == [1] and not autotune.compiling_only()


def test_a_pick_inside_the_compile_pass_is_provisional(tmp_path, monkeypatch, patch_runtime):
    """A candidate's call may reach another kernel's pick (a plan of several launches): inside
    the compile pass that pick times nothing and remembers nothing, as inside a capture, so no
    choice is made from the pass's zero timings."""
    from sparkc.runtime import device

    real = device.capturing
    # No CUDA here: the stand-in is the real predicate's compile-pass half.
    _fake_gpu(tmp_path, monkeypatch, patch_runtime, lambda like: device.compiling_only())
    bench = Bench({1024: 3.0, 2048: 1.0, 4096: 2.0})
    with autotune.compile_only():
        assert real(Cuda()) and real(torch.zeros(1))
        assert launch.pick("k", [5], CANDS, bench, source="src", like=Cuda()) == CANDS[0]
    assert bench.calls == [] and autotune._PICKED == {}
    assert not real(torch.zeros(1))
    assert launch.pick("k", [5], CANDS, bench, source="src", like=Cuda()) == (2048, 8)
