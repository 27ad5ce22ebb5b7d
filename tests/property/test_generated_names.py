"""Property test: program names never collide with the generated module's own names (issue 15.2).

Programs with a block and a model take every name (model, block, block and model
hyperparameters, inputs, a loss-only input, output, loss, locals) from a pool of Python
keywords and soft keywords, builtins, dunder names, attributes of `nn.Module` and of the output
dict, and every identifier that appears in generated code (collected from rendered packages).
A name the generated module reserves must be refused by the checker with its code (E0701 input,
E0710 output/loss, E0711 hyperparameter); every other program must compile and run: forward by
position and by keyword, outputs readable as `out[name]` and `out.name`, the loss-only input
guarding the loss, state_dict keys named after the bindings, and a hyperparameter variant.
A few programs also run the Triton path (under the interpreter on CPU).
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sparkc import api
from sparkc.codegen.names import class_name_for
from sparkc.diagnostics import SparkError
from sparkc.frontend.reserved import input_name_problem, output_name_problem
from sparkc.ir.ops import OPS

SPARK_WORDS = {"model", "block", "input", "output", "loss", "return", "repeat", "weight"}
SPARK_WORDS |= {"true", "false", "none", "_", "B", "N"}

PROGRAM = """
block {Bk}({BH}) {{
  input {BI}: float[B, N, {BH}]
  {T1} = linear({BI}, out={BH})
  return {T1} + {BI}
}}

model {M}({H} = 8) {{
  input {I1}: float[B, N, {H}]
  input {I2}: float[B, N, {H}]
  {T2} = {Bk}({I1}, {BH}={H})
  output {O} = rmsnorm({T2})
  loss {L} = mean(({O} - {I2}) * ({O} - {I2}))
}}
"""
SLOTS = ("Bk", "BH", "BI", "T1", "M", "H", "I1", "I2", "T2", "O", "L")
PLAIN = dict(zip(SLOTS, ("Blk", "w", "bx", "t1", "Net", "d", "x", "y", "t2", "out", "mse")))


def _generated_identifiers() -> tuple[set[str], set[str]]:
    """Every identifier in packages sparkc generates (this program and the examples), as
    (names in __init__.py files, names in kernels.py files)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [PROGRAM.format(**PLAIN)] + [
        p.read_text() for p in sorted((root / "examples").glob("*.spark"))
    ]
    found: dict[str, set[str]] = {"__init__.py": set(), "kernels.py": set()}
    for src in sources:
        for rel, text in api.compile_files(src, "pool.spark").items():
            names = found[rel]
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Name):
                    names.add(node.id)
                elif isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.arg):
                    names.add(node.arg)
                elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                    names.add(node.name)
                elif isinstance(node, ast.alias):
                    names.add(node.asname or node.name.split(".")[0])
    return found["__init__.py"], found["kernels.py"]


def _pools() -> list[list[str]]:
    """Name pools drawn with equal weight (the kernels' many names would swamp the rest)."""
    module_names, kernel_names = _generated_identifiers()
    pools = [
        set(keyword.kwlist) | set(getattr(keyword, "softkwlist", ())),
        set(dir(builtins)),
        {n for n in set(dir(torch.nn.Module)) | set(dir(dict)) if n.startswith("__")}
        | {"__init__", "__dict__", "__class__", "__name__", "__builtins__", "__import__"},
        {n for n in set(dir(torch.nn.Module)) | set(dir(dict)) if not n.startswith("__")}
        | {"aux_loss", "impl", "self", "cls", "hyper", "ctx", "p", "out", "v0", "v1", "v2"},
        module_names,
        kernel_names,
    ]
    ok = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
    return [
        sorted(n for n in p if ok.match(n) and n not in SPARK_WORDS and n not in OPS) for p in pools
    ]


POOLS = _pools()
NAMES = st.one_of(*(st.sampled_from(p) for p in POOLS))


@st.composite
def named_programs(draw) -> dict[str, str]:
    picked = draw(st.lists(NAMES, min_size=len(SLOTS), max_size=len(SLOTS), unique=True))
    names = dict(zip(SLOTS, picked))
    # Keep some slots plain so that most programs get past the checker's name rules.
    for slot in draw(st.sets(st.sampled_from(("I1", "I2", "O", "L", "H")))):
        names[slot] = PLAIN[slot] + "_"
    return names


def _expected_codes(n: dict[str, str]) -> set[str]:
    codes = set()
    if input_name_problem(n["I1"]) or input_name_problem(n["I2"]):
        codes.add("E0701")
    if output_name_problem(n["O"]) or output_name_problem(n["L"]):
        codes.add("E0710")
    if n["H"] == "impl":
        codes.add("E0711")
    return codes


def _check_module(module, n: dict[str, str], impl: str) -> None:
    cls = module.Model
    assert cls.__name__ == class_name_for(n["M"]) and module.MODEL_NAME == n["M"]
    torch.manual_seed(0)
    net = cls(impl=impl)
    keys = set(net.state_dict())
    assert f"{n['T2']}.{n['T1']}.weight" in keys and f"{n['O']}.weight" in keys, keys
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    out = net(x, y)
    assert set(out) == {n["O"], n["L"], "aux_loss", "loss"}
    assert out[n["O"]].shape == (2, 3, 8) and getattr(out, n["O"]) is out[n["O"]]
    assert getattr(out, n["L"]) is out[n["L"]] and out[n["L"]].dim() == 0
    assert torch.allclose(out.loss, out[n["L"]] + out.aux_loss)
    again = net(**{n["I1"]: x, n["I2"]: y})
    assert torch.equal(again[n["O"]], out[n["O"]])
    assert net(x).loss is None  # the loss-only input guards the loss
    out.loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    if impl == "reference":
        variant = cls(**{n["H"]: 4})
        assert variant.HYPER[n["H"]] == 4
        assert variant(torch.randn(1, 2, 4), torch.randn(1, 2, 4))[n["O"]].shape == (1, 2, 4)


def _compile_or_refuse(n: dict[str, str]):
    src = PROGRAM.format(**n)
    expected = _expected_codes(n)
    if expected:
        with pytest.raises(SparkError) as err:
            api.compile_files(src, "names.spark")
        assert {d.code for d in err.value.diagnostics} == expected, src
        return None
    return api.load_source(src, "names.spark")


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(named_programs())
def test_program_names_never_collide_with_generated_names(n):
    module = _compile_or_refuse(n)
    if module is not None:
        _check_module(module, n, "reference")


@settings(
    max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(named_programs())
def test_program_names_on_the_triton_path(n):
    assume(not _expected_codes(n))
    _check_module(_compile_or_refuse(n), n, "triton")


@pytest.mark.parametrize(
    "names",
    [
        # The findings of issue 15: each broke forward() or Model(d=...) on main.
        {"M": "_ms"},
        {"M": "_REF"},
        {"M": "_RefContext"},
        {"M": "INPUTS"},
        {"M": "super"},
        {"M": "HYPER", "H": "SOURCE"},
        {"M": "SOURCE_NAME", "H": "MODEL_NAME"},
        {"M": "MODEL_NAME", "T2": "forward", "T1": "training"},
        {"I1": "v0", "I2": "v1"},
        {"I2": "out", "O": "p", "L": "ctx"},
        {"H": "cls", "T2": "self", "O": "torch"},
        {"M": "Model", "H": "text", "Bk": "fuse"},
    ],
)
def test_names_of_the_issue(names):
    n = {**PLAIN, **names}
    module = _compile_or_refuse(n)
    assert module is not None
    _check_module(module, n, "reference")
