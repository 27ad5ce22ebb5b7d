"""`python -m sparkc.demo`, the main job: compiles an example into a package, imports it and
trains it on the CPU reference path; `--example` and `-D` choose the model."""

from __future__ import annotations

import pytest

from sparkc import demo


def test_main_job_trains_and_reports(tmp_path, capsys):
    code = demo.main(
        ["--steps", "60", "--out", str(tmp_path), "--device", "cpu", "-D", "d=32", "-D", "layers=1"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "tiny_gpt" / "__init__.py").is_file()
    assert "d=32" in out and "layers=1" in out
    assert "summary: loss 4." in out and "reference path on cpu" in out


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
