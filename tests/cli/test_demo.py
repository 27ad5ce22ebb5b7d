"""`python -m sparkc.demo`, the main job: compiles an example into a package, imports it and
trains it on the CPU reference path; `--example` and `-D` choose the model. Also the inputs the
demo makes from a model's declared inputs (`sparkc.tools.demo_data`) and its progress display."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch

from sparkc.api import compile_graph
from sparkc.tools import demo, demo_data

EXAMPLES = sorted(p.stem for p in (Path(__file__).parents[2] / "examples").glob("*.spark"))


def test_main_job_trains_and_reports(tmp_path, capsys):
    code = demo.main(
        ["--steps", "60", "--out", str(tmp_path), "--device", "cpu", "-D", "d=32", "-D", "layers=1"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "tiny_gpt" / "__init__.py").is_file()
    assert "d=32" in out and "layers=1" in out
    assert "summary: tiny_gpt: loss 4." in out and "reference path on cpu" in out


def test_other_example_and_its_task_loss(tmp_path, capsys):
    code = demo.main(
        ["--example", "hspmn", "--steps", "2", "--out", str(tmp_path), "--device", "cpu"]
    )
    out = capsys.readouterr().out
    assert code in (0, 2), out  # two steps need not lower the loss
    assert "model HSPMN" in out and (tmp_path / "hspmn" / "__init__.py").is_file()
    # The task loss (`ce`) is reported beside the total, which adds the router's aux loss:
    # the two differ on hspmn.
    first = next(line for line in out.splitlines() if line.startswith("step    1"))
    _, _, _, task, _, total = first.split()
    assert float(task) != float(total) and float(task) > 0


def test_unknown_example_is_a_clean_error(tmp_path, capsys):
    assert demo.main(["--example", "nope", "--out", str(tmp_path)]) == 1
    assert "examples/nope.spark not found" in capsys.readouterr().err


def test_bad_define_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["-D", "bad"])
    assert exc.value.code == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_trains_on_the_reference_path(name, tmp_path, capsys):
    # procedural needs instruction tapes besides tokens/targets: the demo makes them.
    args = ["--example", name, "--steps", "3", "--batch", "2", "--length", "8"]
    code = demo.main(args + ["--out", str(tmp_path), "--device", "cpu", "--impl", "reference"])
    out = capsys.readouterr().out
    assert code in (0, 2), out  # three steps need not halve the loss
    summary = [line for line in out.splitlines() if line.startswith(f"summary: {name}: loss")]
    assert len(summary) == 1 and "in 3 steps" in summary[0], out
    first, last = (float(x) for x in summary[0].split("loss ")[1].split(" (")[0].split(" -> "))
    assert math.isfinite(first) and math.isfinite(last)


def test_procedural_trains_on_the_triton_path(tmp_path, capsys):
    # Under TRITON_INTERPRET=1 (tests/conftest.py) on the CPU: every generated kernel runs.
    args = ["--example", "procedural", "--steps", "2", "--batch", "2", "--length", "8"]
    args += ["-D", "d=32", "-D", "layers=1", "-D", "hidden=64", "-D", "codewords=16"]
    code = demo.main(args + ["--out", str(tmp_path), "--device", "cpu", "--impl", "triton"])
    out = capsys.readouterr().out
    assert code in (0, 2), out
    assert "summary: procedural: loss" in out and "Triton kernels on cpu" in out


def test_procedural_inputs_are_in_range():
    text = (Path(__file__).parents[2] / "examples" / "procedural.spark").read_text()
    graph = compile_graph(text, "procedural.spark")

    class Spec:
        def __init__(self, name, dtype, shape):
            self.name, self.dtype, self.shape = name, dtype, shape

    specs = (
        Spec("tokens", "i64", ("B", "N")),
        Spec("targets", "i64", ("B", "N")),
        Spec("ops", "i32", ("B", "T")),
        Spec("args", "float", ("B", "T", 64)),
        Spec("has_arg", "bool", ("B", "T")),
    )
    plans = demo_data.plan_inputs(graph, specs)
    assert [p.role for p in plans] == ["tokens", "targets", "opcodes", "floats", "flags"]
    batch = demo_data.make_batch(plans, 64, 12, torch.Generator().manual_seed(0), extra=8)
    assert batch["tokens"].shape == (64, 12) and batch["tokens"].dtype == torch.int64
    assert torch.equal(batch["tokens"][:, 1:], batch["targets"][:, :-1])
    assert 0 <= int(batch["tokens"].min()) and int(batch["tokens"].max()) < 64
    ops = batch["ops"]
    assert ops.shape == (64, 8) and ops.dtype == torch.int32
    assert int(ops.min()) >= -1 and int(ops.max()) <= 8
    assert bool((ops[:, 0] >= 0).all())  # every tape runs at least one instruction
    ended = ops == -1  # once a tape ends it stays ended
    assert bool((ended[:, :-1] <= ended[:, 1:]).all())
    assert batch["args"].shape == (64, 8, 64) and batch["args"].dtype == torch.float32
    assert batch["has_arg"].dtype == torch.bool and 0 < int(batch["has_arg"].sum()) < 64 * 8


def test_progress_bar_rewrites_one_line(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # the fallback bar
    stream = io.StringIO()
    bar = demo.Progress(4, "tiny_gpt", stream, mode="bar")
    for step in range(1, 5):
        bar.update(step, 4.0 - step, 5.0)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "tiny_gpt [" in text and "4/4  loss 0.0000" in text


def test_all_examples_print_one_summary_each(tmp_path, capsys, monkeypatch):
    trained = []

    def fake_train(name, args, overrides):
        trained.append(name)
        return 0, f"summary: {name}: loss 4.0 -> 1.0"

    monkeypatch.setattr(demo, "train", fake_train)
    assert demo.main(["--example", "all", "--out", str(tmp_path)]) == 0
    assert trained == EXAMPLES
    out = capsys.readouterr().out.splitlines()
    assert out == [f"summary: {name}: loss 4.0 -> 1.0" for name in EXAMPLES]


@pytest.mark.gpu
def test_every_example_trains_on_the_gpu_kernels(tmp_path, capsys):
    args = ["--example", "all", "--steps", "5", "--batch", "4", "--length", "16"]
    code = demo.main(args + ["--out", str(tmp_path), "--device", "cuda", "--impl", "triton"])
    out = capsys.readouterr().out
    assert code in (0, 2), out
    for name in EXAMPLES:
        (line,) = [x for x in out.splitlines() if x.startswith(f"summary: {name}: loss")][-1:]
        assert "Triton kernels on cuda" in line and "nan" not in line, line


def test_readme_command_runs_the_demo_from_its_documented_name():
    # README's first command is `python -m sparkc.demo`; the demo lives in sparkc/tools/demo.py.
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "sparkc.demo", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m sparkc.demo"), proc.stdout
    assert "--example" in proc.stdout
