"""Run-time input checks of generated modules (runtime/checks.py and the compiler's RULES table):
every SPEC run-time rule raises the same `InputError` on the reference path and on the Triton
path (interpreter), naming the model input, the op instance that needs the rule and the
expected shape or range: before any reference op runs, and on the Triton path before the call
returns (value rules are read after the kernels are queued, so the check does not stall the
GPU's queue; the kernels never read out of bounds meanwhile); float inputs of another precision
are cast to the parameters' dtype on both paths; inputs must be on the parameters' device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sparkc.runtime import checks
from sparkc.runtime.module_support import InputError

import sparkc

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples" / "tiny_gpt.spark"

BASIS = """
model BasisAttn(vocab = 16, d = 8) {
  input tokens: i64[B, N]
  x = embed(tokens, vocab=vocab, dim=d)
  y = x + attention(x, heads=2, basis=basis(freqs=1, legendre=2, over=distance, max_len=6))
  output y
}
"""

TAPE = """
model Tape(d = 4) {
  input ops: i32[B, T]
  input args: float[B, T, d]
  input has_arg: bool[B, T]
  top, depth, status, steps, _, _ = opcode_tape(ops, args, has_arg, budget=8, capacity=4)
  y = linear(top, out=3)
  output y
}
"""

HASH = """
model Hash(d = 8) {
  input tokens: i64[B, N]
  input x: float[B, N, d]
  y = routed_mlp(x, hidden=16, groups=4, active=1, route=hash, tokens=tokens)
  output y
}
"""

LINEAR = """
model Lin(d = 8) {
  input x: float[B, N, d]
  y = linear(x, out=4)
  output y
}
"""


@pytest.fixture(scope="module")
def tiny():
    return sparkc.load(TINY, vocab=16, d=8, heads=2, layers=1, max_len=8)


def _both(module, *args) -> str:
    """The InputError message of both paths, asserted equal."""
    messages = []
    for impl in ("reference", "triton"):
        torch.manual_seed(0)
        net = module.Model(impl=impl)
        with pytest.raises(InputError) as e:
            net(*args)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    return messages[0]


def test_tokens_longer_than_max_len_name_the_input_and_pos_embed(tiny):
    msg = _both(tiny, torch.zeros(1, 9, dtype=torch.long))
    assert "input 'tokens' has 9 positions" in msg
    assert "max_len=8 of pos_embed 'pos'" in msg and "N <= 8" in msg


def test_attention_basis_length_is_checked_on_both_paths():
    # SPEC §5.5: N > max_len is a runtime error; the Triton path returned finite garbage.
    module = sparkc.load_source(BASIS, "basis_attn.spark")
    msg = _both(module, torch.zeros(2, 7, dtype=torch.long))
    assert "input 'tokens' has 7 positions" in msg
    assert "max_len=6 of attention 'y_attention'" in msg
    # At the limit both paths run and agree.
    tokens = torch.randint(0, 16, (2, 6))
    ref = module.Model(impl="reference").eval()
    tri = module.Model(impl="triton").eval()
    tri.load_state_dict(ref.state_dict())
    torch.testing.assert_close(tri(tokens).y, ref(tokens).y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [16, -1])
def test_token_ids_outside_vocab(tiny, bad):
    tokens = torch.tensor([[1, 2, bad]])
    msg = _both(tiny, tokens)
    assert f"input 'tokens' holds {bad} at index [0, 2]" in msg
    assert "embed 'tok' needs token ids (vocab=16) in [0, 16)" in msg


@pytest.mark.parametrize("bad", [16, 99, -1])
def test_targets_outside_the_vocabulary(tiny, bad):
    tokens = torch.tensor([[1, 2, 3]])
    msg = _both(tiny, tokens, torch.tensor([[4, bad, 5]]))
    assert f"input 'targets' holds {bad} at index [0, 1]" in msg
    assert "cross_entropy 'ce' needs targets (V=16) in [0, 16) or ignore_index=-100" in msg


def test_ignore_index_targets_pass(tiny):
    net = tiny.Model(impl="reference")
    out = net(torch.tensor([[1, 2, 3]]), torch.tensor([[-100, 4, -100]]))
    assert torch.isfinite(out.loss)


def test_opcodes_outside_the_set():
    module = sparkc.load_source(TAPE, "tape.spark")
    ops = torch.tensor([[0, 1, 9, -1]], dtype=torch.int32)
    args = torch.randn(1, 4, 4)
    has = torch.ones(1, 4, dtype=torch.bool)
    msg = _both(module, ops, args, has)
    assert "input 'ops' holds 9 at index [0, 2]" in msg
    assert "opcode_tape 'top' needs opcodes (-1 ends the tape) in [-1, 9)" in msg
    msg = _both(module, ops.clamp(max=8) - 2, args, has)
    assert "input 'ops' holds -2 at index [0, 0]" in msg


def test_hash_routing_ids_must_be_non_negative():
    module = sparkc.load_source(HASH, "hash.spark")
    msg = _both(module, torch.tensor([[3, -4]]), torch.randn(1, 2, 8))
    assert "input 'tokens' holds -4 at index [0, 1]" in msg
    assert "routed_mlp 'y' needs token ids (hash routing) in >= 0" in msg


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_float_inputs_of_another_precision_are_cast_to_the_parameters_dtype(dtype):
    # The reference path crashed with "mat1 and mat2 must have the same dtype".
    module = sparkc.load_source(LINEAR, "lin.spark")
    x = torch.randn(2, 3, 8)
    for impl in ("reference", "triton"):
        torch.manual_seed(0)
        net = module.Model(impl=impl)
        y = net(x.to(dtype)).y
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, net(x.to(dtype).float()).y)


def test_a_tape_with_double_arguments_runs_on_both_paths():
    module = sparkc.load_source(TAPE, "tape.spark")
    ops = torch.tensor([[0, 1, -1, -1]], dtype=torch.int32)
    args = torch.randn(1, 4, 4, dtype=torch.float64)
    has = torch.ones(1, 4, dtype=torch.bool)
    ys = []
    for impl in ("reference", "triton"):
        torch.manual_seed(0)
        ys.append(module.Model(impl=impl)(ops, args, has).y)
    assert ys[0].dtype == torch.float32
    torch.testing.assert_close(ys[0], ys[1])


def test_inputs_must_be_on_the_parameters_device():
    module = sparkc.load_source(LINEAR, "lin.spark")
    net = module.Model(impl="reference")
    with pytest.raises(
        InputError, match=r"input 'x' is on meta but the model's parameters are on cpu"
    ):
        net(torch.empty(2, 3, 8, device="meta"))


def test_value_checks_can_be_switched_off_and_kernels_stay_in_bounds(tiny, monkeypatch):
    """With $SPARKC_CHECK_VALUES=0 no value is checked at the inputs; the Triton path's kernels
    still never read out of bounds: an id outside the vocabulary gives a zero row and a device
    flag, a target outside [0, V) a NaN loss (a flag, never a neighbour's logit)."""
    monkeypatch.setenv("SPARKC_CHECK_VALUES", "0")
    assert not checks.value_checks_enabled()
    torch.manual_seed(0)
    net = tiny.Model(impl="triton")
    out = net(torch.tensor([[1, 2, 3]]), torch.tensor([[4, 16, 5]]))
    assert torch.isnan(out.loss)
    # Shape rules are host-side and stay on.
    with pytest.raises(InputError, match="max_len=8 of pos_embed 'pos'"):
        net(torch.zeros(1, 9, dtype=torch.long))


def test_rule_table_traces_ops_to_model_inputs(tiny):
    kinds = {(r["kind"], r.get("input"), r["op"], r["instance"]) for r in tiny.RULES}
    assert kinds == {
        ("range", "tokens", "embed", "tok"),
        ("max_len", None, "pos_embed", "pos"),
        ("range", "targets", "cross_entropy", "ce"),
    }
    (rule,) = [r for r in tiny.RULES if r["kind"] == "max_len"]
    assert rule["dim"] == "N" and rule["inputs"] == (("tokens", 1), ("targets", 1))


def test_a_fixed_length_over_max_len_names_the_op():
    rule = {"kind": "max_len", "dim": 80, "max_len": 64, "inputs": (), "op": "pos_embed"}
    spec = checks.InputSpec("tokens", "i64", ("B", 80))
    with pytest.raises(InputError, match="pos_embed 'p' takes at most max_len=64 positions"):
        checks.check_inputs(
            [spec], [torch.zeros(1, 80, dtype=torch.long)], [{**rule, "instance": "p"}]
        )


def test_one_synchronisation_checks_every_value_rule(monkeypatch):
    """All value rules share one device-to-host transfer (a `.tolist()` of the stacked flags)."""
    calls = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: calls.append(1) or real(t))
    rules = [
        {
            "kind": "range",
            "input": n,
            "op": "embed",
            "instance": n,
            "what": "ids",
            "low": 0,
            "high": 10,
            "allow": None,
            "allow_name": None,
        }
        for n in ("a", "b")
    ]
    specs = [checks.InputSpec("a", "i64", ("B",)), checks.InputSpec("b", "i64", ("B",))]
    checks.check_inputs(specs, [torch.tensor([1, 2]), torch.tensor([3, 4])], rules)
    assert len(calls) == 1


