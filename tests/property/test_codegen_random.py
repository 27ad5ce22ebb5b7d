"""Property test: random small programs of primitives compile, and their fused Triton path, their
unfused Triton path (one kernel group per op) and the float64 reference path compute the same
function, forward and backward (Triton under the interpreter on CPU)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkc import api

D = 8
UNARY = ["relu", "gelu", "silu", "sigmoid", "tanh", "rmsnorm", "layernorm", "softmax"]


@st.composite
def programs(draw) -> str:
    lines = ["model R(d = 8) {", "  input x: float[B, N, d]"]
    values = ["x"]
    for i in range(draw(st.integers(2, 6))):
        a = draw(st.sampled_from(values))
        kind = draw(
            st.sampled_from(
                ["unary", "binary", "const", "linear", "mlp", "swiglu", "conv", "attention"]
            )
        )
        if kind == "unary":
            expr = f"{draw(st.sampled_from(UNARY))}({a})"
        elif kind == "binary":
            b = draw(st.sampled_from(values))
            expr = f"{a} {draw(st.sampled_from(['+', '-', '*']))} {b}"
        elif kind == "const":
            c = draw(st.sampled_from(["0.5", "2.0", "1.5"]))
            expr = f"{a} {draw(st.sampled_from(['+', '*', '/', '-']))} {c}"
        elif kind == "linear":
            expr = f"linear({a}, out=d, bias={draw(st.sampled_from(['true', 'false']))})"
        elif kind == "mlp":
            expr = f"{a} + mlp({a}, hidden=12, act={draw(st.sampled_from(['relu', 'gelu']))})"
        elif kind == "swiglu":
            expr = f"swiglu({a}, hidden=12)"
        elif kind == "conv":
            expr = f"conv1d({a}, kernel=3)"
        else:
            expr = f"{a} + attention({a}, heads=2)"
        lines.append(f"  v{i} = {expr}")
        values.append(f"v{i}")
    lines += [f"  output {values[-1]}", "}"]
    return "\n".join(lines) + "\n"


def _run(module, impl: str, dtype, x: torch.Tensor, state):
    torch.manual_seed(0)
    net = module.Model(impl=impl).to(dtype)
    if state is not None:
        net.load_state_dict(state)
    xi = x.to(dtype).clone().requires_grad_(True)
    out = net(x=xi)
    y = out[module.OUTPUTS[0]]
    (y * torch.linspace(-1, 1, y.numel(), dtype=dtype).reshape(y.shape)).sum().backward()
    grads = [p.grad for p in net.parameters()] + [xi.grad]
    return net.state_dict(), y, grads


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm()) <= 1e-4 * float(b.norm()) + 1e-6 * b.numel() ** 0.5


@settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(programs(), st.integers(1, 9))
def test_fused_equals_unfused_equals_reference(src, n):
    fused = api.load_source(src, "random.spark")
    unfused = api.load_source(src, "random.spark", fuse=False)
    x = torch.randn(2, n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    state, y_ref, g_ref = _run(fused, "reference", torch.float64, x, None)
    state32 = {k: v.float() for k, v in state.items()}
    for module in (fused, unfused):
        _, y, g = _run(module, "triton", torch.float32, x, state32)
        assert _close(y, y_ref), src
        for a, b in zip(g, g_ref):
            assert (a is None) == (b is None) and (a is None or _close(a, b)), src
