"""Every experiment's `--smoke` run (sparkc/experiments, docs/experiments.md) on the CPU
reference path: it trains each size-matched variant, evaluates it and writes JSON and a
markdown table of the documented structure with finite numbers. Also the command line, and a
GPU run of every smoke on the generated Triton kernels (marked `gpu`)."""

from __future__ import annotations

import io
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from sparkc.experiments import EXPERIMENTS, experiment
from sparkc.experiments.__main__ import main
from sparkc.experiments.harness import Config
from sparkc.experiments.report import write


def smoke(name: str, out: Path, device: str = "cpu", graph: bool = True) -> tuple[dict, str, dict]:
    cfg = Config(torch.device(device), (0,), smoke=True, out=out, stream=io.StringIO(),
                 cpu_threads=1, graph=graph)  # fmt: skip
    report = experiment(name).run(cfg)
    written = write(report, out, io.StringIO())
    data = json.loads(written["json"].read_text())
    return data, written["md"].read_text(), written


@pytest.fixture(scope="module", params=sorted(EXPERIMENTS))
def ran(request, tmp_path_factory):
    name = request.param
    return (name, *smoke(name, tmp_path_factory.mktemp(name)))


def check_results(name: str, data: dict, md: str, path: str) -> None:
    assert data["experiment"] == name and data["question"]
    assert data["config"]["size"] == "smoke" and data["config"]["path"] == path
    variants, columns = data["variants"], data["columns"]
    assert len(variants) >= 2 and len({v["label"] for v in variants}) == len(variants)
    assert len(data["runs"]) == len(variants)  # one seed
    # Sizes are matched to the first variant's within 1%.
    first = variants[0]["parameters"]
    for v in variants:
        assert v["parameters"] > 0 and abs(v["parameters"] - first) <= 0.01 * first, v
        assert set(v) == {"label", "model", "hyper", "parameters", "reference_ops"}
    keys = [c["key"] for c in columns]
    assert len(set(keys)) == len(keys) and keys
    for run in data["runs"]:
        assert set(run["metrics"]) == set(keys)
        for key, value in run["metrics"].items():
            if key.startswith("peak_mb") and path == "reference path":
                assert value is None  # no CUDA peak memory on the CPU
            else:
                assert isinstance(value, float) and math.isfinite(value), (key, value)
        train = run["train"]
        records = train.values() if "final_loss" not in train else [train]
        for rec in records:
            assert math.isfinite(rec["final_loss"]) and rec["seconds"] > 0
            assert rec["tokens_per_s"] > 0
    assert list(data["summary"]) == [v["label"] for v in variants]
    for cells in data["summary"].values():
        assert set(cells) == set(keys)
    # The markdown table: a header with every column, one row per variant, mean ± sd cells.
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    for c in columns:
        assert f" {c['label']} |" in header
    rows = [line for line in lines if line.startswith("| ") and line is not header]
    rows = [r for r in rows if not r.startswith("| variant")]
    assert [r.split(" | ")[0][2:] for r in rows] == [v["label"] for v in variants]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert len(cells) == 3 + len(columns)
        assert cells[2].startswith(path)
        for cell in cells[3:]:
            assert cell == "n/a" or re.fullmatch(r"-?\d+(\.\d+)? ± \d+(\.\d+)?", cell), cell


def test_smoke_writes_the_documented_results(ran):
    name, data, md, written = ran
    check_results(name, data, md, "reference path")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "png" not in written
    else:
        assert written["png"].read_bytes().startswith(b"\x89PNG")


def test_smoke_is_deterministic(tmp_path):
    a, _, _ = smoke("recall", tmp_path / "a")
    b, _, _ = smoke("recall", tmp_path / "b")
    assert [r["metrics"] for r in a["runs"]] == [r["metrics"] for r in b["runs"]]
    assert [r["train"]["final_loss"] for r in a["runs"]] == [
        r["train"]["final_loss"] for r in b["runs"]
    ]


