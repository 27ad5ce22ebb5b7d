"""Compile work stays linear in the program's size (issue 15.5), counted, never timed.

- The model module's bodies go through ruff once per distinct statement shape
  (`codegen/format_body.py`): the result is byte for byte what ruff gives for the whole module
  (every example, deep models, names and strings with digits and escapes), and the text ruff
  sees for the bodies does not grow with the number of layers.
- The verifier checks an op instance's structure once per distinct instance shape.
Timings are in bench/compile_scale.py and docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkc import pipeline
from sparkc.codegen import format_body, module_inputs
from sparkc.codegen.format import format_python
from sparkc.codegen.render import render
from sparkc.ir import verify as verify_mod

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.spark"))
TINY_GPT = (ROOT / "examples" / "tiny_gpt.spark").read_text()

# Digits in input, output, loss and block names, a string hyperparameter with digits, quotes and
# a non-ASCII letter, optional inputs (the guarded loss lines), numbers of several widths.
DIGITS = """
block L2(d) {
  input x1: float[B, N, d]
  h1 = x1 + linear(rmsnorm(x1), out=d)
  return h1 + mlp(layernorm(h1), hidden=3 * d, act=gelu)
}
model Net10(d = 12, layers = 11, label = "v1.0 'x' 7 -- 2 \u00e9", eps2 = 0.000001) {
  input x9: float[B, N, d]
  input t0: i64[B, N]
  y1 = repeat(layers) L2(x9, d=d)
  y22 = rmsnorm(y1, eps=eps2)
  output y22
  loss ce0 = cross_entropy(linear(y22, out=10), t0)
}
"""


def _graph(source: str, name: str, **overrides):
    opts = pipeline.CompileOptions(overrides=overrides)
    return pipeline.run_pipeline(source, name, opts, stop_after="fuse").artefact


def _by_shapes_and_whole(source: str, name: str, **overrides) -> tuple[str, str]:
    ctx, _ = module_inputs(_graph(source, name, **overrides), source, name)
    # `_format_by_shapes` raises instead of falling back: the shape path must cover these.
    fast = format_body._format_by_shapes("module.py.jinja", ctx, "__init__.py")
    whole = format_python(render("module.py.jinja", **ctx), "__init__.py")
    return fast, whole


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_shape_formatting_is_ruffs_for_every_example(path):
    fast, whole = _by_shapes_and_whole(path.read_text(), path.name)
    assert fast == whole


@pytest.mark.parametrize("layers", [1, 12, 120])
def test_shape_formatting_is_ruffs_for_deep_models(layers):
    # 12 and 120 layers: layer numbers, value names and param indices of 1-4 digits.
    fast, whole = _by_shapes_and_whole(TINY_GPT, "tiny_gpt.spark", layers=layers)
    assert fast == whole


def test_shape_formatting_is_ruffs_with_digits_strings_and_escapes():
    fast, whole = _by_shapes_and_whole(DIGITS, "m0d3l_42.spark")
    assert fast == whole
    assert "if t0 is not None:" in fast  # the loss-only lines are guarded (nested shapes)


def test_uncovered_bodies_fall_back_to_ruff_on_the_whole_module():
    ctx, _ = module_inputs(_graph(TINY_GPT, "tiny_gpt.spark"), TINY_GPT, "tiny_gpt.spark")
    body = list(ctx["reference_body"])
    # A non-ASCII line and a compound statement the shape scheme does not handle.
    body[1:1] = ["_z = 'caf\u00e9'  # 1", "for _i in range(3):", "    pass"]
    ctx = {**ctx, "reference_body": body}
    with pytest.raises(format_body._NotCovered):
        format_body._format_by_shapes("module.py.jinja", ctx, "__init__.py")
    assert format_body.format_module("module.py.jinja", ctx, "__init__.py") == format_python(
        render("module.py.jinja", **ctx), "__init__.py"
    )


def _ruff_inputs(monkeypatch, layers: int) -> tuple[int, int]:
    """(lines of the statement-shape document ruff formats, body lines) for tiny_gpt."""
    seen: list[str] = []
    real = format_body.format_python

    def recording(text: str, name: str = "generated.py") -> str:
        seen.append(text)
        return real(text, name)

    monkeypatch.setattr(format_body, "format_python", recording)
    ctx, _ = module_inputs(
        _graph(TINY_GPT, "tiny_gpt.spark", layers=layers), TINY_GPT, "tiny_gpt.spark"
    )
    format_body.format_module("module.py.jinja", ctx, "__init__.py")
    (shapes_doc,) = [t for t in seen if t.startswith("class _C:")]
    return shapes_doc.count("\n"), len(ctx["reference_body"]) + len(ctx["triton_body"])


def test_ruff_formats_a_bounded_number_of_body_statements(monkeypatch):
    # 20 and 40 layers name values, params and layers with the same numbers of digits: the
    # same statement shapes, so ruff sees the same document for twice the statements.
    doc20, body20 = _ruff_inputs(monkeypatch, 20)
    doc40, body40 = _ruff_inputs(monkeypatch, 40)
    assert body40 > 1.9 * body20
    assert doc40 == doc20
    assert doc40 < body40 // 6


def test_verifier_checks_each_distinct_instance_structure_once(monkeypatch):
    calls: list[str] = []
    real = verify_mod._check_structure

    def counting(report, node):
        calls.append(node.op)
        return real(report, node)

    monkeypatch.setattr(verify_mod, "_check_structure", counting)
    counts = []
    for layers in (10, 20):
        calls.clear()
        graph = _graph(TINY_GPT, "tiny_gpt.spark", layers=layers)
        graph.meta.pop("verified_version", None)
        verify_mod.verify(graph)
        counts.append(len(calls))
    assert counts[0] == counts[1]
    assert counts[0] < 10 * 5  # far fewer than one per op instance


def test_verifier_still_reports_a_broken_instance_among_identical_ones():
    import dataclasses

    from sparkc.diagnostics import CompilerBug
    from sparkc.ir.types import DType, TensorType

    graph = _graph(TINY_GPT, "tiny_gpt.spark", layers=6)
    norms = [n for n in graph.topo_order() if n.op == "rmsnorm"]
    bad = norms[7]  # identical in structure to the six before it, but for its type
    graph._g.nodes[bad.id]["node"] = dataclasses.replace(
        bad, types=(TensorType(DType.FLOAT, ("B", "N", 3)),)
    )
    graph.meta.pop("verified_version", None)
    with pytest.raises(CompilerBug, match=f"{bad.id} .*differ from the shape rule"):
        verify_mod.verify(graph)
