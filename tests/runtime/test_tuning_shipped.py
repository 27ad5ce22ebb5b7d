"""Tuning choices shipped with the package (`runtime/tuning_shipped.json`, read by
`sparkc.runtime.tuning`) and the tool that builds them (`sparkc.tools.ship_tuning`): a shipped
choice answers a miss of the local cache without timing only on an exact key and while it is
still a candidate; a local choice wins; `$SPARKC_TUNE_SHIPPED=0` ignores them; the tool merges
caches deterministically, keeps GPU keys only and resolves conflicts by the fastest timing."""

import io
import json
import tarfile

import pytest
from sparkc.runtime import tuning

from sparkc.tools import ship_tuning

CANDS = [(1024, 4), (2048, 8), (4096, 8)]
KEY = tuning.entry_key("h1", [16, 1 << 20], "GPU X|sm90|triton-3.6.0")


class Bench:
    def __init__(self, times):
        self.times, self.calls = times, []

    def __call__(self, cand):
        self.calls.append(cand)
        return self.times[cand[0]]


@pytest.fixture
def shipped(monkeypatch):
    """Replace the shipped choices by `table` (kernel -> key -> choice) for the test."""

    def use(table):
        monkeypatch.setattr(tuning, "_shipped", table)

    monkeypatch.delenv("SPARKC_TUNE_SHIPPED", raising=False)
    return use


def _choose(cache, bench, key_parts=("h1", [16, 1 << 20], "GPU X|sm90|triton-3.6.0")):
    return cache.choose("k", *key_parts, CANDS, bench)


def test_a_shipped_choice_answers_a_miss_without_timing_and_is_not_stored(tmp_path, shipped):
    shipped({"k": {KEY: [4096, 8]}})
    cache, bench = tuning.TuningCache(tmp_path), Bench({1024: 1.0, 2048: 2.0, 4096: 3.0})
    assert _choose(cache, bench) == (4096, 8)
    assert bench.calls == []
    assert not cache.path("k").exists()  # the local cache stays for local tuning


def test_only_an_exact_key_and_a_current_candidate_match(tmp_path, shipped):
    shipped({"k": {KEY: [4096, 8]}, "other": {KEY: [1024, 4]}})
    for parts in [
        ("h2", [16, 1 << 20], "GPU X|sm90|triton-3.6.0"),  # another source
        ("h1", [32, 1 << 20], "GPU X|sm90|triton-3.6.0"),  # another shape class
        ("h1", [16, 1 << 20], "GPU X|sm90|triton-3.7.0"),
    ]:  # another Triton
        bench = Bench({1024: 1.0, 2048: 2.0, 4096: 3.0})
        assert _choose(
            tuning.TuningCache(tmp_path / parts[0] / str(parts[1][0]) / parts[2][-5:]), bench, parts
        ) == (1024, 4)
        assert bench.calls, parts
    shipped({"k": {KEY: [8192, 8]}})  # the template's candidates changed since it was shipped
    bench = Bench({1024: 1.0, 2048: 2.0, 4096: 3.0})
    assert _choose(tuning.TuningCache(tmp_path / "stale"), bench) == (1024, 4)
    assert bench.calls


def test_a_local_choice_wins_and_the_switch_turns_shipped_choices_off(
    tmp_path, shipped, monkeypatch
):
    shipped({"k": {KEY: [4096, 8]}})
    monkeypatch.setenv("SPARKC_TUNE_SHIPPED", "0")
    cache, bench = tuning.TuningCache(tmp_path), Bench({1024: 5.0, 2048: 1.0, 4096: 3.0})
    assert _choose(cache, bench) == (2048, 8)  # timed locally: refines the shipped choice
    assert bench.calls
    monkeypatch.delenv("SPARKC_TUNE_SHIPPED")
    fresh = tuning.TuningCache(tmp_path)
    assert fresh.lookup("k", KEY, CANDS) == (2048, 8)  # the stored local choice, not the shipped


def _archive(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            raw = json.dumps(data).encode()
            info = tarfile.TarInfo(f"tuning/{name}.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def _entries(**entries):
    return {"version": tuning.FORMAT_VERSION, "entries": entries}


def test_the_tool_merges_archives_keeps_gpu_keys_and_the_fastest_choice(tmp_path):
    gpu, gpu2 = "h|[1]|GPU X|sm90|triton-3.6.0", "h|[2]|GPU X|sm90|triton-3.6.0"
    cpu = "h|[1]|cpu-interpreter|triton-3.6.0"
    _archive(
        tmp_path / "a.tgz",
        {
            "mm1_fwd_kernel": _entries(
                **{
                    gpu: {"choice": [64, 4], "timings_ms": [0.5, 0.9]},
                    cpu: {"choice": [16, 1], "timings_ms": [1.0]},
                }
            )
        },
    )
    _archive(
        tmp_path / "b.tgz",
        {
            "mm1_fwd_kernel": _entries(
                **{
                    gpu: {"choice": [128, 8], "timings_ms": [0.7, 0.4, None]},  # faster: wins
                    gpu2: {"choice": [32, 4], "timings_ms": [1.0]},
                }
            ),
            "broken": {"version": 1, "entries": {gpu: {"choice": 1}}},
        },
    )
    out = tmp_path / "shipped.json"
    assert (
        ship_tuning.main([str(tmp_path / "a.tgz"), str(tmp_path / "b.tgz"), "--into", str(out)])
        == 0
    )
    data = json.loads(out.read_text())
    assert data == {
        "version": tuning.FORMAT_VERSION,
        "kernels": {"mm1_fwd_kernel": {gpu: [128, 8], gpu2: [32, 4]}},
    }
    first = out.read_bytes()
    ship_tuning.main([str(tmp_path / "b.tgz"), str(tmp_path / "a.tgz"), "--into", str(out)])
    assert out.read_bytes() == first  # order-independent and byte-identical


def test_the_shipped_file_is_well_formed():
    """Every shipped key is a GPU key of the current format (source hash | shape class | GPU |
    capability | Triton), so a lookup can match it."""
    data = json.loads(tuning.SHIPPED_PATH.read_text())
    assert data["version"] == tuning.FORMAT_VERSION
    for kernel, entries in data["kernels"].items():
        assert kernel and isinstance(entries, dict)
        for key in entries:
            src, rest = key.split("|", 1)
            assert len(src) == 20 and "interpreter" not in key, key
            assert "|sm" in rest and "|triton-" in rest, key
