"""SPEC §6 properties of every reference rule, over the op cases of `_opharness.CASES`:
coverage of the op table, parameter names/shapes consumed = the op table's ParamSpecs, output
shapes/dtypes = the shape rule's, eval determinism, causality (bit for bit), a non-zero gradient
for every parameter and float input, noise only in training and reproducible from a generator,
lower-precision dtypes preserved and close to float64.
"""

from __future__ import annotations

import pytest
import torch
from _opharness import CASES, Built, OpCase, build
from sparkc.runtime.reference import REFERENCE, RefContext

from sparkc.ir.ops import OPS
from sparkc.ir.types import DType

IDS = [c.id for c in CASES]


def test_every_op_has_a_reference_rule_and_a_case():
    expected = {name for name, spec in OPS.items() if spec.category != "config"}
    assert set(REFERENCE) == expected
    assert {c.op for c in CASES} == expected


class Recording(dict):
    """A params dict that remembers which names were read."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self:
            self.read.add(key)
        return super().get(key, default)


_TORCH_DTYPES = {DType.I32: torch.int32, DType.BOOL: torch.bool, DType.I64: torch.int64}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_params_and_outputs_match_the_op_table(case: OpCase):
    b = build(case)
    params = Recording(b.params)
    outs = REFERENCE[case.op](dict(b.inputs), params, dict(b.hp), RefContext())
    assert params.read == {p.name for p in b.inst.params}, "every ParamSpec consumed, no other"
    assert len(outs) == len(OPS[case.op].outputs) == len(b.inst.outputs)
    for out, ty in zip(outs, b.inst.outputs):
        assert tuple(out.shape) == tuple(ty.shape)
        assert out.dtype == _TORCH_DTYPES.get(ty.dtype, torch.float64)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eval_is_deterministic(case: OpCase):
    b = build(case)
    first, second = b.run(), b.run()
    for x, y in zip(first, second):
        assert torch.equal(x, y)


def _seq_ports(b: Built, n: int) -> list[str]:
    return [k for k, v in b.inputs.items() if v.dim() >= 2 and v.shape[1] == n]


def _perturb_after(b: Built, t: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Inputs equal to b.inputs at positions ≤ t and changed at every position > t."""
    n = b.case.shapes[next(iter(b.case.shapes))][1]
    new = dict(b.inputs)
    for port in _seq_ports(b, n):
        x = b.inputs[port].detach().clone()
        if x.is_floating_point():
            x[:, t + 1 :] = torch.randn(x[:, t + 1 :].shape, generator=g, dtype=x.dtype) * 3
            if b.case.op == "sqdk_attention" and port == "gate":
                x[:, t + 1 :] *= torch.rand(x[:, t + 1 :].shape, generator=g) < 0.5
        else:
            x[:, t + 1 :] = torch.randint(0, 3, x[:, t + 1 :].shape, generator=g).to(x.dtype)
        new[port] = x
    return new


def _seq_outputs(outs, n: int) -> list[torch.Tensor]:
    return [o for o in outs if o.dim() >= 2 and o.shape[1] == n]


MIXERS = [c for c in CASES if OPS[c.op].causal(dict(build(c, requires_grad=False).hp)) is not None]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("case", MIXERS, ids=[c.id for c in MIXERS])
def test_causality_bit_for_bit(case: OpCase, training: bool):
    b = build(case, requires_grad=False)
    causal = OPS[case.op].causal(dict(b.hp))
    n = case.shapes[next(iter(case.shapes))][1]
    g = torch.Generator().manual_seed(7)
    leaked = False
    for t in range(n - 1):
        base = b.run(training=training, generator=torch.Generator().manual_seed(3))
        pert = b.run(
            _perturb_after(b, t, g), training=training, generator=torch.Generator().manual_seed(3)
        )
        for x, y in zip(_seq_outputs(base, n), _seq_outputs(pert, n)):
            same = torch.equal(x[:, : t + 1], y[:, : t + 1])
            if causal:
                assert same, f"output at positions <= {t} depends on later inputs"
            leaked |= not same
    if not causal:
        assert leaked, "a non-causal op should let later inputs reach earlier outputs"


def _weights_for(outs, g: torch.Generator) -> torch.Tensor:
    loss = 0
    for o in outs:
        if o.is_floating_point() and o.requires_grad:
            loss = loss + (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum()
    return loss


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_parameter_and_float_input_gets_a_gradient(case: OpCase):
    b = build(case)
    if case.op == "lora_linear":
        with torch.no_grad():  # SPEC §6.4: after gen_b moved away from its zero init
            for name in ("gen_b.weight", "gen_b.bias"):
                b.params[name].add_(torch.randn(b.params[name].shape, dtype=torch.float64) * 0.1)
    training = OPS[case.op].noise(dict(b.hp))
    outs = b.run(training=training, generator=torch.Generator().manual_seed(0))
    _weights_for(outs, torch.Generator().manual_seed(1)).backward()
    for name in b.trainable():
        grad = b.params[name].grad
        assert grad is not None and grad.abs().sum() > 0, f"parameter {name} gets no gradient"
        assert torch.isfinite(grad).all()
    for name in b.float_inputs():
        grad = b.inputs[name].grad
        assert grad is not None and grad.abs().sum() > 0, f"input {name} gets no gradient"
    for spec in b.inst.params:
        if not spec.trainable:
            assert b.params[spec.name].grad is None


NOISY = [c for c in CASES if OPS[c.op].noise(dict(build(c, requires_grad=False).hp))]


@pytest.mark.parametrize("case", NOISY, ids=[c.id for c in NOISY])
def test_noise_only_in_training_and_reproducible(case: OpCase):
    b = build(case, requires_grad=False)
    ev = b.run()
    t1 = b.run(training=True, generator=torch.Generator().manual_seed(5))
    t2 = b.run(training=True, generator=torch.Generator().manual_seed(5))
    t3 = b.run(training=True, generator=torch.Generator().manual_seed(6))
    for x, y in zip(t1, t2):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(t1, t3)), "the seed must matter"
    assert any(not torch.equal(x, y) for x, y in zip(t1, ev)), "training must add noise"
    torch.manual_seed(11)
    g1 = b.run(training=True)
    torch.manual_seed(11)
    g2 = b.run(training=True)
    for x, y in zip(g1, g2):
        assert torch.equal(x, y), "global-RNG noise is reproducible under torch.manual_seed"


def test_noise_flag_off_means_no_noise_in_training():
    case = OpCase("token_router", {"x": (2, 6, 8)}, {"noise": False})
    b = build(case, requires_grad=False)
    for x, y in zip(b.run(), b.run(training=True)):
        assert torch.equal(x, y)


def _cast(d: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(dtype) if v.is_floating_point() else v for k, v in d.items()}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_and_bfloat16_keep_their_dtype_and_track_float64(case: OpCase):
    b = build(case, requires_grad=False)
    ref = b.run()
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 0.15)):
        outs = b.run(_cast(b.inputs, dtype), _cast(b.params, dtype))
        for o, r in zip(outs, ref):
            if not r.is_floating_point():
                if dtype == torch.float32:  # discrete outputs agree at float32 precision
                    assert torch.equal(o, r)
                continue
            assert o.dtype == dtype
            assert torch.isfinite(o).all()
            scale = r.abs().max().clamp(min=1.0)
            assert (o.double() - r).abs().max() <= tol * scale