DEMOPACK = """
model Packed(d = 8) {
  input x: float[B, N, d]
  y = demopack_linear(x, out=6, codewords=5, per_row=2, seed=0)
  output y
}
"""


def test_a_corrupt_demopack_index_table_raises_the_same_error_on_both_paths():
    module = sparkc.load_source(DEMOPACK, "packed.spark")
    messages = []
    for impl in ("reference", "triton"):
        net = module.Model(impl=impl)
        net.get_buffer("y.index")[2, 1] = 5
        with pytest.raises(InputError) as e:
            net(torch.randn(1, 3, 8))
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "index table holds ids outside [0, 5)" in messages[0]


def _order(net, monkeypatch) -> list[str]:
    """Record, in order, the forward bodies run and the value checks read."""
    seen: list[str] = []
    real_error = checks.ValueCheck.error
    monkeypatch.setattr(checks.ValueCheck, "error", lambda c: seen.append("check") or real_error(c))
    for body in ("_forward_triton", "_forward_reference"):
        real = getattr(net, body)
        monkeypatch.setattr(net, body, lambda *a, _r=real, _b=body: seen.append(_b) or _r(*a))
    return seen


def test_value_rules_are_read_after_the_triton_path_is_queued(tiny, monkeypatch):
    tokens, targets = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6]])
    torch.manual_seed(0)
    net = tiny.Model(impl="triton")
    seen = _order(net, monkeypatch)
    net(tokens, targets)
    assert seen == ["_forward_triton", "check"]
    # A bad id: the kernels ran on it (in bounds), the error comes before anything returns.
    seen.clear()
    with pytest.raises(InputError, match="input 'targets' holds 16"):
        net(tokens, torch.tensor([[4, 16, 6]]))
    assert seen == ["_forward_triton", "check"]
    # The reference path, and any call under torch.compile, checks first.
    ref = tiny.Model(impl="reference")
    seen = _order(ref, monkeypatch)
    ref(tokens, targets)
    assert seen == ["check", "_forward_reference"]
    seen = _order(net, monkeypatch)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    net(tokens, targets)
    assert seen == ["check", "_forward_triton"]


