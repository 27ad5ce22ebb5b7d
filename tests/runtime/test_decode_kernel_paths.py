"""Which kernels the Triton path's cached calls run (runtime/decode_attention.py,
decode_splat.py, decode_stack.py), counted by spies: single-token steps of attention,
sqdk_attention and every hop of fk_attention through the fused split-KV step, those of
splat_attention through its decoding step, every cached call of verifier_stack through the scan
kernel; the reference path's calls never; both paths equal the full forward (interpreter here,
tiny shapes)."""

from __future__ import annotations

import pytest
import torch
from test_decode import ROOT, _decode, _op_model, _rel

import sparkc


def spy_decode_positions(monkeypatch) -> list:
    """The positions (host ints, or the cache's device tensor in a static step) of every call
    of the fused split-KV step (runtime/decode_attention.py `decode_step`), in order."""
    from sparkc.runtime import decode_attention as da

    positions = []
    real = da.decode_step

    def spy(*args, **kwargs):
        positions.append(args[5])  # the new row's position
        return real(*args, **kwargs)

    monkeypatch.setattr(da, "decode_step", spy)
    return positions


def test_triton_path_steps_use_the_split_kv_kernel(monkeypatch):
    """Single-token steps of the Triton path go through runtime/decode_attention.py's fused
    step (RoPE, cache write, attention); the reference path's never do; both give the full
    forward's outputs."""
    calls = spy_decode_positions(monkeypatch)
    mod = sparkc.load(ROOT / "examples" / "tiny_gpt.spark")
    torch.manual_seed(0)
    ref = mod.Model(impl="reference", d=16, layers=1, vocab=13).eval()
    tokens = torch.randint(0, 13, (2, 5))
    with torch.no_grad():
        full = ref(tokens).logits
    _decode(ref, tokens, ref.new_cache(2, 8), {}, chunks=(3, 1, 1))
    assert calls == []
    net = mod.Model(impl="triton", d=16, layers=1, vocab=13).eval()
    net.load_state_dict(ref.state_dict())
    got = _decode(net, tokens, net.new_cache(2, 8), {}, chunks=(3, 1, 1))
    assert calls == [3, 4]  # the two single steps, at positions 3 and 4
    assert _rel(got, full) <= 1e-5


STEP_KERNELS = {
    # op expression -> (runtime module, its step function, the argument whose shape is logged)
    "splat_attention(x, splats=5, heads=2, normalize=true)": (
        "decode_splat",
        "splat_decode_step",
        3,
    ),
    "splat_attention(x, splats=5, heads=2, normalize=false)": (
        "decode_splat",
        "splat_decode_step",
        3,
    ),
    "x * verifier_stack(x, stack=3, read=top).signals": ("decode_stack", "stack_scan_logits", 2),
    "x * verifier_stack(x, stack=3, read=mean).signals": ("decode_stack", "stack_scan_logits", 2),
    "attention(x, heads=4, kv_heads=2, rope=true)": ("decode_attention", "decode_step", 0),
    "fk_attention(x, heads=2, hops=3, beta=0.4, normalize=true)": (
        "decode_attention",
        "decode_step",
        0,
    ),
    "sqdk_attention(x, token_router(x, noise=false).gate, heads=4, kv_heads=2, rope=true)": (
        "decode_attention",
        "decode_step",
        0,
    ),
}


@pytest.mark.parametrize("expr", sorted(STEP_KERNELS))
def test_triton_path_single_steps_use_the_one_launch_kernels(monkeypatch, expr):
    """Single-token steps of splat_attention on the Triton path go through its decoding step
    (runtime/decode_splat.py: the [B, heads, K, d] state), those of attention and sqdk_attention
    through the fused step of decode_attention.py (RoPE, cache write, attention: [B, heads, d]
    queries), and every cached call of verifier_stack (prompts too) through its scan kernel
    (decode_stack.py: the [B, S, elem] memory), and fk_attention's single steps through one
    fused step per hop; the reference path's never do, and both give
    the full forward's outputs, so the state the kernels leave is what later calls read."""
    import importlib

    module_name, fn_name, logged = STEP_KERNELS[expr]
    module = importlib.import_module(f"sparkc.runtime.{module_name}")
    calls = []
    real = getattr(module, fn_name)

    def counting(*args, **kwargs):
        calls.append(tuple(args[logged].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, fn_name, counting)
    mod = sparkc.load_source(
        _op_model(expr), f"dec_step_kernel_{sorted(STEP_KERNELS).index(expr)}.spark"
    )
    torch.manual_seed(4)
    ref = mod.Model(impl="reference").eval()
    tokens = torch.randint(0, 11, (2, 7))
    with torch.no_grad():
        full = ref(tokens).logits
    _decode(ref, tokens, ref.new_cache(2, 8), {}, chunks=(3, 1, 2, 1))
    assert calls == []
    net = mod.Model(impl="triton").eval()
    net.load_state_dict(ref.state_dict())
    got = _decode(net, tokens, net.new_cache(2, 8), {}, chunks=(3, 1, 2, 1))
    want = {"decode_splat": (2, 2, 5, 8), "decode_attention": (2, 4, 4)}.get(module_name, (2, 3))
    if expr.startswith("fk_attention"):
        want = (2, 2, 8)
    # every call / the single steps (fk_attention: one fused step per hop)
    launches = 4 if module_name == "decode_stack" else 6 if expr.startswith("fk") else 2
    assert len(calls) == launches and all(c[: len(want)] == want for c in calls)
    assert _rel(got, full) <= 1e-5
