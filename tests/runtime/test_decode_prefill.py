"""The generated prefill (`_forward_triton` given the cache, runtime/decode.py `prefills`): a cache's first call
on the Triton path in eval mode runs the full forward's kernels, each sequence mixer's decoding
state filled from the tensors its kernels computed (codegen `Emitter.fill`, runtime
`DECODE_FILLS`), or, for a mixer without a fill, its cached step rule in place of its kernels.

Checked: the prompt's outputs are the full forward's on the same rows bit for bit; the state the
fills leave is the one the step rules leave (the later single steps match the full forward
within 1e-5 and the state tensors match the reference path's); which body runs when; every op
with a fill has a codegen rule that records one, and the rest run their step rules. Triton
kernels run under the interpreter here (tiny shapes)."""

from __future__ import annotations

import pytest
import torch
from sparkc.runtime import decode as dc
from sparkc.runtime.reference import DECODE, DECODE_FILLS
from test_decode import OP_PROGRAMS, ROOT, TINY, _decode, _extra, _op_model, _rel

import sparkc
from sparkc.api import compile_files, compile_graph

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _pair(mod, **hyper):
    torch.manual_seed(0)
    ref = mod.Model(impl="reference", **hyper).eval()
    net = mod.Model(impl="triton", **hyper).eval()
    net.load_state_dict(ref.state_dict())
    return ref.to(DEVICE), net.to(DEVICE)


def _spy(monkeypatch) -> list[str]:
    """Which generated body each cached call ran: 'prefill' or 'cached'."""
    ran: list[str] = []
    real = dc.prefills

    def spy(model, cache):
        used = real(model, cache)
        ran.append("prefill" if used else "cached")
        return used

    monkeypatch.setattr(dc, "prefills", spy)
    return ran


@pytest.mark.parametrize("example", sorted(TINY))
def test_prefill_is_the_full_forward_and_leaves_the_step_rules_state(example, monkeypatch):
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    ref, net = _pair(mod, **TINY[example])
    ran = _spy(monkeypatch)
    tokens = torch.randint(0, 13, (2, 7), device=DEVICE)
    extra = {k: v.to(DEVICE) for k, v in _extra(net, 2, t=3).items()}
    with torch.no_grad():
        prompt = net(tokens[:, :4], **extra).logits
        full = net(tokens, **extra).logits
    cache, ref_cache = net.new_cache(2, 8), ref.new_cache(2, 8)
    got = _decode(net, tokens, cache, extra, chunks=(4, 1, 2))
    assert ran == ["prefill", "cached", "cached"]
    assert torch.equal(got[:, :4], prompt)  # the same kernels on the same rows
    assert _rel(got, full) <= 1e-5
    ref(tokens[:, :4], cache=ref_cache, **extra)  # the reference path's cached rules
    ran.clear()
    fresh = net.new_cache(2, 8)
    net(tokens[:, :4], cache=fresh, **extra)
    assert ran == ["prefill"]
    for name, t in fresh.tensors().items():
        want = ref_cache.tensors()[name]
        assert _rel(t, want) <= 1e-5 if want.abs().max() > 0 else torch.equal(t, want), name


@pytest.mark.parametrize("name", sorted(OP_PROGRAMS))
def test_each_causal_op_prefill_then_steps_equal_the_full_forward(name):
    mod = sparkc.load_source(_op_model(OP_PROGRAMS[name]), f"prefill_{name}.spark")
    ref, net = _pair(mod)
    tokens = torch.randint(0, 11, (3, 9), device=DEVICE)
    with torch.no_grad():
        full = ref(tokens).logits
    got = _decode(net, tokens, net.new_cache(3, 12), {}, chunks=(5, 1, 2, 1))
    assert _rel(got, full) <= 1e-5


def test_prefill_runs_only_on_a_fresh_cache_in_eval_mode_on_the_triton_path(monkeypatch):
    mod = sparkc.load(ROOT / "examples" / "tiny_gpt.spark")
    ref, net = _pair(mod, **TINY["tiny_gpt"])
    ran = _spy(monkeypatch)
    tokens = torch.randint(0, 13, (1, 6), device=DEVICE)
    cache = net.new_cache(1, 8)
    _decode(net, tokens, cache, {}, chunks=(3, 2))  # a later prompt chunk: the cached rules
    cache.reset()
    net(tokens[:, :2], cache=cache)  # after a reset: a first call again
    assert ran == ["prefill", "cached", "prefill"]
    ran.clear()
    ref(tokens[:, :3], cache=ref.new_cache(1, 8))  # the reference path has no prefill body
    net.train()
    net(tokens[:, :3], cache=net.new_cache(1, 8))  # training mode: noise is not replayed
    assert ran == ["cached", "cached"]


def _prefill_source(expr: str) -> str:
    files = compile_files(_op_model(expr), "prefill_src.spark")
    text = files["__init__.py"]
    return text[text.index("def _forward_triton") :]


def test_every_mixer_is_filled_by_its_codegen_rule():
    """Codegen and runtime agree: every op with a decoding state has a codegen rule that records
    a fill (`Emitter.fill`) and a runtime fill (`DECODE_FILLS`); `token_router` keeps nothing."""
    covered = set()
    for expr in OP_PROGRAMS.values():
        body = _prefill_source(expr)
        for op in DECODE:
            assert f'_DEC["{op}"]' not in body, op  # no mixer falls back to its step rule
            if f'_FILL["{op}"]' in body:
                assert op in DECODE_FILLS, op
                covered.add(op)
    assert covered == set(DECODE_FILLS) == set(DECODE) - {"token_router"}


def _lines(units) -> str:
    return "\n".join(line for _, lines in units for line in lines)


def test_a_mixer_without_a_fill_runs_its_step_rule_in_the_prefill():
    """The fallback for a mixer whose rule records no fill: its group's nodes run their cached
    units (the step rule fills the state), the other groups their kernels."""
    from sparkc.codegen.decode import decode_context
    from sparkc.codegen.module import name_values
    from sparkc.codegen.triton_plan import triton_units

    graph = compile_graph(_op_model(OP_PROGRAMS["fk_attention"]), "prefill_fallback.spark")
    names = name_values(graph)
    units, _, _, emitter = triton_units(graph, names)
    whole = _lines(decode_context(graph, names, units, emitter)["triton_units"])
    whole = whole.replace("'", '"')  # as the formatted module writes it
    assert '_FILL["fk_attention"]' in whole and "_prefill(" in whole
    (fk,) = [n for n in graph.topo_order() if n.op == "fk_attention"]
    del emitter.fills[fk.id]
    body = _lines(decode_context(graph, names, units, emitter)["triton_units"])
    body = body.replace("'", '"')
    assert '_DEC["fk_attention"]' in body and '_FILL["fk_attention"]' not in body
    assert "_prefill(" not in body and "_k.emb" in body  # the other groups keep their kernels