def test_an_input_error_explains_a_failing_triton_path_first(tiny, monkeypatch):
    torch.manual_seed(0)
    net = tiny.Model(impl="triton")

    def fail(*args):
        raise RuntimeError("a kernel failed")

    monkeypatch.setattr(net, "_forward_triton", fail)
    with pytest.raises(InputError, match="input 'tokens' holds 99") as e:
        net(torch.tensor([[1, 99, 3]]))
    assert e.value.__cause__ is None and e.value.__suppress_context__
    with pytest.raises(RuntimeError, match="a kernel failed"):
        net(torch.tensor([[1, 2, 3]]))


@pytest.mark.gpu
def test_on_cuda_the_value_check_waits_on_an_event_after_the_kernels(tiny, monkeypatch):
    """On a CUDA device the rules' results travel to pinned memory behind an event, read after
    the Triton path is queued; a bad id still raises the reference path's InputError."""
    made: list[checks.ValueCheck] = []
    real_init = checks.ValueCheck.__init__

    def spy(self, *args):
        real_init(self, *args)
        made.append(self)

    monkeypatch.setattr(checks.ValueCheck, "__init__", spy)
    torch.manual_seed(0)
    net = tiny.Model(impl="triton").cuda()
    seen = _order(net, monkeypatch)
    tokens = torch.tensor([[1, 2, 3]], device="cuda")
    out = net(tokens, torch.tensor([[4, 5, 6]], device="cuda"))
    assert torch.isfinite(out.loss) and seen == ["_forward_triton", "check"]
    assert made[-1].event is not None and made[-1].host.is_pinned()
    with pytest.raises(InputError, match="input 'targets' holds 16 at index \\[0, 1\\]"):
        net(tokens, torch.tensor([[4, 16, 6]], device="cuda"))
