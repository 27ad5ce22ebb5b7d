"""The one-launch verifier_stack decoding step (runtime/decode_stack.py) against the reference
scan (`_stack_scan` of runtime/reference/spark_k.py) in float64 over several steps, so the
memory and pointer accumulate; both read modes; stack sizes and element widths not powers of
two and wider than one chunk; pointers driven to both clamps; and the kernel compiled for sm_90."""

from __future__ import annotations

import pytest
import torch
from _sm90 import compile_script
from sparkc.runtime.decode_stack import stack_step
from sparkc.runtime.reference.spark_k import _stack_scan

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("read", ["top", "mean"])
@pytest.mark.parametrize(("b", "size", "elem"), [(2, 5, 7), (1, 3, 300), (3, 40, 16)])
def test_stack_step_matches_the_reference_scan(b, size, elem, read):
    g = torch.Generator().manual_seed(size * elem)
    mem = torch.zeros(b, size, elem, device=DEVICE)
    ptr = torch.zeros(b, device=DEVICE)
    mem64, ptr64 = mem.double().cpu(), ptr.double().cpu()
    # Mostly pushes, then mostly pops: the pointer meets the top clamp and then the bottom one.
    highest = 0.0
    for t in range(2 * size + 12):
        strong, weak = 0.9 + 0.1 * torch.rand(b, generator=g), 0.05 * torch.rand(b, generator=g)
        push, pop = (strong, weak) if t < size + 6 else (weak, strong)
        e = torch.randn(b, elem, generator=g)
        got = stack_step(*(x.to(DEVICE) for x in (push, pop, e)), mem, ptr, read == "top")
        want_read, want_ptr, want_prev, mem64, ptr64 = _stack_scan(
            push.double()[:, None], pop.double()[:, None], e.double()[:, None], size, read,
            mem64, ptr64,
        )  # fmt: skip
        for x, y in zip(got, (want_read[:, 0], want_ptr[:, 0], want_prev[:, 0])):
            torch.testing.assert_close(x.double().cpu(), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mem.double().cpu(), mem64, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ptr.double().cpu(), ptr64, rtol=1e-5, atol=1e-5)
        highest = max(highest, float(ptr64.min()))
    assert highest == size - 1  # every pointer reached the top clamp...
    assert float(ptr64.max()) == 0.0  # ...and then the bottom one


_COMPILE = r"""
from sparkc.runtime.decode_stack import stack_step_kernel as fn

out = [
    ptx_size(fn, {"READ_TOP": top, "BLOCK_S": 16, "BLOCK_E": 128},
             lambda a: "i32" if a in ("S", "EL") else "*fp32")
    for top in (True, False)
]
print(json.dumps(out))
"""


def test_stack_step_kernel_compiles_for_sm90():
    sizes = compile_script(_COMPILE)
    assert len(sizes) == 2 and all(n > 1000 for n in sizes)
