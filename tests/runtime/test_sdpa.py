"""torch's fused attention beside the generated attention kernels (`runtime/sdpa.py`).

On the CPU: the guard (CUDA 16-bit operands, aligned causal positions, the switch), the extern
call against the float64 reference of tests/kernels/test_attention.py in both layouts (causal,
GQA, forward and backward), the attention family's public entry routed through it (with RoPE
as a differentiable op) giving the Triton path's values and gradients, and the timed choice
between the two (the faster wins; a shape no fused backend takes is never chosen). The GPU
choice itself is measured by `bench/bench_attention.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))
import test_attention as ta
from sparkc.runtime import sdpa


def fake(device="cuda", dtype=torch.bfloat16):
    return SimpleNamespace(device=SimpleNamespace(type=device), dtype=dtype)


def test_guard(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert sdpa.extern_attention_ok(fake(), 0, 0, True)
    assert sdpa.extern_attention_ok(fake(dtype=torch.float16), 7, 7, True)
    assert sdpa.extern_attention_ok(fake(), 12, 0, False)  # no mask: offsets only move RoPE
    assert not sdpa.extern_attention_ok(fake(), 12, 0, True)  # a decode step's query rows
    assert not sdpa.extern_attention_ok(fake(dtype=torch.float32), 0, 0, True)
    assert not sdpa.extern_attention_ok(fake(device="cpu"), 0, 0, True)
    monkeypatch.setenv("SPARKC_EXTERN_ATTENTION", "0")
    assert not sdpa.extern_attention_ok(fake(), 0, 0, True)
    monkeypatch.delenv("SPARKC_EXTERN_ATTENTION")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not sdpa.extern_attention_ok(fake(), 0, 0, True)


@pytest.mark.parametrize("layout", ["bnhd", "bhnd"])
@pytest.mark.parametrize("causal,group", [(True, 1), (True, 2), (False, 2)])
def test_extern_matches_reference(layout, causal, group):
    kv = 2
    q, k, v, _ = ta.make_inputs(2, 11, 11, kv * group, kv, 16, None)
    ins = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    args = [t.transpose(1, 2) for t in ins] if layout == "bhnd" else ins
    o = sdpa.extern_attention(*args, causal, group, layout)
    if layout == "bhnd":
        o = o.transpose(1, 2)
    ref_ins = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    ref, _ = ta.reference(*ref_ins, None, causal, False, None)
    assert ta.rel(o, ref) < 1e-5
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    (o * do).sum().backward()
    (ref * do.double()).sum().backward()
    for got, want in zip(ins, ref_ins):
        assert ta.rel(got.grad, want.grad) < 1e-5


@pytest.mark.parametrize("causal,group,rope", [(True, 2, True), (False, 1, False)])
def test_family_entry_routes_through_torch_when_chosen(patch_runtime, causal, group, rope):
    # The public entry with the choice forced both ways: same values and gradients (RoPE's
    # inverse rotation is the backward of the torch path's rotation).
    fn, _ = ta.build(causal, group, rope, None)
    q, k, v, _ = ta.make_inputs(1, 13, 13, 2 * group, 2, 16, None)
    results, externs = {}, []
    original = sdpa.extern_attention
    patch_runtime("extern_attention", lambda *a: externs.append(a[3:]) or original(*a))
    for impl in sdpa.IMPLS:
        asked = []
        patch_runtime("extern_attention_ok", lambda *a: True)
        patch_runtime(
            "attention_impl", lambda *a, _impl=impl, _asked=asked: _asked.append(a) or _impl
        )
        ins = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        o = fn(*ins)
        o.backward(torch.ones_like(o))
        results[impl] = [o.detach()] + [t.grad for t in ins]
        assert len(asked) == 1 and asked[0][7] is True  # gradients wanted: timed with backward
    assert externs == [(causal, group, "bnhd")]  # once, for the torch path only
    for a, b in zip(results["triton"], results["sdpa"]):
        assert ta.rel(a, b) < 1e-4


def test_choice_is_the_faster_and_never_a_failing_backend(patch_runtime):
    q, k, v, _ = ta.make_inputs(1, 8, 8, 2, 2, 16, None)
    chosen = {}

    def pick(name, shape_class, cands, bench_fn, *, source, like):
        times = {c: bench_fn(c) for c in cands}
        chosen["times"] = times
        return min(cands, key=times.get)

    clock = {"triton": 2.0, "sdpa": 1.0}
    patch_runtime("pick", pick)
    patch_runtime("bench_ms", lambda step: step() is not None and clock[state["impl"]])
    state = {}

    def runner(impl, fail=False):
        def run(a, b, c):
            state["impl"] = impl
            if fail:
                raise RuntimeError("No available kernel.")
            return (a * b * c).sum(-1)

        return run

    runs = {"triton": runner("triton"), "sdpa": runner("sdpa")}
    assert sdpa.attention_impl(None, q, k, v, True, 1, "bnhd", True, runs) == "sdpa"
    clock.update(triton=0.5)
    assert sdpa.attention_impl(None, q, k, v, True, 1, "bnhd", False, runs) == "triton"
    runs["sdpa"] = runner("sdpa", fail=True)
    clock.update(triton=9.0)
    assert sdpa.attention_impl(None, q, k, v, True, 1, "bnhd", True, runs) == "triton"
    assert chosen["times"]["sdpa"] == float("inf")


def test_torch_compile_traces_the_torch_path(patch_runtime):
    # A user's torch.compile over a module whose attention took torch's path: dynamo traces
    # `sdpa_kernel` and the attention call, and the compiled step gives the same loss and
    # gradients.
    from sparkc import api
    from sparkc.tools.demo_data import progressions

    patch_runtime("extern_attention_ok", lambda *a: True)
    patch_runtime("attention_impl", lambda *a: "sdpa")
    calls = []
    original = sdpa.extern_attention
    patch_runtime("extern_attention", lambda *a: calls.append(1) or original(*a))
    torch._dynamo.reset()
    module = api.load(Path(__file__).resolve().parents[2] / "examples" / "tiny_gpt.spark", layers=1)
    torch.manual_seed(0)
    net = module.Model(impl="triton")
    tokens, targets = progressions(
        2, 9, int(module.HYPER["vocab"]), torch.Generator().manual_seed(3)
    )
    out = net(tokens, targets)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    out2 = torch.compile(net, backend="aot_eager")(tokens, targets)
    out2.loss.backward()
    assert calls  # the attention went through torch's path
    assert torch.equal(out2.loss.detach(), out.loss.detach())
    for n, p in net.named_parameters():
        assert torch.allclose(p.grad, grads[n], rtol=1e-5, atol=1e-7), n
