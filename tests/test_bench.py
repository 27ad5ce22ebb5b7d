"""`sparkc bench` and the cost model, on the CPU (timings are printed, never asserted)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from sparkc import api
from sparkc.cli import main
from sparkc.diagnostics import SparkError
from sparkc.ir.cost import graph_cost
from sparkc.ir.ops import OPS
from sparkc.tools.bench import op_program, parse_shape

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "examples" / "tiny_gpt.spark")
# tiny_gpt at a width the CPU runs in a moment
SMALL_CPU = ("--shape", "B=2,N=8", "-D", "d=32", "--device", "cpu")


def test_every_op_has_a_cost_rule():
    assert all(callable(spec.flops) for spec in OPS.values())


def test_counted_flops_of_known_formulas():
    src = """
model C(d = 64) {
  input x: float[B, N, d]
  a = linear(x, out=32)
  b = attention(x, heads=4, causal=false)
  output a
  output b
}
"""
    g = api.compile_graph(src, "c.spark")
    cost = graph_cost(g, {"B": 2, "N": 10})
    m = 2 * 10
    linear = 2 * m * 64 * 32
    attention = 2 * m * 64 * 64 * 4 + 4 * 2 * 4 * 10 * 10 * 16
    assert cost["flops_by_op"] == {"attention": attention, "linear": linear}
    assert cost["flops_fwd"] == linear + attention
    assert cost["flops_fwd_bwd"] == linear * 3 + attention * 3.5
    params = 64 * 32 + 32 + 4 * 64 * 64
    assert cost["bytes_fwd"] == 2 * (m * 64 + params + m * 32 + m * 64)


def test_op_program_wraps_one_op():
    src = op_program("spd_router", {"gate": "softmax"}, 16)
    g = api.compile_graph(src, "b.spark")
    assert [n.attr("name") for n in g.outputs()] == ["o_y", "o_x_struct", "o_x_pseudo"]
    with pytest.raises(SparkError, match="only tensor input"):
        op_program("sqdk_attention", {"heads": 2}, 16)
    with pytest.raises(SparkError, match="not a callable op"):
        op_program("attentoin", {}, 16)


def test_parse_shape():
    assert parse_shape("B=2, N=128,D=64") == {"B": 2, "N": 128, "D": 64}
    with pytest.raises(ValueError, match="bad --shape entry 'N=0'"):
        parse_shape("B=2,N=0")


def test_bench_command_on_cpu(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "b.json"
    code = main(
        [
            "bench",
            TINY,
            *SMALL_CPU,
            "--dtype",
            "f32",
            "--no-compile",
            "--modes",
            "fwd,fwd+bwd,step",
            "--json",
            str(path),
        ],
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    table = out.getvalue()
    assert "TinyGPT [B=2,N=8] f32 on cpu" in table
    assert "eager    fwd" in table and "eager    fwd+bwd" in table
    report = json.loads(path.read_text())
    assert [(r["variant"], r["mode"]) for r in report["rows"]] == [
        ("eager", "fwd"),
        ("eager", "fwd+bwd"),
        ("eager", "step"),
    ]
    assert all(r["ms"] > 0 and r["TFLOPs"] > 0 for r in report["rows"])
    assert report["cost"]["flops_fwd_bwd"] > report["cost"]["flops_fwd"] > 0


def _bench(*args):
    err = io.StringIO()
    code = main(["bench", *args], stdout=io.StringIO(), stderr=err)
    return code, err.getvalue()


def test_bench_points_an_empty_triton_cache_setting_at_sparkcs_folder(tmp_path, monkeypatch):
    # TRITON_CACHE_DIR="" made Triton's driver fail before any generated module set the cache.
    monkeypatch.setenv("TRITON_CACHE_DIR", "")
    monkeypatch.setenv("SPARKC_CACHE_DIR", str(tmp_path / "cache"))
    code, err = _bench(TINY, *SMALL_CPU, "--variants", "eager", "--modes", "fwd")
    assert code == 0, err
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "triton")


def test_bench_reports_running_out_of_memory_as_the_shapes_problem(monkeypatch):
    import torch

    import sparkc.tools.bench

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    monkeypatch.setattr(sparkc.tools.bench, "run", oom)
    code, err = _bench(TINY, "--shape", "B=512,N=8192", "--device", "cpu")
    assert code == 1
    assert "out of device memory at --shape B=512,N=8192" in err and "64.00 GiB" in err
    assert "internal compiler error" not in err and "smaller --shape" in err


def test_bench_usage_errors():
    code, err = _bench("--shape", "B=2")
    assert code == 2 and "FILE or --op" in err
    code, err = _bench(TINY, "--shape", "B=2", "--device", "cpu", "--no-compile")
    assert code == 1 and "does not bind N" in err
    code, err = _bench(TINY, "--shape", "B=2,N=8", "--device", "cpu", "--modes", "fwd,train")
    assert code == 1 and "E0803" in err and "'train'" in err
    code, err = _bench(
        TINY, "--shape", "B=2,N=8", "--device", "cpu", "--variants", "eager,inductor"
    )
    assert code == 1 and "E0804" in err and "'inductor'" in err


def test_variants_choose_the_rows(tmp_path):
    path = tmp_path / "v.json"
    # No --no-compile: --variants alone keeps the torch.compile baselines out.
    args = [TINY, *SMALL_CPU, "--dtype", "f32"]
    code, err = _bench(*args, "--variants", "eager", "--modes", "fwd", "--json", str(path))
    assert code == 0, err
    rows = json.loads(path.read_text())["rows"]
    assert [(r["variant"], r["mode"]) for r in rows] == [("eager", "fwd")]


def test_profile_lists_the_busiest_operators_on_cpu():
    import torch

    from sparkc.tools.bench import format_profile, profile_step

    a = torch.randn(256, 256)

    def fn():
        (a @ a).relu_()
        a.sum()

    prof = profile_step(fn, cuda=False, top=2, iters=2)
    names = [name for name, _, _ in prof["top"]]
    assert len(names) == 2 and "aten::matmul" in names
    assert all(n == 1.0 and ms > 0 for _, n, ms in prof["top"])
    assert prof["launches"] == 3.0  # matmul, relu_, sum: top-level operators, once per call
    assert 0 < prof["busy_ms"] <= prof["wall_ms"]
    text = format_profile("eager", "fwd", prof, cuda=False)
    assert text.startswith("profile eager fwd:") and "3 operators per call" in text


def test_profile_leaves_out_annotation_ranges_on_the_device_timeline():
    # A record_function range (the optimizer step's) shows on the CUDA timeline beside the
    # kernels it spans; counting it too doubled that time in a GPU profile.
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from sparkc.tools.bench_profile import busy_by_name

    def event(name, us, annotation=False, device=DeviceType.CUDA):
        return SimpleNamespace(
            name=name,
            device_type=device,
            is_user_annotation=annotation,
            time_range=SimpleNamespace(elapsed_us=lambda: us),
        )

    events = [
        event("Optimizer.step#AdamW.step", 700.0, annotation=True),
        event("multi_tensor_apply_kernel", 300.0),
        event("multi_tensor_apply_kernel", 300.0),
        event("aten::add", 50.0, device=DeviceType.CPU),
    ]
    assert busy_by_name(events, True, DeviceType) == {"multi_tensor_apply_kernel": [2, 0.6]}
