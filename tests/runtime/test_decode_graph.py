"""Static decode steps and the CUDA-graph decode loop (runtime/decode.py `static_forward`,
runtime/decode_graph.py `GraphStep`, `sparkc.generate(cuda_graph=...)`).

On the CPU: a static step (positions read from the device tensor `cache.position`) gives the
outputs of the host-length step on the reference path and on the Triton path under the
interpreter; it reads no tensor value on the host (run on the meta device, where that raises);
`GraphStep` and the graph loop of `generate` give the plain loop's outputs when a capture is
emulated on the CPU (the captured step re-run at each replay with the host `length` frozen at
its capture value, as a real graph freezes every host value). GPU tests (marked) replay real
CUDA graphs: equal to eager steps (float32 within 1e-5, bfloat16 within 2e-2 relative) and
`generate(cuda_graph=True)` equal to `generate(cuda_graph=False)`."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from sparkc.runtime import decode_graph as dg
from sparkc.runtime.decode import run_cached, static_forward
from sparkc.runtime.module_support import InputError, ModelOutput
from test_decode_kernel_paths import spy_decode_positions

import sparkc
import sparkc.generation as gen

ROOT = Path(__file__).resolve().parents[2]
TINY = {  # small Triton-path variants (the interpreter is slow)
    "tiny_gpt": {"d": 16, "heads": 2, "layers": 1, "vocab": 13},
    "splatflow": {"d": 16, "heads": 2, "layers": 1, "vocab": 13, "splats": 4, "window": 3},
}


def _model(example: str, impl: str = "reference", **hyper):
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    torch.manual_seed(0)
    return mod.Model(impl=impl, **hyper).eval()


def _values(net, tokens, extra=None):
    extra = extra or {}
    return [tokens if s.name == "tokens" else extra.get(s.name) for s in net.INPUTS]


def _steps(net, tokens, static: bool, chunks=(4, 1, 1, 3, 1, 1), max_len=16):
    """Logits of a prefill (host length) then the other chunks (static steps or not)."""
    cache = net.new_cache(tokens.shape[0], max_len)
    outs, at = [], 0
    for i, c in enumerate(chunks):
        outs.append(run_cached(net, cache, _values(net, tokens[:, at : at + c]), static and i > 0))
        at += c
        assert cache.length == at and int(cache.position) == at
    return torch.cat([o.logits for o in outs], dim=1)


def _rel(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# Attention reads every cached row in a static step (the rows past the new ones masked), so its
# sums run over max_len instead of the length: float32 rounding differs in the last bits. Ops
# without such a reduction (splat, trajectory, conv1d, verifier) give exactly the same bits.
@pytest.mark.parametrize(("example", "exact"), [("tiny_gpt", False), ("splatflow", True)])
def test_static_steps_equal_host_length_steps(example, exact):
    net = _model(example)
    tokens = torch.randint(0, net.HYPER["vocab"], (2, 11))
    host, static = _steps(net, tokens, False), _steps(net, tokens, True)
    assert torch.equal(static, host) if exact else _rel(static, host) <= 1e-6


# Ops whose static step differs from their host-length step (device positions, masks).
STATIC_OPS = {
    "attention_rope": "attention(x, heads=4, kv_heads=2, rope=true)",
    "attention_basis": (
        "attention(x, heads=2, basis=basis(freqs=2, legendre=3, over=distance, max_len=32))"
    ),
    "fk_attention": "fk_attention(x, heads=2, hops=2, beta=0.4)",
    "sqdk": "sqdk_attention(x, token_router(x, noise=false).gate, heads=4, kv_heads=2, rope=true)",
    "trajectory": "trajectory(x, window=3)",
    "conv1d": "conv1d(x, kernel=4, causal=true)",
    "rope": "merge_heads(rope(split_heads(x, heads=2)))",
    "splat": "splat_attention(x, splats=3, heads=2)",
    "verifier": "linear(verifier_stack(x, stack=3).read, out=d)",
}
# The ops with a decode state, each run by a program above.
STATIC_COVERED = {
    "attention": "attention_rope",
    "fk_attention": "fk_attention",
    "sqdk_attention": "sqdk",
    "token_router": "sqdk",
    "trajectory": "trajectory",
    "conv1d": "conv1d",
    "splat_attention": "splat",
    "verifier_stack": "verifier",
}


def test_every_decode_rule_has_a_static_step_test():
    from sparkc.runtime.reference import DECODE

    assert set(DECODE) == set(STATIC_COVERED)
    assert all(
        STATIC_OPS[name].startswith(op) or op in STATIC_OPS[name]
        for op, name in STATIC_COVERED.items()
    )


@pytest.mark.parametrize("impl", ["reference", "triton"])
@pytest.mark.parametrize("name", sorted(STATIC_OPS))
def test_each_op_static_step_equals_host_length_step(name, impl):
    """On the Triton path the single steps run the decode kernels (the fused split-KV step of
    attention, sqdk_attention and every hop of fk_attention, the splat and verifier steps),
    reading the position from the device in a static step."""
    src = (
        "model M(vocab = 11, d = 16) {\n  input tokens: i64[B, N]\n"
        "  x = pos_embed(embed(tokens, vocab=vocab, dim=d), max_len=32)\n"
        f"  y = x + {STATIC_OPS[name]}\n  logits = linear(y, out=vocab)\n  output logits\n}}\n"
    )
    torch.manual_seed(3)
    net = sparkc.load_source(src, f"static_{name}.spark").Model(impl=impl).eval()
    tokens = torch.randint(0, 11, (3, 10))
    chunks = (2, 1, 2, 1, 1, 3)  # single steps before and after the stencils' window fills
    host = _steps(net, tokens, False, chunks=chunks, max_len=12)
    static = _steps(net, tokens, True, chunks=chunks, max_len=12)
    assert _rel(static, host) <= 1e-6
    if name in ("trajectory", "conv1d", "rope", "splat", "verifier"):
        assert torch.equal(static, host)


@pytest.mark.parametrize("example", sorted(TINY))
def test_static_steps_on_the_triton_path_read_the_length_on_device(example, monkeypatch):
    lengths = spy_decode_positions(monkeypatch)
    net = _model(example, "triton", **TINY[example])
    tokens = torch.randint(0, 13, (1, 5))
    host = _steps(net, tokens, False, chunks=(3, 1, 1), max_len=8)
    static = _steps(net, tokens, True, chunks=(3, 1, 1), max_len=8)
    assert _rel(static, host) <= 1e-6
    if example == "tiny_gpt":  # the single steps: host ints, then the cache's device tensor
        assert lengths[:2] == [3, 4] and all(isinstance(t, torch.Tensor) for t in lengths[2:])
        assert len(lengths) == 4
    else:
        assert lengths == []


def _to_meta(net, cache):
    net = net.to("meta")
    cache.states = [{k: v.to("meta") for k, v in st.items()} for st in cache.states]
    cache.position = cache.position.to("meta")
    cache.inputs = {k: v.to("meta") for k, v in cache.inputs.items()}
    cache.memo = {
        i: tuple(t.to("meta") if isinstance(t, torch.Tensor) else t for t in m)
        for i, m in cache.memo.items()
    }
    return net


@pytest.mark.parametrize("example", ["tiny_gpt", "splatflow", "spark_k", "hspmn", "procedural"])
def test_static_step_reads_no_tensor_value_on_the_host(example):
    """On the meta device every read of a value (`.item()`, `bool(t)`, `nonzero`) raises: the
    static step passes there, so a CUDA graph can capture it; the host-length step does not."""
    net = _model(example)
    extra = {}
    if "ops" in [s.name for s in net.INPUTS]:
        d = net.HYPER["d"]
        extra = {
            "ops": torch.randint(0, 9, (1, 4), dtype=torch.int32),
            "args": torch.randn(1, 4, d),
            "has_arg": torch.ones(1, 4, dtype=torch.bool),
        }
    cache = net.new_cache(1, 8)
    net(torch.randint(0, 13, (1, 3)), cache=cache, **extra)
    net = _to_meta(net, cache)
    values = [
        torch.zeros(1, 1, dtype=torch.long, device="meta")
        if s.name == "tokens"
        else cache.inputs.get(s.name)
        for s in net.INPUTS
    ]
    out = static_forward(net, cache, values)
    assert out.logits.shape[:2] == (1, 1) and out.logits.is_meta
    with pytest.raises((RuntimeError, NotImplementedError)), torch.no_grad():
        net._forward_reference(*values, _cache=cache)


class CpuGraphStep(dg.GraphStep):
    """`GraphStep` with the CUDA side emulated: the capture records the step without running
    it; each replay re-runs it with the host `length` frozen at its capture value (a real graph
    freezes every host value) and refills one static `ModelOutput`."""

    def _require_device(self, cache):
        pass

    def _warm(self, fn):
        return fn()

    captures = 0

    def _capture(self, fn):
        self.fn, self.frozen, self.replays = fn, self.cache.length, 0
        self.captures += 1
        self.static = ModelOutput()
        return self.static

    def _replay(self):
        live, self.cache.length = self.cache.length, self.frozen
        try:
            out = self.fn()
        finally:
            self.cache.length = live
        self.static.clear()
        self.static.update(out)
        self.replays += 1


@pytest.mark.parametrize("example", ["tiny_gpt", "splatflow"])
def test_graph_step_equals_eager_steps(example):
    net = _model(example)
    tokens = torch.randint(0, net.HYPER["vocab"], (2, 9))
    want = _steps(net, tokens, False, chunks=(3, 1, 1, 1, 1, 1, 1))
    cache = net.new_cache(2, 16)
    outs = [net(tokens[:, :3], cache=cache).logits]
    step = CpuGraphStep(net, cache)
    for t in range(3, 9):
        out = step(tokens[:, t : t + 1])
        outs.append(out.logits.clone())
        assert cache.length == t + 1 and int(cache.position) == t + 1
    assert step.replays == 5 and out is step.static
    got = torch.cat(outs, dim=1)
    assert torch.equal(got, want) if example == "splatflow" else _rel(got, want) <= 1e-6
    # The cache still takes ordinary cached calls afterwards.
    net(tokens[:, :1], cache=cache)
    assert cache.length == 10 and int(cache.position) == 10


def test_compiled_graph_step_equals_eager_steps():
    """`compile=`: the static step under torch.compile(fullgraph=True) (here the aot_eager
    backend: dynamo traces the whole step, no graph break; no C++ compiler needed)."""
    from torch._dynamo.utils import counters

    net = _model("tiny_gpt", d=32, layers=1, vocab=13)
    tokens = torch.randint(0, 13, (2, 7))
    want = _steps(net, tokens, False, chunks=(3, 1, 1, 1, 1))
    cache = net.new_cache(2, 16)
    outs = [net(tokens[:, :3], cache=cache).logits]
    step = CpuGraphStep(net, cache, compile="aot_eager")
    outs.append(step(tokens[:, 3:4]).logits.clone())  # the warm-up step compiles
    compiled = counters["stats"]["unique_graphs"]
    # The steps feed strided slices [2, 1] of `tokens`; the capture must not compile again (on
    # a GPU, compiling inside a capture fails: the H100 run of 2026-12-06, fourth session).
    outs += [step(tokens[:, t : t + 1]).logits.clone() for t in range(4, 7)]
    assert counters["stats"]["unique_graphs"] == compiled
    assert step.replays == 3 and _rel(torch.cat(outs, 1), want) <= 1e-6
    with pytest.raises(ValueError, match="compile must be"):
        CpuGraphStep(net, cache, compile=3)


def _tape(net, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "ops": torch.randint(0, 9, (1, 4), dtype=torch.int32, generator=g),
        "args": torch.randn(1, 4, net.HYPER["d"], generator=g),
        "has_arg": torch.rand(1, 4, generator=g) > 0.5,
    }


@pytest.mark.parametrize(("example", "captures"), [("tiny_gpt", 1), ("procedural", 2)])
def test_graph_step_goes_on_after_reset(example, captures):
    """After `reset()` and a new prefill the same step goes on; it captures again when the
    cache keeps per-sequence inputs (procedural's tape), which the new prefill replaced."""
    net = _model(example)
    tokens = torch.randint(0, 64, (1, 6))
    cache = net.new_cache(1, 8)
    step = CpuGraphStep(net, cache)
    want, got = [], []
    for seed in (1, 2):
        extra = _tape(net, seed) if example == "procedural" else {}
        fresh = net.new_cache(1, 8)
        net(tokens[:, :3], cache=fresh, **extra)
        want += [net(tokens[:, t : t + 1], cache=fresh).logits for t in range(3, 6)]
        cache.reset()
        net(tokens[:, :3], cache=cache, **extra)
        got += [step(tokens[:, t : t + 1]).logits.clone() for t in range(3, 6)]
    assert step.captures == captures
    assert _rel(torch.cat(got, 1), torch.cat(want, 1)) <= 1e-6


def test_graph_step_captures_again_when_a_parameter_is_replaced():
    net = _model("tiny_gpt", d=16, heads=2, layers=1, vocab=13)
    tokens = torch.randint(0, 13, (1, 6))
    cache = net.new_cache(1, 8)
    net(tokens[:, :3], cache=cache)
    step = CpuGraphStep(net, cache)
    step(tokens[:, 3:4])
    step(tokens[:, 4:5])
    old = net.logits.weight
    net.logits.weight = torch.nn.Parameter(old.detach() * 2)  # a new tensor, not in place
    got = step(tokens[:, 5:6]).logits.clone()
    assert step.captures == 2
    fresh = net.new_cache(1, 8)
    net(tokens[:, :5], cache=fresh)
    assert _rel(got, net(tokens[:, 5:6], cache=fresh).logits) <= 1e-6


def test_graph_step_refuses_misuse():
    net = _model("tiny_gpt")
    cache = net.new_cache(2, 5)
    with pytest.raises(ValueError, match="CUDA device"):
        dg.GraphStep(net, cache)
    with pytest.raises(ValueError, match="another model"):
        CpuGraphStep(_model("tiny_gpt"), cache)
    step = CpuGraphStep(net, cache)
    with pytest.raises(ValueError, match="prefill the cache first"):
        step(torch.zeros(2, 1, dtype=torch.long))
    net(torch.zeros(2, 4, dtype=torch.long), cache=cache)
    with pytest.raises(InputError, match=r"must be \[batch=2, 1\]"):
        step(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(InputError, match="integer token ids"):
        step(torch.zeros(2, 1))
    with pytest.raises(InputError, match=r"token ids \(vocab=64\) in \[0, 64\)"):
        step(torch.full((2, 1), 64))
    step(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(InputError, match="past the cache's max_len=5"):
        step(torch.zeros(2, 1, dtype=torch.long))
    cache.reset()
    with pytest.raises(ValueError, match="prefill the cache first"):
        step(torch.zeros(2, 1, dtype=torch.long))


def test_a_failed_capture_marks_the_cache(monkeypatch):
    net = _model("tiny_gpt", d=16, heads=2, layers=1, vocab=13)
    cache = net.new_cache(1, 8)
    net(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    step = CpuGraphStep(net, cache)
    step(torch.zeros(1, 1, dtype=torch.long))  # warm-up

    def fail(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(step, "_capture", fail)
    with pytest.raises(RuntimeError, match="capturing"):
        step(torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(RuntimeError, match=r"call cache.reset\(\) first"):
        step(torch.zeros(1, 1, dtype=torch.long))
    assert cache.length == 4


@pytest.fixture
def cpu_graphs(monkeypatch):
    """`generate(cuda_graph=True)` on the CPU with the emulated capture."""
    monkeypatch.setattr(gen, "graph_capable", lambda device: True)
    monkeypatch.setattr(dg, "GraphStep", CpuGraphStep)


@pytest.mark.parametrize("example", ["tiny_gpt", "splatflow"])
def test_generate_graph_loop_equals_plain_loop(example, cpu_graphs):
    net = _model(example)
    prompt = torch.randint(0, 64, (2, 3))
    for kw in ({"temperature": 0}, {"temperature": 1.3, "top_k": 20, "seed": 5}):
        plain = sparkc.generate(net, prompt, 7, **kw)
        graph = sparkc.generate(net, prompt, 7, cuda_graph=True, **kw)
        assert torch.equal(graph, plain)


def test_generate_graph_loop_cuts_at_stop_tokens(cpu_graphs, monkeypatch):
    """The graph loop reads the stop flags every STOP_EVERY tokens and cuts where every row had
    stopped: the plain loop's output."""
    monkeypatch.setattr(gen, "STOP_EVERY", 4)
    net = _model("tiny_gpt")
    free = sparkc.generate(net, [5, 6], 12, temperature=0)
    stop = int(free[0, 3])  # the second new token: the plain loop stops there
    plain = sparkc.generate(net, [5, 6], 12, temperature=0, stop_tokens=[stop])
    graph = sparkc.generate(net, [5, 6], 12, temperature=0, stop_tokens=[stop], cuda_graph=True)
    assert plain.shape[1] < free.shape[1] and torch.equal(graph, plain)


def test_generate_cuda_graph_on_the_cpu():
    net = _model("tiny_gpt")
    with pytest.raises(ValueError, match="needs the model on a CUDA device"):
        sparkc.generate(net, [1, 2], 3, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph must be"):
        sparkc.generate(net, [1, 2], 3, cuda_graph="yes")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sparkc.generate(net, [1, 2], 3, temperature=0, cuda_graph="auto")
    assert any("plain decode loop" in str(w.message) for w in caught)
    assert torch.equal(out, sparkc.generate(net, [1, 2], 3, temperature=0))


# ---- GPU (the lead runs these): real CUDA graphs.


# bfloat16 only where no routing decision can flip on a last-bit difference (hspmn's router).
GPU_CASES = [
    *(pytest.param(ex, torch.float32, id=f"{ex}-f32") for ex in ("tiny_gpt", "splatflow")),
    *(pytest.param(ex, torch.float32, id=f"{ex}-f32") for ex in ("spark_k", "hspmn")),
    *(pytest.param(ex, torch.bfloat16, id=f"{ex}-bf16") for ex in ("tiny_gpt", "splatflow")),
    pytest.param("spark_k", torch.bfloat16, id="spark_k-bf16"),
]


@pytest.mark.gpu
@pytest.mark.parametrize(("example", "dtype"), GPU_CASES)
def test_gpu_graph_replay_equals_eager_steps(example, dtype):
    net = _model(example, "auto").cuda().to(dtype)
    tokens = torch.randint(0, net.HYPER["vocab"], (2, 40), device="cuda")
    cache = net.new_cache(2, 48)
    want = [net(tokens[:, :8], cache=cache).logits]
    want += [net(tokens[:, t : t + 1], cache=cache).logits for t in range(8, 40)]
    cache.reset()
    got = [net(tokens[:, :8], cache=cache).logits]
    step = dg.GraphStep(net, cache)
    for t in range(8, 40):
        got.append(step(tokens[:, t : t + 1]).logits.clone())
    assert step.graph is not None and cache.length == 40 and int(cache.position) == 40
    got, want = torch.cat(got, 1).float(), torch.cat(want, 1).float()
    assert _rel(got, want) <= (1e-5 if dtype == torch.float32 else 2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("example", ["tiny_gpt", "splatflow"])
def test_gpu_compiled_graph_replay_equals_eager_steps(example):
    net = _model(example, "auto").cuda()
    tokens = torch.randint(0, net.HYPER["vocab"], (2, 24), device="cuda")
    cache = net.new_cache(2, 32)
    want = [net(tokens[:, :8], cache=cache).logits]
    want += [net(tokens[:, t : t + 1], cache=cache).logits for t in range(8, 24)]
    cache.reset()
    got = [net(tokens[:, :8], cache=cache).logits]
    step = dg.GraphStep(net, cache, compile=True)
    got += [step(tokens[:, t : t + 1]).logits.clone() for t in range(8, 24)]
    assert step.graph is not None
    assert _rel(torch.cat(got, 1), torch.cat(want, 1)) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("example", ["tiny_gpt", "splatflow"])
def test_gpu_generate_graph_equals_plain(example):
    net = _model(example, "auto").cuda()
    prompt = torch.randint(0, 64, (1, 5), device="cuda")
    plain = sparkc.generate(net, prompt, 40, temperature=0)
    graph = sparkc.generate(net, prompt, 40, temperature=0, cuda_graph=True)
    assert torch.equal(graph, plain)
    kw = {"temperature": 1.0, "top_k": 20, "seed": 3}
    assert torch.equal(
        sparkc.generate(net, prompt, 40, cuda_graph=True, **kw),
        sparkc.generate(net, prompt, 40, **kw),
    )
    compiled = sparkc.generate(net, prompt, 40, temperature=0, cuda_graph=True, compile_step=True)
    assert torch.equal(compiled, plain)


@pytest.mark.gpu
def test_gpu_graph_replay_does_not_sync():
    net = _model("tiny_gpt", "auto").cuda()
    cache = net.new_cache(1, 32)
    net(torch.zeros(1, 4, dtype=torch.long, device="cuda"), cache=cache)
    step = dg.GraphStep(net, cache)
    tok = torch.ones(1, 1, dtype=torch.long, device="cuda")
    step(tok)  # warm-up
    step(tok)  # capture + replay
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            step(tok, check=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert cache.length == 10
