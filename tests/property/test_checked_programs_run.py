"""Property test: a program that passes `check` compiles and runs.

Programs come from a small grammar of expressions over typed inputs (float, f16, i64, i32 and
bool tensors; unary minus, `+ - * /`, constants, activations, norms, softmax and linear). For
every program the checker either reports diagnostics (a `SparkError`, never another exception)
or the program compiles, and a forward on the reference path raises nothing (the inputs are
valid, so not even `InputError`) and returns every output with the dtype and shape the checker
gave it. A sample of them also runs on the Triton path (under the interpreter on CPU), which
must agree with the reference path: exactly on integer and bool outputs.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkc import api
from sparkc.diagnostics import SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse
from sparkc.ir.types import DType

INPUTS = {  # name: (declaration, torch dtype)
    "x": ("float[B, N, 8]", torch.float32),
    "h": ("f16[B, N, 8]", torch.float16),
    "t": ("i64[B, N, 8]", torch.int64),
    "k": ("i32[B, N, 1]", torch.int32),
    "m": ("bool[B, N, 8]", torch.bool),
}
CALLS = ["relu", "gelu", "silu", "sigmoid", "tanh", "rmsnorm", "layernorm", "softmax"]
WANT = {DType.I64: torch.int64, DType.I32: torch.int32, DType.BOOL: torch.bool}


def _expr(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            inner.map(lambda e: f"-{e}"),
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
                lambda p: f"({p[0]} {p[1]} {p[2]})"
            ),
            st.tuples(st.sampled_from(CALLS), inner).map(lambda p: f"{p[0]}({p[1]})"),
            st.tuples(inner, st.booleans()).map(
                lambda p: f"linear({p[0]}, out=8, bias={str(p[1]).lower()})"
            ),
        )

    return st.recursive(leaves, grow, max_leaves=5)


@st.composite
def programs(draw) -> str:
    names = draw(st.lists(st.sampled_from(sorted(INPUTS)), min_size=1, max_size=3, unique=True))
    lines = ["model P() {"] + [f"  input {n}: {INPUTS[n][0]}" for n in names]
    values = list(names)
    for i in range(draw(st.integers(1, 3))):
        consts = st.sampled_from(["2", "3", "0.5", "1.5"])
        tensors = st.sampled_from(values)
        leaves = st.one_of(tensors, tensors, tensors, consts)  # mostly tensors
        lines.append(f"  v{i} = {draw(_expr(leaves))}")
        values.append(f"v{i}")
    outs = draw(
        st.lists(st.sampled_from(values[len(names) :]), min_size=1, max_size=2, unique=True)
    )
    lines += [f"  output o_{v} = {v}" for v in outs] + ["}"]
    return "\n".join(lines) + "\n"


def _inputs(module, n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    out = {}
    for spec in module.INPUTS:
        shape = [2 if d == "B" else n if d == "N" else d for d in spec.shape]
        dtype = INPUTS[spec.name][1]
        if dtype.is_floating_point:
            out[spec.name] = torch.randn(shape, generator=g).to(dtype)
        elif dtype is torch.bool:
            out[spec.name] = torch.rand(shape, generator=g) > 0.5
        else:
            out[spec.name] = torch.randint(-4, 5, shape, generator=g, dtype=dtype)
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    a, b = a.double(), b.double()
    finite = torch.isfinite(b)
    if not torch.equal(finite, torch.isfinite(a)):
        return False
    return bool(torch.allclose(a[finite], b[finite], rtol=2e-2, atol=2e-2))


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(programs(), st.integers(1, 5), st.integers(0, 3))
def test_checked_programs_compile_and_run(src: str, n: int, pick: int) -> None:
    try:
        program = check(parse(src, "p.spark"))
    except SparkError:
        return  # rejected with diagnostics: fine (a CompilerBug or any other error fails)
    types = {o.name: program.type_of(o.ref) for o in program.outputs}
    module = api.load_source(src, "p.spark")
    data = _inputs(module, n)
    net = module.Model(impl="reference")
    ref = net(**data)
    for name, t in types.items():
        y = ref[name]
        assert (y.dtype in WANT.values()) == (t.dtype in WANT), (src, name, y.dtype)
        assert t.dtype not in WANT or y.dtype == WANT[t.dtype], (src, name, y.dtype)
        assert y.dim() == t.rank, (src, name, y.shape)
    if pick == 0:  # a sample also runs on the Triton path
        tri_net = module.Model(impl="triton")
        tri_net.load_state_dict(net.state_dict())
        tri = tri_net(**data)
        for name in types:
            assert tri[name].dtype == ref[name].dtype, (src, name)
            assert _same(tri[name], ref[name]), (src, name)
