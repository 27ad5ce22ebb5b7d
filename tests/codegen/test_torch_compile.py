"""`torch.compile` over a generated module's Triton path gives the uncompiled loss and gradients.

Every generated autograd Function is opaque to dynamo (`launch.apply` is `torch.compiler.disable`d,
docs/architecture.md "torch.compile"): dynamo traces only the host glue between them. Under the
interpreter this is checkable on the CPU: a Triton launch that dynamo traced would fail here (it
cannot trace the interpreter), and the H200 run of 2026-12-02 showed what tracing into the
Functions gave there (a token-embedding gradient of zeros). The GPU twin is
`test_codegen_gpu.py::test_torch_compile_of_the_triton_path`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from sparkc import api
from sparkc.tools.demo_data import progressions

ROOT = Path(__file__).resolve().parents[2]


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize(
    "name, backend",
    [("tiny_gpt", "aot_eager"), ("splatflow", "aot_eager"), ("hspmn", "aot_eager")],
)
def test_compiled_module_matches_uncompiled(name, backend, caplog):
    torch._dynamo.reset()
    # One layer: dynamo traces the same host glue once per layer, and the second adds time, not
    # coverage.
    module = api.load(ROOT / "examples" / f"{name}.spark", layers=1)
    torch.manual_seed(0)
    net = module.Model(impl="triton")
    tokens, targets = progressions(
        2, 9, int(module.HYPER["vocab"]), torch.Generator().manual_seed(3)
    )
    torch.manual_seed(5)  # the same random draws (if the model makes any) in both calls
    out = net(tokens, targets)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    compiled = torch.compile(net, backend=backend)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        torch.manual_seed(5)
        out2 = compiled(tokens, targets)
    # Nothing for the user to puzzle over: no lru_cache traced, no data-dependent branch.
    assert not [w for w in caught if "lru_cache" in str(w.message)]
    assert "Graph break from `Tensor.item()`" not in caplog.text
    out2.loss.backward()
    assert _rel(out2.loss, out.loss) < 1e-6
    for n, p in net.named_parameters():
        assert p.grad is not None, n
        assert _rel(p.grad, grads[n]) < 1e-5, (n, _rel(p.grad, grads[n]))
        assert grads[n].abs().max() > 0, n  # the comparison means something


def test_every_generated_function_is_opaque_to_dynamo():
    """`apply` and the id check carry dynamo's disable marker: dynamo never traces a launch."""
    from sparkc.runtime import launch

    for fn in (launch.apply, launch.validate_ids):
        assert getattr(fn, "_torchdynamo_disable", False), fn
