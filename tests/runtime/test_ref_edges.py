"""Edge cases (SPEC §6.5) and runtime errors of the reference rules: N = 1, huge and tiny inputs,
no routed token / one routed token, an empty verifier stack, a tape of only −1, and the
`ValueError`s for bad ids, lengths and opcodes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _opharness import CASES, OpCase, build

IDS = [c.id for c in CASES]


def _with_length(case: OpCase, n: int) -> OpCase:
    """The case with every sequence axis (axis 1 of the [B, N, ...] ports) set to n."""
    seq = case.shapes[next(iter(case.shapes))][1]
    shapes = {
        k: (s[:1] + (n,) + s[2:]) if len(s) >= 2 and s[1] == seq else s
        for k, s in case.shapes.items()
    }
    return dataclasses.replace(case, shapes=shapes, label=f"{case.label}-n{n}")


def _check_finite_forward_backward(b, inputs=None, training=False):
    outs = b.run(inputs, training=training, generator=torch.Generator().manual_seed(0))
    loss = 0
    for o in outs:
        if o.is_floating_point():
            assert torch.isfinite(o).all()
            if o.requires_grad:
                loss = loss + o.sum()
    if torch.is_tensor(loss) and loss.requires_grad:
        loss.backward()
        for t in list(b.params.values()) + list((inputs or b.inputs).values()):
            if t.grad is not None:
                assert torch.isfinite(t.grad).all()
    return outs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_length_one_is_finite(case: OpCase):
    one = _with_length(case, 1)
    _check_finite_forward_backward(build(one))
    _check_finite_forward_backward(build(one), training=True)


@pytest.mark.parametrize("scale", [1e4, 1e-6])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_huge_and_tiny_inputs_are_finite(case: OpCase, scale: float):
    b = build(case)
    inputs = {
        k: (v.detach() * scale).requires_grad_(True) if v.is_floating_point() else v
        for k, v in b.inputs.items()
    }
    if case.op == "div":  # keep the divisor away from 0 at every scale
        inputs["b"] = (inputs["b"].detach().abs() + scale).requires_grad_(True)
    _check_finite_forward_backward(b, inputs)


def test_large_logits_in_softmax_and_cross_entropy():
    ce = build(OpCase("cross_entropy", {"logits": (2, 3, 5), "targets": (2, 3)}))
    logits = torch.tensor([1e4, -1e4, 0.0, 3e4, -3e4], dtype=torch.float64).repeat(2, 3, 1)
    logits.requires_grad_(True)
    (loss,) = ce.run({"logits": logits, "targets": torch.ones(2, 3, dtype=torch.long)})
    assert loss.item() == pytest.approx(4e4)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    sm = build(OpCase("softmax", {"x": (1, 1, 5)}))
    (y,) = sm.run({"x": logits[:1, :1].detach()})
    assert torch.equal(y[0, 0], torch.tensor([0, 0, 0, 1.0, 0], dtype=torch.float64))


def test_sqdk_no_routed_token_gives_zeros_and_zero_gradients():
    b = build(OpCase("sqdk_attention", {"x": (2, 4, 8), "gate": (2, 4)}, {"heads": 2}))
    gate = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    x = b.inputs["x"]
    (y,) = b.run({"x": x, "gate": gate})
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(
        gate.grad, torch.zeros(2, 4, dtype=torch.float64)
    )


def test_sqdk_one_routed_token_touches_only_its_row():
    b = build(OpCase("sqdk_attention", {"x": (1, 5, 8), "gate": (1, 5)}, {"heads": 2}))
    gate = torch.zeros(1, 5, dtype=torch.float64)
    gate[0, 3] = 0.7
    gate.requires_grad_(True)
    (y,) = b.run({"x": b.inputs["x"], "gate": gate})
    assert (y[0, 3] != 0).any()
    assert torch.equal(y[0, [0, 1, 2, 4]], torch.zeros(4, 8, dtype=torch.float64))
    y.sum().backward()
    x_grad = b.inputs["x"].grad[0]
    assert (x_grad[:4] != 0).any(dim=-1).all() and torch.equal(
        x_grad[4], torch.zeros(8, dtype=torch.float64)
    )
    assert gate.grad[0, 3] != 0 and (gate.grad[0, [0, 1, 2, 4]] == 0).all()


def test_verifier_stack_empty_stack_pops_are_penalised_and_finite():
    b = build(OpCase("verifier_stack", {"h": (2, 6, 8)}, {"stack": 4}))
    with torch.no_grad():
        b.params["ctrl2.bias"].copy_(torch.tensor([-30.0, 30.0, 0.0], dtype=torch.float64))
    read, _signals, pointer, loss = _check_finite_forward_backward(b)
    assert torch.equal(pointer, torch.zeros_like(pointer))
    assert loss.item() == pytest.approx(1.0)  # pop ≈ 1 at p = 0 on every step
    assert read.abs().max() < 1e-10  # nothing was ever pushed


def test_verifier_stack_overflow_is_penalised_and_pointer_clamped():
    b = build(OpCase("verifier_stack", {"h": (1, 7, 8)}, {"stack": 3, "penalty": 1.0}))
    with torch.no_grad():
        b.params["ctrl2.bias"].copy_(torch.tensor([30.0, -30.0, 0.0], dtype=torch.float64))
    _, _, pointer, loss = b.run()
    torch.testing.assert_close(
        pointer[0], torch.tensor([1, 2, 2, 2, 2, 2, 2.0], dtype=torch.float64)
    )
    # under: pop ≈ 0; over: push·relu(p_{t−1} − 1) = 0, 0, 1, 1, 1, 1, 1 -> mean 5/7
    assert loss.item() == pytest.approx(5 / 7, abs=1e-9)


def test_tape_of_only_end_markers():
    b = build(OpCase("opcode_tape", {"ops": (2, 4), "args": (2, 4, 3), "has_arg": (2, 4)}))
    ops = torch.full((2, 4), -1, dtype=torch.int32)
    top, depth, status, steps, checks, trace = b.run(
        {"ops": ops, "args": b.inputs["args"], "has_arg": b.inputs["has_arg"]}
    )
    assert torch.equal(top, torch.zeros(2, 3, dtype=torch.float64))
    assert depth.tolist() == status.tolist() == steps.tolist() == [0, 0]
    assert torch.equal(checks, torch.zeros(2, 4, 3, dtype=torch.float64))
    assert (trace == -1).all() and trace.dtype == torch.int32


def test_tape_zero_length():
    b = build(OpCase("opcode_tape", {"ops": (2, 0), "args": (2, 0, 3), "has_arg": (2, 0)}))
    top, depth, _status, _steps, checks, trace = b.run()
    assert top.shape == (2, 3) and checks.shape == (2, 0, 3) and trace.shape == (2, 0)
    assert depth.tolist() == [0, 0]


# Runtime errors -----------------------------------------------------------------------------


def test_embed_out_of_range_is_a_value_error():
    b = build(OpCase("embed", {"tokens": (1, 3)}, {"vocab": 5, "dim": 4}))
    with pytest.raises(ValueError, match=r"token id 5 in input 'tokens' is outside \[0, 5\)"):
        b.run({"tokens": torch.tensor([[0, 5, 1]])})
    with pytest.raises(ValueError, match="token id -1"):
        b.run({"tokens": torch.tensor([[0, -1, 1]])})


def test_too_long_for_max_len_is_a_value_error():
    b = build(OpCase("pos_embed", {"x": (1, 4, 4)}, {"max_len": 4}))
    b.run()  # N = max_len is fine
    with pytest.raises(ValueError, match="pos_embed: input 'x' has 4 positions.*max_len=4"):
        b.run(position_offset=1)
    spec = {"freqs": 1, "legendre": 1, "over": "key", "max_len": 3}
    a = build(OpCase("attention", {"x": (1, 4, 4)}, {"heads": 1, "basis": spec}))
    with pytest.raises(ValueError, match="attention: input 'x' has 4 positions.*max_len=3"):
        a.run()


def test_bad_opcode_is_a_value_error():
    b = build(OpCase("opcode_tape", {"ops": (1, 3), "args": (1, 3, 2), "has_arg": (1, 3)}))
    with pytest.raises(ValueError, match=r"opcode 9 at index \[0, 2\]"):
        b.run(
            {
                "ops": torch.tensor([[0, 1, 9]], dtype=torch.int32),
                "args": b.inputs["args"],
                "has_arg": b.inputs["has_arg"],
            }
        )
    with pytest.raises(ValueError, match="opcode -2"):
        b.run(
            {
                "ops": torch.tensor([[-2, 1, 0]], dtype=torch.int32),
                "args": b.inputs["args"],
                "has_arg": b.inputs["has_arg"],
            }
        )


def test_hash_route_errors():
    case = OpCase(
        "routed_mlp",
        {"x": (1, 3, 8), "tokens": (1, 3)},
        {"hidden": 8, "groups": 2, "active": 1, "route": "hash"},
    )
    b = build(case)
    with pytest.raises(ValueError, match="negative id -4"):
        b.run({"x": b.inputs["x"], "tokens": torch.tensor([[1, -4, 2]])})
    with pytest.raises(ValueError, match="needs the input 'tokens'"):
        b.run({"x": b.inputs["x"]})


def test_cross_entropy_bad_target_is_a_value_error():
    b = build(OpCase("cross_entropy", {"logits": (1, 2, 3), "targets": (1, 2)}))
    with pytest.raises(ValueError, match="target 3 in input 'targets'"):
        b.run({"logits": b.inputs["logits"], "targets": torch.tensor([[0, 3]])})


def test_trajectory_repeated_token_has_finite_gradient():
    b = build(OpCase("trajectory", {"x": (1, 5, 4)}, {"window": 3}))
    x = b.inputs["x"].detach().clone()
    x[:, 2] = x[:, 1]  # a zero step: ‖δ‖ = 0 is clamped to 1e-8, δ = 0
    x.requires_grad_(True)
    (y,) = b.run({"x": x})
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(b.params["strength"].grad)
