"""The GPU machine's scripts (bench/*.py) run only there, so their imports and argument parsing
are checked here: each one's `--help` (in one subprocess, scripts run as `__main__`) must exit 0
and print a usage line. A renamed runtime helper or a syntax error then fails on the CPU instead
of costing a device call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))

_RUNNER = r"""
import contextlib, io, json, runpy, sys
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf = io.StringIO()
    code = None
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        code = e.code
    except Exception as e:  # noqa: BLE001 - reported per script
        code = f"{type(e).__name__}: {e}"
    out[path] = [code, "usage" in buf.getvalue()]
print(json.dumps(out))
"""


def _python(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """Run the interpreter with `args` in the repository root; asserts it exited 0."""
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_every_bench_script_parses_its_arguments():
    assert len(SCRIPTS) >= 8
    proc = _python("-c", _RUNNER, *map(str, SCRIPTS), timeout=600)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {Path(p).name: r for p, r in report.items() if r != [0, True]}
    assert not bad, bad


def _dry_run(tmp_path: Path, script: str, *args: str) -> tuple[str, dict]:
    """Run bench/SCRIPT --dry-run ARGS --json FILE (CPU, Triton interpreter, tiny shapes): its
    stdout and the JSON it wrote."""
    out = tmp_path / f"{Path(script).stem}.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--dry-run", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, TRITON_INTERPRET="1"),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_decode_bench_dry_run_runs_every_row(tmp_path):
    """bench/decode.py --dry-run: sparkc (plain and the CUDA-graph loop's static step, plain and
    compiled, run without a graph on the CPU), the eager baseline and the compiled one (dynamo's eager
    backend on the CPU) at tiny sizes, all agreeing on the prefill logits; `--models hspmn` adds
    the three sparkc runners of another example in the same run."""
    rows = _dry_run(tmp_path, "decode.py", "--models", "hspmn")[1]["rows"]
    assert {(r["model"], r["runner"], r["batch"]) for r in rows} == {
        ("tiny_gpt", n, b)
        for n in ("sparkc", "sparkc_graph", "sparkc_graph_compiled", "eager", "compiled")
        for b in (1, 4)
    } | {
        ("hspmn", n, b) for n in ("sparkc", "sparkc_graph", "sparkc_graph_compiled") for b in (1, 4)
    }
    assert all(r["logits_diff"] < 1e-4 and r["decode_tok_s"] > 0 for r in rows)


def test_decode_bench_sweep_dry_run(tmp_path):
    """bench/decode.py --sweep --dry-run: a time per token for each model and context, as cached
    calls and as the graph loop's static step (without a graph on the CPU)."""
    rows = _dry_run(tmp_path, "decode.py", "--sweep")[1]["rows"]
    assert {(r["model"], r["context"]) for r in rows} == {
        (m, c) for m in ("tiny_gpt", "splatflow", "spark_k", "verifier_lm") for c in (8, 32)
    }
    assert all(r["ms_per_token"] > 0 and r["ms_per_token_graph"] > 0 for r in rows)


def test_routed_mlp_bench_dry_run_writes_rows_and_ratios(tmp_path):
    """bench/procedural_routed_mlp.py --dry-run runs every implementation and writes its JSON:
    the rows of each implementation and mode, the routed implementations agreeing with sparkc's
    output, and the speed-up ratios with their targets (timings mean something only on a GPU)."""
    stdout, data = _dry_run(tmp_path, "procedural_routed_mlp.py")
    impls = {(r["impl"], r["mode"]) for r in data["rows"]}
    for impl in ("sparkc", "dense MLP", "grouped_mm+perm", "eager"):
        assert {(impl, "forward"), (impl, "forward+backward")} <= impls
    for r in data["rows"]:
        assert r["ms"] is not None or r["impl"] == "grouped_mm+perm", r
        if r["impl"] in ("eager", "sparkc"):
            assert r["max_abs_diff_vs_sparkc"] < 1e-4
    assert {s["versus"] for s in data["ratios"]} == {"dense MLP", "grouped_mm+perm", "eager"}
    assert "sparkc speed-up vs" in stdout


