"""The `sparkc` command line, driven in-process through `sparkc.cli.main(argv, stdout, stderr)`.

Exit codes (0 ok, 1 program error, 2 usage error, 3 internal error), what reaches stdout and
stderr, and that no Python traceback reaches the user unless asked for.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sparkc import __version__, pipeline
from sparkc.cli import main, parse_define
from sparkc.diagnostics import CompilerBug
from sparkc.ir.ops import CALLABLE, OPS
from sparkc.passes import DEFAULT_PIPELINE
from sparkc.tools.docs_gen import render_ops_markdown

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "examples" / "tiny_gpt.spark")


# Trainable parameters of examples/tiny_gpt.spark, counted by hand from SPEC's parameter lists:
# tok [vocab, d] + pos [max_len, d] + layers * (rmsnorm d + attention 4 d² + rmsnorm d +
# mlp (d·4d + 4d + 4d·d + d)) + final rmsnorm d + head (d·vocab + vocab).
def tiny_params(vocab: int = 64, d: int = 64, layers: int = 2, max_len: int = 64) -> int:
    layer = d + 4 * d * d + d + (d * 4 * d + 4 * d + 4 * d * d + d)
    return vocab * d + max_len * d + layers * layer + d + d * vocab + vocab


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, text: str, name: str = "bad.spark") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------------------------
# Arguments that need no program


def test_version() -> None:
    code, out, err = run("--version")
    assert (code, out.strip(), err) == (0, f"sparkc {__version__}", "")


@pytest.mark.parametrize("command", ["check", "compile", "graph", "ops"])
def test_help_of_each_subcommand_has_an_example(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    assert out.startswith(f"usage: sparkc {command}")
    assert "example" in out and f"sparkc {command} " in out.split("example")[1]


def test_no_command_is_a_usage_error() -> None:
    code, _, err = run()
    assert code == 2 and "usage: sparkc" in err


def test_ops_lists_every_callable_op() -> None:
    code, out, err = run("ops")
    assert code == 0 and err == ""
    for name in CALLABLE:
        assert f"\n{OPS[name].signature()}    [§{OPS[name].section}]" in out, name


def test_ops_filtered_and_markdown() -> None:
    code, out, _ = run("ops", "fk_attention")
    assert code == 0
    assert "fk_attention(x, heads, hops=10, beta=0.5" in out
    assert "0 < v < 1" in out  # beta's range
    assert "attention(x, heads, kv_heads" not in out
    code, out, _ = run("ops", "--format", "markdown")
    assert code == 0 and out == render_ops_markdown()


def test_unknown_op_suggests_a_name() -> None:
    code, out, err = run("ops", "atention")
    assert (code, out) == (2, "")
    assert err == "sparkc: error: unknown op 'atention'; did you mean 'attention'?\n"


# --------------------------------------------------------------------------------------------
# -D


@pytest.mark.parametrize(
    "text, expected",
    [
        ("layers=4", ("layers", 4)),
        ("eps=-1e-5", ("eps", -1e-5)),
        ("beta=0.25", ("beta", 0.25)),
        ("big=1_000", ("big", 1000)),
        ("causal=false", ("causal", False)),
        ("rope=true", ("rope", True)),
        ("basis=none", ("basis", None)),
        ("gate=softmax", ("gate", "softmax")),
        (" d = 128 ", ("d", 128)),
    ],
)
def test_define_values(text: str, expected: tuple) -> None:
    got = parse_define(text)
    assert got == expected and type(got[1]) is type(expected[1])


@pytest.mark.parametrize("bad", ["layers", "=4", "2x=1", "d=", "d=1.2.3", "d=a-b", 'd="x"'])
def test_malformed_define_is_a_usage_error(bad: str) -> None:
    code, out, err = run("check", TINY, "-D", bad)
    assert (code, out) == (2, "")
    assert "argument -D" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# Files


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.spark")
    code, out, err = run("check", missing)
    assert (code, out) == (2, "")
    assert err == f"sparkc: error: cannot read '{missing}': No such file or directory\n"


def test_a_directory_is_not_a_program(tmp_path: Path) -> None:
    code, _, err = run("check", str(tmp_path))
    assert code == 2 and err.startswith(f"sparkc: error: cannot read '{tmp_path}'")


# --------------------------------------------------------------------------------------------
# check


def test_check_reports_model_size() -> None:
    code, out, err = run("check", TINY)
    assert (code, err) == (0, "")
    m = re.fullmatch(r"ok: TinyGPT \((\d+) params, (\d+) ops\)\n", out)
    assert m, out
    assert int(m.group(1)) == tiny_params()
    # embed, pos_embed, 2 x (rmsnorm, attention, add, rmsnorm, mlp, add), rmsnorm, linear, ce
    assert int(m.group(2)) == 17


def test_overrides_change_the_model() -> None:
    code, out, _ = run("check", TINY, "-D", "layers=3", "-D", "d=128")
    assert code == 0
    assert out == f"ok: TinyGPT ({tiny_params(d=128, layers=3)} params, 23 ops)\n"


def test_program_error_renders_location_and_caret(tmp_path: Path) -> None:
    src = "model M(d = 8) {\n  input x: float[B, N, d]\n  y = atention(x, heads=2)\n  output y\n}\n"
    path = write(tmp_path, src)
    code, out, err = run("check", path)
    assert (code, out) == (1, "")
    assert re.match(rf"{re.escape(path)}:3:7: error\[E\d{{4}}\]: ", err), err
    assert "  y = atention(x, heads=2)" in err
    assert re.search(r"\n\s*\|\s{7}\^{8}", err), err
    assert "did you mean 'attention'?" in err
    assert "Traceback" not in err


def test_override_of_unknown_hyperparameter_is_a_program_error() -> None:
    code, out, err = run("check", TINY, "-D", "layres=3")
    assert (code, out) == (1, "")
    assert "layres" in err and "error[E" in err


def test_unknown_model_is_a_program_error() -> None:
    code, _, err = run("check", TINY, "--model", "Nope")
    assert code == 1 and "Nope" in err


def test_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "model M() {\n  input x: float[B, N, 4]\n  y = x +\n}\n")
    code, _, err = run("check", path)
    assert code == 1
    # The unexpected token is the closing brace after the dangling `+`.
    assert err.startswith(f"{path}:4:1: error[E"), err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# Internal errors


def _break_stage(monkeypatch: pytest.MonkeyPatch, stage: str, exc: Exception) -> None:
    def boom(artefact, ctx):
        raise exc

    stages = [replace(s, run=boom) if s.name == stage else s for s in pipeline.STAGES]
    monkeypatch.setattr(pipeline, "STAGES", stages)


def test_unexpected_exception_is_an_internal_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPARKC_DEBUG", raising=False)
    _break_stage(monkeypatch, "check", RuntimeError("boom"))
    code, out, err = run("check", TINY)
    assert (code, out) == (3, "")
    assert err.startswith("sparkc: internal compiler error: RuntimeError: boom\n")
    assert "bug in sparkc" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["-v", "env"])
def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    # `sparkc check` stops after the checker (it does not lower): break that stage.
    _break_stage(monkeypatch, "check", CompilerBug("node n3 lost its type", "check"))
    if how == "env":
        monkeypatch.setenv("SPARKC_DEBUG", "1")
        argv = ["check", TINY]
    else:
        monkeypatch.delenv("SPARKC_DEBUG", raising=False)
        argv = ["check", TINY, "-v"]
    code, _, err = run(*argv)
    assert code == 3
    assert err.startswith("sparkc: internal compiler error (in check): node n3 lost its type\n")
    assert "Traceback (most recent call last)" in err


def test_verbose_before_the_subcommand_also_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARKC_DEBUG", raising=False)
    _break_stage(monkeypatch, "parse", ValueError("x"))
    assert "Traceback" in run("-v", "check", TINY)[2]
    assert "Traceback" not in run("check", TINY)[2]


# --------------------------------------------------------------------------------------------
# compile


@pytest.mark.parametrize("emit", pipeline.emit_names())
def test_emit_prints_the_stage_text(emit: str) -> None:
    code, out, err = run("compile", TINY, "--emit", emit)
    assert (code, err) == (0, "")
    stop = pipeline.find_stage(emit)
    text = pipeline.run_pipeline(Path(TINY).read_bytes(), TINY, stop_after=emit).text
    assert pipeline.STAGES[stop].emit == emit
    assert out == text + ("" if text.endswith("\n") else "\n")
    assert "attention" in out


def test_emit_is_deterministic_and_follows_overrides() -> None:
    a = run("compile", TINY, "--emit", "ir")[1]
    assert a == run("compile", TINY, "--emit", "ir")[1]
    b = run("compile", TINY, "--emit", "ir", "-D", "d=96")[1]
    assert a != b and "96" in b and "96" not in a


def test_print_after_and_time_passes_go_to_stderr() -> None:
    first = DEFAULT_PIPELINE[0]
    code, out, err = run("compile", TINY, "--emit", "opt", "--print-after", first, "--time-passes")
    assert code == 0
    assert out == run("compile", TINY, "--emit", "opt")[1]
    assert first in err and err.strip()


def test_unknown_pass_is_a_usage_error() -> None:
    code, _, err = run("compile", TINY, "--emit", "opt", "--print-after", "cse_")
    assert code == 2
    assert err.startswith(
        "sparkc: error: unknown pass in --print-after 'cse_'; did you mean 'cse'?"
    )
    code, _, err = run("compile", TINY, "--emit", "opt", "--passes", "cse,nosuch")
    assert code == 2 and err.startswith("sparkc: error: unknown pass 'nosuch'")


def test_compile_needs_emit_or_output(tmp_path: Path) -> None:
    code, _, err = run("compile", TINY)
    assert code == 2 and "--emit" in err
    code, _, err = run("compile", TINY, "--emit", "ir", "-o", str(tmp_path / "pkg"))
    assert code == 2 and "either" in err


def test_output_runs_the_codegen_stage(tmp_path: Path) -> None:
    # `-o DIR` runs the codegen stage: DIR/<stem>/ holds the module, its kernels and a manifest.
    code, out, err = run("compile", TINY, "-o", str(tmp_path / "pkg"))
    assert (code, err) == (0, "")
    stem = Path(TINY).stem
    assert out.startswith(f"wrote {tmp_path / 'pkg' / stem}: ")
    files = sorted(p.name for p in (tmp_path / "pkg" / stem).iterdir())
    assert files == [".sparkc-manifest.json", "__init__.py", "kernels.py"]
    # A second compile replaces its own output; an edited file is not replaced (exit 1).
    assert run("compile", TINY, "-o", str(tmp_path / "pkg"))[0] == 0
    (tmp_path / "pkg" / stem / "__init__.py").write_text("# my edits\n")
    code, out, err = run("compile", TINY, "-o", str(tmp_path / "pkg"))
    assert code == 1 and "error[E0702]" in err and "__init__.py" in err
    assert (tmp_path / "pkg" / stem / "__init__.py").read_text() == "# my edits\n"
    assert run("compile", TINY, "-o", str(tmp_path / "pkg"), "--force")[0] == 0


# --------------------------------------------------------------------------------------------
# graph


def test_graph_dot_and_mermaid() -> None:
    code, dot, err = run("graph", TINY, "--format", "dot")
    assert (code, err) == (0, "")
    assert dot.lstrip().startswith(("digraph", "strict digraph")) and "attention" in dot
    code, mermaid, _ = run("graph", TINY, "--format", "mermaid")
    assert code == 0
    assert (
        re.search(r"^(flowchart|graph) (TD|TB|LR)$", mermaid, re.MULTILINE)
        and "attention" in mermaid
    )


def test_graph_after_a_pass_and_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "g.dot"
    code, out, err = run("graph", TINY, "--after", "opt", "-o", str(target))
    assert (code, out) == (0, "")
    assert err == f"wrote {target}\n"
    assert target.read_text().lstrip().startswith(("digraph", "strict digraph"))
    first = DEFAULT_PIPELINE[0]
    assert run("graph", TINY, "--after", first)[0] == 0


def test_graph_svg(tmp_path: Path) -> None:
    from sparkc.viz import find_renderer

    target = tmp_path / "g.svg"
    code, _, err = run("graph", TINY, "--format", "svg", "-o", str(target))
    if find_renderer() is None:
        # No Graphviz on this machine: a usage error that says what to install, no file.
        assert code == 2 and err.startswith("sparkc: error: Graphviz 'dot' not found"), err
        assert not target.exists()
    else:
        assert code == 0, err
        assert "<svg" in target.read_text()


def test_graph_after_unknown_is_a_usage_error() -> None:
    code, _, err = run("graph", TINY, "--after", "optt")
    assert code == 2
    assert err.startswith("sparkc: error: unknown stage or pass 'optt'; did you mean 'opt'?")