def test_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    argv = ["dyck", "--smoke", "--device", "cpu", "--steps", "3", "--set", "eval_lengths=16,24"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "dyck.json").read_text())
    assert data["config"]["steps"] == 3 and data["runs"][0]["train"]["steps"] == 3
    assert data["config"]["eval_lengths"] == [16, 24]
    assert [c["x"] for c in data["columns"]] == [16, 24, 16, 24]
    assert "| verifier_stack |" in out and (tmp_path / "dyck.md").is_file()
    assert "plot skipped: matplotlib is not installed" in out
    assert not (tmp_path / "dyck.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["dyck", "--seeds", "a,b"],
        ["dyck", "--seeds", "1,1"],
        ["dyck", "--steps", "0"],
        ["dyck", "--smoke", "--set", "hops=3"],  # not a setting of dyck
        ["dyck", "--smoke", "--set", "eval_lengths=16"],  # a list, not one value
        ["dyck", "--set", "d"],
        ["dyck", "--set", "d=wide"],
    ],
)
def test_command_line_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_command_line_refuses_cuda_without_a_device(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as err:
        main(["dyck", "--smoke", "--device", "cuda"])
    assert err.value.code == 2 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_on_the_triton_kernels(name, tmp_path):
    data, md, _ = smoke(name, tmp_path, device="cuda")
    check_results(name, data, md, "Triton kernels")
    for run in data["runs"]:
        peaks = [v for k, v in run["metrics"].items() if k.startswith("peak_mb")]
        assert all(p is not None and p > 0 for p in peaks)


@pytest.mark.gpu
def test_graphed_training_steps_match_eager_steps(tmp_path):
    """The CUDA-graph training loop (the default on CUDA) trains as the eager loop does: the same
    kernels and the same AdamW arithmetic (its state on the device), so the loss curves agree
    to float32 rounding."""
    eager = smoke("dyck", tmp_path / "eager", device="cuda", graph=False)[0]
    replayed = smoke("dyck", tmp_path / "graph", device="cuda")[0]
    for a, b in zip(eager["runs"], replayed["runs"]):
        la, lb = a["train"]["final_loss"], b["train"]["final_loss"]
        assert abs(la - lb) <= 1e-3 * abs(la), (la, lb)


def test_no_graph_option():
    from sparkc.experiments.__main__ import parser

    assert parser().parse_args(["dyck"]).graph is True
    assert parser().parse_args(["dyck", "--no-graph"]).graph is False
    assert Config(torch.device("cpu"), (0,)).graph is True  # only CUDA runs replay


def test_no_tune_option_switches_tuning_off(tmp_path, monkeypatch):
    from sparkc.runtime import env

    monkeypatch.setenv("SPARKC_TUNE", "1")
    argv = ["dyck", "--smoke", "--device", "cpu", "--steps", "2", "--no-tune"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert not env.tuning_enabled()


def test_merge_joins_runs_with_other_seeds(tmp_path, capsys):
    for seed in (0, 1):
        argv = ["recall", "--smoke", "--device", "cpu", "--steps", "3", "--seeds", str(seed)]
        assert main([*argv, "--out", str(tmp_path / f"s{seed}")]) == 0
    dirs = [str(tmp_path / "s0"), str(tmp_path / "s1")]
    assert main(["recall", "--merge", *dirs, "--out", str(tmp_path / "all")]) == 0
    data = json.loads((tmp_path / "all" / "recall.json").read_text())
    parts = [json.loads((tmp_path / f"s{s}" / "recall.json").read_text()) for s in (0, 1)]
    assert data["runs"] == parts[0]["runs"] + parts[1]["runs"]
    assert {r["seed"] for r in data["runs"]} == {0, 1}
    for cells in data["summary"].values():
        assert all(c["n"] == 2 for c in cells.values())
    assert "seeds [0, 1]" in (tmp_path / "all" / "recall.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the same seed twice
        main(["recall", "--merge", dirs[0], dirs[0], "--out", str(tmp_path / "bad")])
    assert "occurs twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dyck", "--merge", dirs[0], "--out", str(tmp_path / "bad")])
    assert "no results at" in capsys.readouterr().err


def test_merge_joins_runs_of_other_lengths(tmp_path, capsys):
    base = ["long_context", "--smoke", "--device", "cpu", "--steps", "3"]
    for seed, n in ((0, 16), (0, 32), (1, 32)):
        argv = [*base, "--seeds", str(seed), "--set", f"lengths={n},"]
        assert main([*argv, "--out", str(tmp_path / f"s{seed}n{n}")]) == 0
    parts = [str(tmp_path / d) for d in ("s0n16", "s0n32")]
    assert main(["long_context", "--merge", *parts, "--out", str(tmp_path / "all")]) == 0
    data = json.loads((tmp_path / "all" / "long_context.json").read_text())
    assert data["config"]["lengths"] == [16, 32]
    keys = [c["key"] for c in data["columns"]]
    assert keys[:4] == ["loss n=16", "loss n=32", "copy n=16", "copy n=32"]
    assert len(data["runs"]) == 3  # one per variant, both lengths joined
    for run in data["runs"]:
        assert set(run["metrics"]) == set(keys) and set(run["train"]) == {"n=16", "n=32"}
    assert "lengths=16,32" in (tmp_path / "all" / "long_context.md").read_text()
    capsys.readouterr()
    # Seed 0 at N=16 with seed 1 at N=32: neither run has both lengths.
    with pytest.raises(SystemExit):
        bad = [str(tmp_path / "s0n16"), str(tmp_path / "s1n32")]
        main(["long_context", "--merge", *bad, "--out", str(tmp_path / "bad")])
    assert "lacks metrics" in capsys.readouterr().err


def test_merge_joins_runs_of_different_devices_but_not_their_timings(tmp_path, capsys):
    # A seed run on the GPU's kernels joins one run on the CPU's reference path (the same
    # function); each run then names its device, the settings list both, a note says so.
    for name, base in (("recall", ["recall"]), ("long_context", ["long_context"])):
        for seed in (0, 1):
            argv = [*base, "--smoke", "--device", "cpu", "--steps", "3", "--seeds", str(seed)]
            assert main([*argv, "--out", str(tmp_path / f"{name}{seed}")]) == 0
        gpu = tmp_path / f"{name}0" / f"{name}.json"
        data = json.loads(gpu.read_text())
        data["config"].update(device="cuda", path="Triton kernels")
        gpu.write_text(json.dumps(data))
    dirs = [str(tmp_path / "recall0"), str(tmp_path / "recall1")]
    assert main(["recall", "--merge", *dirs, "--out", str(tmp_path / "all")]) == 0
    data = json.loads((tmp_path / "all" / "recall.json").read_text())
    assert data["config"]["device"] == "cuda + cpu"
    assert data["config"]["path"] == "Triton kernels + reference path"
    assert {(r["seed"], r["train"]["device"]) for r in data["runs"]} == {(0, "cuda"), (1, "cpu")}
    assert any("different devices" in n for n in data["notes"])
    # long_context's table has timing columns (tokens/s, loss at equal time): refused.
    capsys.readouterr()
    with pytest.raises(SystemExit):
        dirs = [str(tmp_path / "long_context0"), str(tmp_path / "long_context1")]
        main(["long_context", "--merge", *dirs, "--out", str(tmp_path / "bad")])
    assert "measures the machine" in capsys.readouterr().err


def test_reachability_eager_check_runs_both_implementations(capsys):
    """examples/experiments/reachability_eager.py (the independent PyTorch check of the
    reachability result): a few steps of each implementation and hop count give one table row
    each, with a finite loss per seed; the hand-written models start from sparkc's weights
    (copied) and see the same batches, so two steps give sparkc's reference path's mean loss to
    float rounding, for attention and for fk_attention."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples/experiments/reachability_eager.py"
    spec = importlib.util.spec_from_file_location("reachability_eager", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--steps", "3", "--seeds", "0", "--hops", "0,1"]) == 0
    rows = [
        r for r in capsys.readouterr().out.splitlines() if r.startswith(("| eager", "| sparkc"))
    ]
    assert [r.split(" | ")[:2] for r in rows] == [
        ["| eager", "0"],
        ["| eager", "1"],
        ["| sparkc", "0"],
        ["| sparkc", "1"],
    ]
    for r in rows:
        assert math.isfinite(float(r.split(" | ")[2]))
    for hops in (0, 2):
        assert mod.train("eager", hops, 0, 2) == pytest.approx(
            mod.train("sparkc", hops, 0, 2), rel=1e-5
        )