def test_nanogpt_step_dry_run_is_the_same_model(tmp_path):
    """bench/nanogpt_step.py --dry-run: the nanoGPT-style baseline loaded with sparkc's tiny_gpt
    weights gives the same float32 loss (the comparison is between one architecture written two
    ways), and every CPU variant trains a step."""
    data = _dry_run(tmp_path, "nanogpt_step.py")[1]
    assert data["meta"]["loss_rel_diff_f32"] < 1e-5
    assert [r["variant"] for r in data["rows"]] == ["sparkc", "nanogpt", "nanogpt_compiled"]
    assert all(r["ms"] > 0 for r in data["rows"])


def _sparkc_imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) of every sparkc import in a script, also inside functions
    (which `--help` never runs)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sparkc":
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (a.name, None, node.lineno) for a in node.names if a.name.startswith("sparkc")
            ]
    return found


def test_every_lazy_sparkc_import_of_a_bench_script_resolves():
    """A function-level import moved by a refactor (bench/splat.py's `sparkc.demo_data`, which
    cost a device call on 2026-12-07) fails here."""
    import importlib

    missing = []
    for path in SCRIPTS:
        for module, name, line in _sparkc_imports(path):
            try:
                mod = importlib.import_module(module)
            except ImportError as e:
                missing.append(f"{path.name}:{line}: {module} ({e})")
                continue
            if name is not None and not hasattr(mod, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    missing.append(f"{path.name}:{line}: {module}.{name}")
    assert not missing, "\n".join(missing)


TUNING_DATA = ROOT / "bench" / "data" / "tuning_h100_2026-12-07"


def test_gemm_pruning_replay_matches_what_the_docs_quote(capsys):
    """`runtime/gemm.py: pruned` replayed over the H100's recorded timings: a change to the
    rule or to the candidate lists shows here, and the numbers in docs/kernels/matmul.md and
    gemm.pruned's docstring must then be re-measured."""
    import runpy

    module = runpy.run_path(str(ROOT / "bench" / "replay_gemm_pruning.py"))
    assert module["main"]([str(TUNING_DATA)]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out  # every recorded class is rebuilt
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(
        "65 classes: kept 250 of 652 candidates; the best kept is the best in 61"
    )


def test_shipped_tuning_choices_are_rebuilt_from_the_recorded_caches(tmp_path):
    """runtime/tuning_shipped.json is exactly what sparkc.tools.ship_tuning builds from the
    recorded H100 caches: the shipped file is reproducible from data in the repository."""
    from sparkc.runtime import tuning

    from sparkc.tools import ship_tuning

    out = tmp_path / "shipped.json"
    assert ship_tuning.main([str(TUNING_DATA), "--into", str(out)]) == 0
    assert out.read_bytes() == tuning.SHIPPED_PATH.read_bytes()


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.spark")), ids=lambda p: p.name)
def test_every_bench_program_checks(path):
    """The programs the device plan benchmarks (`sparkc bench bench/X.spark ...`) compile here."""
    import sparkc

    net = sparkc.load(path).Model(impl="reference")
    assert sum(p.numel() for p in net.parameters()) > 0


def test_one_sm_stream_probe_dry_run_checks_its_kernel():
    """bench/probe_one_sm_stream.py --dry-run: its GEMV kernel (one program per sequence, or
    the rows split over programs) matches torch under the interpreter."""
    proc = _python(str(ROOT / "bench" / "probe_one_sm_stream.py"), "--dry-run", timeout=300)
    assert "the probe kernel matches torch" in proc.stdout


def _blocks_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "blocks_per_call", ROOT / "bench/blocks_per_call.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_blocks_per_call_dry_run_runs_both_kinds_of_block(tmp_path):
    """bench/blocks_per_call.py --dry-run: a one-op block (`--op` with hyperparameters) and a
    file block (`-D` defines) each run `sparkc bench` and come back with forward and
    forward+backward rows; a block not in the list is refused."""
    _, report = _dry_run(tmp_path, "blocks_per_call.py", "--only", "attention_gqa_rope,lora_linear")
    assert list(report["blocks"]) == ["attention_gqa_rope", "lora_linear"]
    for res in report["blocks"].values():
        rows = {(r["variant"], r["mode"]) for r in res["report"]["rows"]}
        assert rows == {("eager", "fwd"), ("eager", "fwd+bwd")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/blocks_per_call.py"), "--only", "attn"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2 and "unknown block(s) attn" in proc.stderr


def test_blocks_per_call_commands_and_ratios():
    """On the GPU each block's command names its op and hyperparameters (or its file and
    defines) at the issue's shape, and the ratios are baseline time over sparkc's."""
    mod = _blocks_script()
    args = mod.argparse.Namespace(dtype="bf16", variants="sparkc,eager,compile", dry_run=False)
    shape = {"B": 8, "N": 2048, "D": 1024}
    by_name = {b.name: b for b in mod.BLOCKS}
    cmd = mod.command(by_name["attention_gqa_rope"], shape, args, Path("r.json"))
    assert cmd[cmd.index("--op") + 1] == "attention"
    assert "rope=true" in cmd and "kv_heads=4" in cmd and "--no-compile" not in cmd
    assert cmd[cmd.index("--shape") + 1] == "B=8,N=2048,D=1024" and "--device" not in cmd
    cmd = mod.command(by_name["sqdk_attention"], shape, args, Path("r.json"))
    assert cmd[cmd.index("bench") + 1].endswith("bench/sqdk_block.spark")
    assert "d=1024" in cmd and "kv=4" in cmd and cmd[cmd.index("--shape") + 1] == "B=8,N=2048"
    rows = [
        {"variant": "sparkc", "mode": "fwd", "ms": 2.0},
        {"variant": "compile", "mode": "fwd", "ms": 3.0},
        {"variant": "eager", "mode": "fwd+bwd", "ms": 9.0},
    ]
    assert mod.ratios({"rows": rows}) == {"fwd/compile": 1.5}
    line = mod.table({"x": {"report": {"rows": rows}, "ratios": {"fwd/compile": 1.5}}})
    assert line.splitlines()[-1] == "| x | 2.000 | 3.000 | — | — | — | 9.000 | 1.50 | — |"


def test_compiled_decode_probe_dry_run_agrees_on_the_cpu(tmp_path):
    """bench/probe_compiled_decode.py --dry-run: on the CPU (interpreter) the decode kernels, the
    uncompiled step rules and the rules under aot_eager (the first compiled call also run twice,
    the state put back between) all give the full forward's logits."""
    out = tmp_path / "probe.json"
    _python(
        str(ROOT / "bench" / "probe_compiled_decode.py"), "--dry-run", "--steps", "3",
        "--json", str(out), timeout=600,
    )  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == [
        "kernels", "rules", "rules+aot_eager", "rules+aot_eager (first call redone)"
    ]  # fmt: skip
    for row in rows.values():
        assert len(row["per_step"]) == 3 and max(row["per_step"] + [row["prefill"]]) < 1e-5


def test_trajectory_bound_probe_dry_run_checks_every_kernel():
    """bench/probe_trajectory_bound.py --dry-run: every probe kernel (the forward's ingredients
    and the backward's bwd_copy and bwd_shape) matches its torch reference under the
    interpreter; the script asserts it per kernel."""
    proc = _python(str(ROOT / "bench" / "probe_trajectory_bound.py"), "--dry-run", timeout=300)
    assert "every probe kernel matches torch" in proc.stdout


def test_trajectory_stream_probe_dry_run_matches_float64_autograd():
    """bench/probe_trajectory_stream.py --dry-run: the row-stream forward, dx and d strength
    match float64 autograd of the reference formula under the interpreter, across segments
    (halo rows), a zero difference (the 1e-8 clamp) and two segment lengths; the script
    asserts each."""
    proc = _python(str(ROOT / "bench" / "probe_trajectory_stream.py"), "--dry-run", timeout=300)
    assert "the stream kernels match float64 autograd" in proc.stdout
