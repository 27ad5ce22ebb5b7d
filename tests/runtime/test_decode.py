"""Cached decoding (SPEC §5.6, runtime/decode.py): prefill-then-steps equals the full forward for
every example model and every causal op (reference path on the CPU, float32 within 1e-5
relative), the cache's life cycle (length, reset, tensors, two caches interleaved), and every
misuse refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sparkc.runtime.decode import DecodeCache, NotDecodableError
from sparkc.runtime.module_support import InputError
from sparkc.runtime.reference import DECODE

import sparkc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("tiny_gpt", "splatflow", "spark_k", "hspmn", "procedural")
# Chunk sizes of one run: a prefill, single steps, a chunk of several, single steps.
CHUNKS = (4, 1, 1, 3, 1, 1)


def _extra(net, b: int, t: int = 5) -> dict:
    """The per-sequence inputs of the procedural example (tape per sequence)."""
    names = [s.name for s in net.INPUTS]
    if "ops" not in names:
        return {}
    g = torch.Generator().manual_seed(1)
    d = net.HYPER["d"]
    return {
        "ops": torch.randint(0, 9, (b, t), dtype=torch.int32, generator=g),
        "args": torch.randn(b, t, d, generator=g),
        "has_arg": torch.rand(b, t, generator=g) > 0.5,
    }


def _decode(net, tokens, cache, extra, chunks=CHUNKS, key="logits"):
    outs, at = [], 0
    for i, c in enumerate(chunks):
        kw = extra if i == 0 else {}
        outs.append(net(tokens[:, at : at + c], cache=cache, **kw)[key])
        at += c
    return torch.cat(outs, dim=1)


def _rel(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_prefill_then_steps_equal_full_forward(example):
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    torch.manual_seed(0)
    net = mod.Model(impl="reference").eval()
    n = sum(CHUNKS)
    tokens = torch.randint(0, net.HYPER["vocab"], (2, n))
    extra = _extra(net, 2)
    with torch.no_grad():
        full = net(tokens, **extra).logits
    cache = net.new_cache(2, 16)
    got = _decode(net, tokens, cache, extra)
    assert cache.length == n
    assert _rel(got, full) <= 1e-5


# One small model per causal op (and per setting whose state differs).
OP_PROGRAMS = {
    "attention_gqa_rope": "attention(x, heads=4, kv_heads=2, rope=true)",
    "attention_basis": (
        "attention(x, heads=2, basis=basis(freqs=2, legendre=3, over=distance, max_len=32))"
    ),
    "attention_basis_key": (
        "attention(x, heads=2, basis=basis(freqs=2, legendre=2, over=key, max_len=32))"
    ),
    "fk_attention": "fk_attention(x, heads=2, hops=3, beta=0.4)",
    "fk_attention_normalized": "fk_attention(x, heads=2, hops=2, beta=0.6, normalize=true)",
    "verifier_top": "linear(verifier_stack(x, stack=5).read, out=d)",
    "verifier_mean": "linear(verifier_stack(x, stack=4, read=mean).read, out=d)",
    "verifier_signals": "x * verifier_stack(x, stack=3).signals",
    "splat": "splat_attention(x, splats=5, heads=2)",
    "splat_unnormalized": "splat_attention(x, splats=3, heads=1, normalize=false)",
    "conv1d": "conv1d(x, kernel=4, causal=true)",
    "conv1d_k1": "conv1d(x, kernel=1, causal=true)",
    "trajectory": "trajectory(x, window=3)",
    "sqdk": "sqdk_attention(x, token_router(x, noise=false).gate, heads=4, kv_heads=2)",
    "rope": "merge_heads(rope(split_heads(x, heads=2)))",
}


def _op_model(expr: str) -> str:
    return (
        "model M(vocab = 11, d = 16) {\n"
        "  input tokens: i64[B, N]\n"
        "  x = pos_embed(embed(tokens, vocab=vocab, dim=d), max_len=32)\n"
        f"  y = x + {expr}\n"
        "  logits = linear(y, out=vocab)\n"
        "  output logits\n"
        "}\n"
    )


@pytest.mark.parametrize("name", sorted(OP_PROGRAMS))
def test_each_causal_op_decodes_exactly(name):
    expr = OP_PROGRAMS[name]
    mod = sparkc.load_source(_op_model(expr), f"dec_{name}.spark")
    torch.manual_seed(3)
    net = mod.Model(impl="reference").eval()
    tokens = torch.randint(0, 11, (3, 12))
    with torch.no_grad():
        full = net(tokens).logits
    cache = net.new_cache(3, 20)
    got = _decode(net, tokens, cache, {}, chunks=(5, 1, 2, 1, 1, 2))
    assert _rel(got, full) <= 1e-5


def test_every_mixer_has_a_decode_rule():
    """Code generation gives a cache slot to every op whose `causal` trait is set, so each such
    op needs a state and step rule."""
    from sparkc.ir.ops import OPS

    mixers = {name for name, spec in OPS.items() if _safe_causal(spec)}
    assert {"attention", "conv1d", "trajectory", "verifier_stack"} <= mixers
    assert mixers <= set(DECODE), sorted(mixers - set(DECODE))


def _safe_causal(spec) -> bool:
    try:
        return bool(spec.causal({"causal": True, "mode": "threshold"}))
    except KeyError:
        return False


def _tiny():
    mod = sparkc.load(ROOT / "examples" / "tiny_gpt.spark")
    torch.manual_seed(0)
    return mod.Model(impl="reference").eval()


def test_two_caches_interleaved_equal_each_alone():
    net = _tiny()
    a = torch.randint(0, 64, (1, 7))
    b = torch.randint(0, 64, (1, 7))
    alone_a = _decode(net, a, net.new_cache(1, 8), {}, chunks=(3, 1, 1, 1, 1))
    alone_b = _decode(net, b, net.new_cache(1, 8), {}, chunks=(2, 2, 1, 1, 1))
    ca, cb = net.new_cache(1, 8), net.new_cache(1, 8)
    outs_a, outs_b = [], []
    for (sa, ea), (sb, eb) in zip(
        [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7)], [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7)]
    ):
        outs_a.append(net(a[:, sa:ea], cache=ca).logits)
        outs_b.append(net(b[:, sb:eb], cache=cb).logits)
    assert torch.equal(torch.cat(outs_a, 1), alone_a)
    assert torch.equal(torch.cat(outs_b, 1), alone_b)


def test_cache_object_length_reset_and_tensors():
    net = _tiny()
    cache = net.new_cache(2, 8)
    assert isinstance(cache, DecodeCache) and cache.length == 0
    tensors = cache.tensors()
    assert sorted(tensors) == [
        "blocks.0.h_attention/k",
        "blocks.0.h_attention/v",
        "blocks.1.h_attention/k",
        "blocks.1.h_attention/v",
    ]
    assert all(t.shape == (2, 8, 4, 16) for t in tensors.values())  # static: max_len rows
    tokens = torch.randint(0, 64, (2, 5))
    first = _decode(net, tokens, cache, {}, chunks=(3, 2))
    assert cache.length == 5
    cache.reset()
    assert cache.length == 0
    assert all(t.abs().sum() == 0 for t in cache.tensors().values())
    assert all(cache.tensors()[k] is tensors[k] for k in tensors)  # same storage for its life
    assert torch.equal(_decode(net, tokens, cache, {}, chunks=(3, 2)), first)


def test_cached_outputs_carry_no_gradient_and_loss_covers_new_positions():
    net = _tiny().train()
    tokens = torch.randint(0, 64, (1, 4))
    out = net(tokens, tokens, cache=net.new_cache(1, 4))
    assert not out.logits.requires_grad
    assert out.loss is not None and out.loss.dim() == 0


def _expect(exc, match, fn, *args, **kw):
    with pytest.raises(exc, match=match):
        fn(*args, **kw)


def test_triton_path_cached_calls_refuse_a_device_without_kernels(monkeypatch):
    """impl='triton' on CPU tensors without the interpreter: a cached call (prefill or step) is
    refused with the plain forward's error, not run on the reference rules in silence (on the
    GPU machine a test of the decode kernels once passed CPU tensors and saw no kernel run)."""
    mod = sparkc.load(ROOT / "examples" / "splatflow.spark")
    net = mod.Model(impl="triton").eval()
    tokens = torch.randint(0, 64, (2, 4))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError) as plain:
        net(tokens)
    cache = net.new_cache(2, 8)
    with pytest.raises(RuntimeError) as cached:
        net(tokens, cache=cache)
    assert str(cached.value) == str(plain.value)
    assert "impl='triton' runs generated kernels on a CUDA device" in str(plain.value)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    fresh = net.new_cache(2, 8)
    assert net(tokens, cache=fresh).logits.shape == (2, 4, 64)


def test_misuse_is_refused():
    net = _tiny()
    cache = net.new_cache(2, 6)
    tokens = torch.randint(0, 64, (2, 4))
    _expect(
        InputError,
        "batch 3, but the cache was made for batch 2",
        net,
        tokens[:1].repeat(3, 1),
        cache=cache,
    )
    net(tokens, cache=cache)
    _expect(
        InputError,
        r"6 is past the cache's max_len=6|past the cache's max_len=6",
        net,
        tokens[:, :3],
        cache=cache,
    )
    assert cache.length == 4  # a refused call consumes nothing
    net(tokens[:, :2], cache=cache)
    _expect(InputError, "past the cache's max_len=6", net, tokens[:, :1], cache=cache)
    _expect(ValueError, "made by another model", _tiny(), tokens, cache=net.new_cache(2, 6))
    _expect(TypeError, "new_cache", net, tokens, cache={"k": 1})
    _expect(ValueError, "max_len=65 exceeds pos_embed 'pos' max_len=64", net.new_cache, 1, 65)
    _expect(ValueError, "batch must be a positive int", net.new_cache, 0, 8)
    _expect(ValueError, "max_len must be a positive int", net.new_cache, 1, 2.5)
    _expect(ValueError, "dtype must be a floating", net.new_cache, 1, 8, dtype=torch.int64)
    wrong = net.new_cache(2, 6, dtype=torch.float64)
    _expect(
        InputError,
        "the cache holds torch.float64 but the model's parameters are torch.float32",
        net,
        tokens,
        cache=wrong,
    )
    _expect(InputError, "input 'tokens' must", net, tokens.float(), cache=net.new_cache(2, 6))
    elsewhere = net.new_cache(2, 6, device="meta")
    _expect(
        InputError,
        "the cache is on meta but the model's parameters are on cpu",
        net,
        tokens,
        cache=elsewhere,
    )


def test_failed_call_marks_the_cache_until_reset(monkeypatch):
    net = _tiny()
    cache = net.new_cache(1, 8)
    tokens = torch.randint(0, 64, (1, 4))
    net(tokens[:, :2], cache=cache)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(net), "_forward_reference", boom)
    _expect(RuntimeError, "boom", net, tokens[:, 2:3], cache=cache)
    monkeypatch.undo()
    _expect(RuntimeError, r"call cache.reset\(\) first", net, tokens[:, 2:3], cache=cache)
    cache.reset()
    net(tokens, cache=cache)
    assert cache.length == 4


NOT_DECODABLE = {
    "attention causal=false": (
        "attention(x, heads=2, causal=false)",
        "attention 'y_attention' with causal=false is not causal",
    ),
    "topk router": (
        "sqdk_attention(x, token_router(x, mode=topk).gate, heads=2)",
        "token_router",
    ),
    "splat global": (
        "splat_attention(x, splats=2, causal=false)",
        "splat_attention 'y_splat_attention' with causal=false is not causal",
    ),
    "conv1d symmetric": (
        "conv1d(x, kernel=3, causal=false)",
        "conv1d 'y_conv1d' with causal=false is not causal",
    ),
    "fk bidirectional": (
        "fk_attention(x, heads=2, causal=false)",
        "fk_attention 'y_fk_attention' with causal=false is not causal",
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_DECODABLE))
def test_programs_that_cannot_decode_are_named_at_new_cache(name):
    expr, message = NOT_DECODABLE[name]
    mod = sparkc.load_source(_op_model(expr), f"nodec_{name.replace(' ', '_')}.spark")
    net = mod.Model(impl="reference")
    with pytest.raises(NotDecodableError, match="cannot decode incrementally") as info:
        net.new_cache(1, 8)
    assert message in str(info.value)
    if "topk" in expr:
        assert "mode='topk'" in str(info.value)


def test_mean_output_cannot_decode():
    text = (
        "model M(vocab = 11, d = 8) {\n  input tokens: i64[B, N]\n"
        "  x = embed(tokens, vocab=vocab, dim=d)\n  m = mean(x)\n  output m\n}\n"
    )
    net = sparkc.load_source(text, "nodec_mean.spark").Model(impl="reference")
    _expect(NotDecodableError, "mean 'm' reads every position", net.new_cache, 1, 4)


def test_per_sequence_ops_run_once_per_cache(monkeypatch):
    """opcode_tape reads only its tape (per sequence) and a parameter: a cache runs it on its
    first call and keeps its outputs; a reset runs it again."""
    from sparkc.runtime.reference import REFERENCE

    runs = []
    real = REFERENCE["opcode_tape"]
    monkeypatch.setitem(REFERENCE, "opcode_tape", lambda *a: runs.append(1) or real(*a))
    mod = sparkc.load(ROOT / "examples" / "procedural.spark")
    torch.manual_seed(0)
    net = mod.Model(impl="reference").eval()
    tokens = torch.randint(0, 64, (2, 6))
    extra = _extra(net, 2)
    with torch.no_grad():
        full = net(tokens, **extra).logits
    runs.clear()
    cache = net.new_cache(2, 8)
    got = _decode(net, tokens, cache, extra, chunks=(3, 1, 1, 1))
    assert len(runs) == 1 and _rel(got, full) <= 1e-5
    cache.reset()
    _decode(net, tokens, cache, extra, chunks=(3, 1))
    assert len(runs) == 2


def test_per_sequence_inputs_are_given_once():
    mod = sparkc.load(ROOT / "examples" / "procedural.spark")
    torch.manual_seed(0)
    net = mod.Model(impl="reference").eval()
    tokens = torch.randint(0, 64, (2, 6))
    extra = _extra(net, 2)
    cache = net.new_cache(2, 8)
    net(tokens[:, :3], cache=cache, **extra)
    net(tokens[:, 3:4], cache=cache)  # taken from the cache
    net(tokens[:, 4:5], cache=cache, **extra)  # the same tensors again: accepted
    other = {k: v.clone() for k, v in extra.items()}
    _expect(InputError, "'ops' is per sequence", net, tokens[:, 5:6], cache=cache, **other)
    _expect(InputError, "input 'ops' is missing", net, tokens[:, :2], cache=net.new_cache(2, 8))


def test_cache_is_an_input_name_reserved_by_the_checker():
    text = "model M(d = 4) {\n  input cache: float[B, N, d]\n  output cache\n}\n"
    with pytest.raises(sparkc.diagnostics.SparkError, match="decoding cache"):
        sparkc.load_source(text, "reserved_cache.spark")


# ---- The Triton path: a cached call runs the same decode rules (interpreter here, tiny shapes).


TINY = {  # small enough for the interpreter
    "tiny_gpt": {"d": 16, "layers": 1, "vocab": 13},
    "splatflow": {"d": 16, "layers": 1, "vocab": 13},
    "spark_k": {"d": 32, "heads": 2, "layers": 1, "vocab": 13, "hops": 2, "stack": 4},
    "hspmn": {"d": 32, "heads": 2, "kv_heads": 1, "layers": 1, "vocab": 13},
    "procedural": {"d": 32, "heads": 2, "layers": 1, "vocab": 13, "hidden": 64, "codewords": 16},
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_triton_path_prefill_then_steps_equal_its_full_forward(example):
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    hyper = TINY[example]
    torch.manual_seed(0)
    ref = mod.Model(impl="reference", **hyper).eval()
    net = mod.Model(impl="triton", **hyper).eval()
    net.load_state_dict(ref.state_dict())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = net.to(device)
    tokens = torch.randint(0, 13, (1, 5), device=device)
    extra = {k: v.to(device) for k, v in _extra(net, 1, t=3).items()}
    with torch.no_grad():
        full = net(tokens, **extra).logits
    got = _decode(net, tokens, net.new_cache(1, 8), extra, chunks=(3, 1, 1))
    assert _rel(got, full) <= 1e-5


@pytest.mark.parametrize("name", sorted(OP_PROGRAMS))
def test_each_causal_op_decodes_exactly_on_the_triton_path(name):
    mod = sparkc.load_source(_op_model(OP_PROGRAMS[name]), f"dec_{name}.spark")
    torch.manual_seed(3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = mod.Model(impl="triton").eval().to(device)
    tokens = torch.randint(0, 11, (2, 6), device=device)
    with torch.no_grad():
        full = net(tokens).logits
    got = _decode(net, tokens, net.new_cache(2, 8), {}, chunks=(3, 1, 2))
    assert _rel(got, full) <= 1e-5


@pytest.mark.parametrize("normalize", ["true", "false"])
def test_splat_prompts_longer_than_a_chunk_continue_the_cached_state(normalize):
    """A cached call of many rows runs splat_attention's chunked form (64-row chunks) started
    from the cached (S, z): prompts spanning several chunks, after and before single steps, give
    the full forward's outputs."""
    expr = f"splat_attention(x, splats=5, heads=2, normalize={normalize})"
    src = _op_model(expr).replace("max_len=32", "max_len=320")
    mod = sparkc.load_source(src, f"dec_splat_long_{normalize}.spark")
    torch.manual_seed(5)
    net = mod.Model(impl="reference").eval()
    tokens = torch.randint(0, 11, (2, 300))
    with torch.no_grad():
        full = net(tokens).logits
        got = _decode(net, tokens, net.new_cache(2, 300), {}, chunks=(70, 1, 150, 1, 78))
    assert _rel(got, full) <= 1e-5


# ---- GPU (the lead runs these): float32 and bfloat16 on the Triton path.


@pytest.mark.gpu
@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_prefill_then_steps_equal_full_forward(example, dtype):
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    torch.manual_seed(0)
    net = mod.Model(impl="triton").eval().cuda().to(dtype)
    n = sum(CHUNKS)
    tokens = torch.randint(0, net.HYPER["vocab"], (2, n), device="cuda")
    extra = {k: v.cuda() for k, v in _extra(net, 2).items()}
    with torch.no_grad():
        full = net(tokens, **extra).logits.float()
    got = _decode(net, tokens, net.new_cache(2, 16, device="cuda"), extra).float()
    assert _rel(got, full) <= (1e-5 if dtype == torch.float32 else 3e-2)
