"""opcode_tape in a generated module runs its kernels (procedural_opcode_tape.py.jinja), not its
reference rule: `TRITON_COVERAGE["reference_ops"]` is empty, and the Triton path matches the
float64 reference path on every output and on the gradients of args and branch; a bad opcode is
the module's InputError before any kernel runs."""

from __future__ import annotations

import pytest
import torch
from sparkc.runtime.checks import InputError

from sparkc import api

SRC = """
model Tape(d = 12) {
  input ops: i32[B, T]
  input args: float[B, T, d]
  input has_arg: bool[B, T]
  top, depth, status, steps, checks, trace = opcode_tape(ops, args, has_arg, budget=7, capacity=3)
  y = top * 2.0
  output y
  output depth
  output status
  output steps
  output checks
  output trace
}
"""


def _inputs(b: int, t_len: int):
    g = torch.Generator().manual_seed(t_len)
    ops = torch.randint(-1, 9, (b, t_len), generator=g, dtype=torch.int32)
    ops[0, :5] = torch.tensor([1, 6, 7, 5, 3], dtype=torch.int32)[: min(5, t_len)]
    has = torch.rand(b, t_len, generator=g) < 0.7
    args = torch.randn(b, t_len, 12, generator=g, dtype=torch.float64)
    return ops, has, args


def test_tape_runs_kernels_and_matches_reference():
    m = api.load_source(SRC, "tape.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ()
    ref = m.Model(impl="reference").double()
    tri = m.Model(impl="triton")
    with torch.no_grad():
        ref.get_parameter("top.branch").copy_(torch.linspace(-1, 1, 12))
    tri.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    for b, t_len in [(1, 1), (3, 10)]:
        ops, has, args = _inputs(b, t_len)
        ar, at = args.clone().requires_grad_(True), args.float().requires_grad_(True)
        a = ref(ops=ops, args=ar, has_arg=has)
        c = tri(ops=ops, args=at, has_arg=has)
        for k in ("depth", "status", "steps", "trace"):
            assert torch.equal(a[k], c[k]), k
        for k in ("y", "checks"):
            torch.testing.assert_close(c[k].double(), a[k].detach(), rtol=1e-6, atol=1e-6)
        wy = torch.randn(a["y"].shape, dtype=torch.float64)
        wc = torch.randn(a["checks"].shape, dtype=torch.float64)
        ref.zero_grad()
        tri.zero_grad()
        ((a["y"] * wy).sum() + (a["checks"] * wc).sum()).backward()
        ((c["y"] * wy.float()).sum() + (c["checks"] * wc.float()).sum()).backward()
        torch.testing.assert_close(at.grad.double(), ar.grad, rtol=1e-5, atol=1e-5)
        gr, gt = ref.get_parameter("top.branch").grad, tri.get_parameter("top.branch").grad
        torch.testing.assert_close(gt.double(), gr, rtol=1e-5, atol=1e-5)


def test_bad_opcode_is_an_input_error_on_the_triton_path():
    m = api.load_source(SRC, "tape.spark")
    ops, has, args = _inputs(2, 4)
    ops[1, 2] = 9
    with pytest.raises(InputError, match="ops"):
        m.Model(impl="triton")(ops=ops, args=args.float(), has_arg=has)


COMPUTED = """
model Computed(d = 4) {
  input ops: i32[B, T]
  input args: float[B, T, d]
  input has_arg: bool[B, T]
  top, depth, status, steps, checks, trace = opcode_tape(ops + 1, args, has_arg, budget=8)
  output top
  output status
}
"""


def test_computed_opcodes_are_checked_by_the_kernel_entry():
    """A tape computed in the model is not a model input, so the module's RULES cannot check
    it: the Triton path checks it before the kernels (the same ValueError as the reference)."""
    m = api.load_source(COMPUTED, "computed.spark")
    assert m.TRITON_COVERAGE["reference_ops"] == ("add",)
    args, has = torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.bool)
    for impl in ("reference", "triton"):
        net = m.Model(impl=impl)
        ok = net(ops=torch.tensor([[0, 4, -2]], dtype=torch.int32), args=args, has_arg=has)
        assert ok["status"].tolist() == [0]
        with pytest.raises(ValueError, match=r"opcode 9 at index \[0, 1\]"):
            net(ops=torch.tensor([[0, 8, 1]], dtype=torch.int32), args=args, has_arg=has)
