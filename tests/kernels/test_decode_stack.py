"""The one-launch verifier_stack scan of cached calls (runtime/decode_stack.py) against the
reference scan (`_stack_scan` of runtime/reference/spark_k.py) in float64 over calls of one and
of several rows, so the memory and pointer accumulate within a launch and across launches; both
read modes; stack sizes and element widths not powers of two and wider than one chunk; pointers
driven to both clamps; the variant taking the control logits (softmax and the per-row penalty
in the kernel); and the kernel compiled for sm_90."""

from __future__ import annotations

import pytest
import torch
from _sm90 import compile_script
from sparkc.runtime.decode_stack import stack_scan
from sparkc.runtime.reference.spark_k import _stack_scan

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("read", ["top", "mean"])
@pytest.mark.parametrize(("b", "size", "elem"), [(2, 5, 7), (1, 3, 300), (3, 40, 16)])
def test_stack_scan_matches_the_reference_scan(b, size, elem, read):
    g = torch.Generator().manual_seed(size * elem)
    mem = torch.zeros(b, size, elem, device=DEVICE)
    ptr = torch.zeros(b, device=DEVICE)
    mem64, ptr64 = mem.double().cpu(), ptr.double().cpu()
    # Mostly pushes, then mostly pops: the pointer meets the top clamp and then the bottom one.
    n = 2 * size + 12
    strong, weak = 0.9 + 0.1 * torch.rand(b, n, generator=g), 0.05 * torch.rand(b, n, generator=g)
    turn = (torch.arange(n) < size + 6)[None, :]
    push, pop = torch.where(turn, strong, weak), torch.where(turn, weak, strong)
    e = torch.randn(b, n, elem, generator=g)
    # float32 state against float64: the pointer's rounding accumulates over the ~90 rows of a
    # walk up to S − 1 and back (each step rounds p + push − pop at |p| < S).
    tol = {"rtol": 1e-5, "atol": 3e-6 * size}
    highest, at = 0.0, 0
    for rows in [1, 3, 1, 7, 2, n]:  # single steps and prompts, continuing the state
        sl = slice(at, min(at + rows, n))
        at = sl.stop
        got = stack_scan(*(x[:, sl].to(DEVICE) for x in (push, pop, e)), mem, ptr, read == "top")
        want_read, want_ptr, want_prev, mem64, ptr64 = _stack_scan(
            push[:, sl].double(), pop[:, sl].double(), e[:, sl].double(), size, read, mem64, ptr64
        )
        for x, y in zip(got, (want_read, want_ptr, want_prev)):
            torch.testing.assert_close(x.double().cpu(), y, **tol)
        torch.testing.assert_close(mem.double().cpu(), mem64, **tol)
        torch.testing.assert_close(ptr.double().cpu(), ptr64, **tol)
        highest = max(highest, float(want_ptr.min(dim=0).values.max()))  # all at once
        if at == n:
            break
    assert at == n
    assert highest == size - 1  # every pointer reached the top clamp...
    assert float(ptr64.max()) == 0.0  # ...and then the bottom one


_COMPILE = r"""
from sparkc.runtime.decode_stack import stack_scan_kernel as fn

out = [
    ptx_size(fn, {"READ_TOP": top, "BLOCK_S": 16, "BLOCK_E": 128, "FROM_LOGITS": logits},
             lambda a: "i32" if a in ("T", "S", "EL") else "*fp32")
    for top in (True, False) for logits in (True, False)
]
print(json.dumps(out))
"""


def test_stack_scan_kernel_compiles_for_sm90():
    sizes = compile_script(_COMPILE)
    assert len(sizes) == 4 and all(n > 1000 for n in sizes)


@pytest.mark.parametrize("read", ["top", "mean"])
def test_scan_from_logits_matches_softmax_then_scan_and_the_penalty(read):
    """`stack_scan_logits` = PyTorch's softmax of the logits (push, pop = its first two
    entries), the scan, and the per-row penalty whose mean the reference's loss weighs."""
    from sparkc.runtime.decode_stack import stack_scan_logits

    b, size, elem, n = 2, 5, 7, 19
    g = torch.Generator().manual_seed(5)
    logits = 3 * torch.randn(b, n, 3, generator=g, dtype=torch.float64)
    logits[:, : n // 2, 0] += 4  # pushes first (the top clamp), then pops (the bottom one)
    logits[:, n // 2 :, 1] += 4
    e = torch.randn(b, n, elem, generator=g, dtype=torch.float64)
    pi = torch.softmax(torch.log_softmax(logits, -1), -1)
    push, pop = pi[..., 0], pi[..., 1]
    want = _stack_scan(push, pop, e, size, read, torch.zeros(b, size, elem).double(),
                       torch.zeros(b).double())  # fmt: skip
    under = pop * torch.relu(1 - want[2])
    over = push * torch.relu(want[2] - (size - 2))
    mem, ptr = torch.zeros(b, size, elem, device=DEVICE), torch.zeros(b, device=DEVICE)
    got = stack_scan_logits(
        logits.float().to(DEVICE), e.float().to(DEVICE), mem, ptr, read == "top"
    )
    tol = {"rtol": 1e-5, "atol": 2e-5}
    for x, y in zip(got, (*want[:3], under + over)):
        torch.testing.assert_close(x.double().cpu(), y, **tol)
    torch.testing.assert_close(mem.double().cpu(), want[3], **tol)
    torch.testing.assert_close(ptr.double().cpu(), want[4], **tol)
    assert float((under + over).max()) > 0.1  # the clamps were met, the penalty is not all 0
