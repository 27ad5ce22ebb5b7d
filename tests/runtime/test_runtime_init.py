"""`sparkc.runtime.init.init_tensor` against torch's own initialisers and SPEC §5.3."""

from __future__ import annotations

import math

import pytest
import torch
from sparkc.runtime.init import INIT_KINDS, init_tensor

from sparkc.ir.ops import Init, ParamSpec, instantiate
from sparkc.ir.types import DType, TensorType


def test_linear_init_is_bit_identical_to_nn_linear():
    torch.manual_seed(3)
    ref = torch.nn.Linear(7, 5)
    inst = instantiate("linear", {"x": TensorType(DType.FLOAT, (2, 7))}, {"out": 5})
    torch.manual_seed(3)
    made = {s.name: init_tensor(s) for s in inst.params}
    assert torch.equal(made["weight"], ref.weight.detach())
    assert torch.equal(made["bias"], ref.bias.detach())


def test_conv1d_init_is_bit_identical_to_depthwise_nn_conv1d():
    torch.manual_seed(4)
    ref = torch.nn.Conv1d(6, 6, 3, groups=6)
    inst = instantiate("conv1d", {"x": TensorType(DType.FLOAT, (1, 4, 6))}, {})
    torch.manual_seed(4)
    made = {s.name: init_tensor(s) for s in inst.params}
    assert torch.equal(made["weight"], ref.weight.detach())
    assert torch.equal(made["bias"], ref.bias.detach())


def test_randint_index_is_spec_5_3_exactly_and_ignores_the_global_rng():
    spec = ParamSpec("index", (6, 4), Init("randint", (256, 17)), trainable=False, dtype=DType.I64)
    torch.manual_seed(0)
    a = init_tensor(spec)
    torch.manual_seed(99)
    b = init_tensor(spec)
    expected = torch.randint(0, 256, (6, 4), generator=torch.Generator().manual_seed(17))
    assert a.dtype == torch.int64 and torch.equal(a, expected) and torch.equal(b, expected)


def test_normal_trunc_normal_and_constants():
    torch.manual_seed(0)
    n = init_tensor(ParamSpec("w", (4000,), Init("normal", (0.02,))), dtype=torch.float64)
    assert n.std().item() == pytest.approx(0.02, rel=0.05) and abs(n.mean().item()) < 2e-3
    t = init_tensor(ParamSpec("c", (4000,), Init("trunc_normal", (0.02, 0.04))))
    assert t.abs().max() <= 0.04 and t.std().item() == pytest.approx(0.02 * 0.88, rel=0.06)
    assert torch.equal(init_tensor(ParamSpec("s", (), Init("const", (0.2,)))), torch.tensor(0.2))
    assert torch.equal(init_tensor(ParamSpec("o", (3,), Init("ones"))), torch.ones(3))
    assert torch.equal(init_tensor(ParamSpec("z", (2, 2), Init("zeros"))), torch.zeros(2, 2))
    half = init_tensor(
        ParamSpec("l", (2, 3), Init("const", (0.5 * math.log(4),))), dtype=torch.float64
    )
    assert torch.equal(half, torch.full((2, 3), math.log(2), dtype=torch.float64))


def test_generator_and_global_rng_reproducibility():
    spec = ParamSpec("w", (5, 3), Init("linear_weight"), fan_in=3)
    a = init_tensor(spec, torch.Generator().manual_seed(1))
    b = init_tensor(spec, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.abs().max() <= 1 / math.sqrt(3)
    torch.manual_seed(5)
    c = init_tensor(spec)
    torch.manual_seed(5)
    assert torch.equal(c, init_tensor(spec))


def test_every_init_kind_used_by_the_op_table_is_known():
    from _opharness import CASES, input_types

    used = {
        p.init.kind for c in CASES for p in instantiate(c.op, input_types(c), dict(c.hp)).params
    }
    assert used <= set(INIT_KINDS)
    assert {"linear_weight", "linear_bias", "normal", "trunc_normal", "const", "randint"} <= used
    with pytest.raises(ValueError, match="unknown init kind 'xavier'"):
        init_tensor(ParamSpec("w", (2,), Init("xavier")))
