"""Generated modules replayed from CUDA graphs (marker `gpu`, skipped without CUDA).

The Triton path must be capturable: no host synchronisation inside a call once its kernels are
compiled and tuned (the embedding's host-side id check is skipped while capturing), and
`ModelOutput` is a pytree node so `torch.cuda.make_graphed_callables` sees the tensors inside.
A replay on new inputs must give the outputs and parameter gradients of a normal call.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparkc import api
from sparkc.tools.bench import make_inputs, op_program

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
SHAPE = {"B": 2, "N": 37}


def _programs():
    tiny = (ROOT / "examples" / "tiny_gpt.spark").read_text()
    return {
        "tiny_gpt": (tiny, {"d": 64, "heads": 4, "vocab": 50, "max_len": 64}),
        "spd_router": (op_program("spd_router", {}, 64), {}),
    }


def _objective(out):
    if out.get("loss") is not None:
        return out["loss"]
    return sum(v.float().sum() for v in out.values() if v.is_floating_point())


def _pair(name):
    src, hyper = _programs()[name]
    module = api.load_source(src, f"{name}.spark", **hyper)
    torch.manual_seed(0)
    plain = module.Model(impl="triton").cuda()
    graphed = module.Model(impl="triton").cuda()
    graphed.load_state_dict(plain.state_dict())
    gen = torch.Generator().manual_seed(3)
    sets = [make_inputs(module, SHAPE, "cuda", torch.float32, gen) for _ in range(2)]
    names = [spec.name for spec in module.INPUTS]
    return plain, graphed, [[s[n] for n in names] for s in sets]


@pytest.mark.parametrize("name", ["tiny_gpt", "spd_router"])
def test_make_graphed_callables_replays_forward_and_backward(name):
    plain, net, (first, second) = _pair(name)
    fn = torch.cuda.make_graphed_callables(net, tuple(first), allow_unused_input=True)
    for args in (second, first):  # new data in the same static shapes
        plain.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
        want = plain(*args)
        _objective(want).backward()
        got = fn(*args)
        _objective(got).backward()
        assert list(got) == list(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
        grads = dict(plain.named_parameters())
        for pname, p in net.named_parameters():
            ref = grads[pname].grad
            assert p.grad is not None and ref is not None, pname
            torch.testing.assert_close(p.grad, ref, rtol=1e-4, atol=1e-5, msg=pname)


@pytest.mark.parametrize("name", ["tiny_gpt", "spd_router"])
def test_forward_captured_under_no_grad_replays(name):
    plain, net, (first, second) = _pair(name)
    static = [t.clone() for t in first]
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            net(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = net(*static)
        for buf, t in zip(static, second):
            buf.copy_(t)
        graph.replay()
        want = plain(*second)
    for key in want:
        torch.testing.assert_close(out[key], want[key], rtol=1e-4, atol=1e-5)
