"""No kernel reads memory at an index taken from data without a bounds check.

Audit of codegen_templates/ (docs/kernels/bounds.md): the data-dependent indices are the
cross-entropy targets (cross_entropy, linear_cross_entropy) and the embedding ids (embedding; its
test is tests/kernels/test_embedding.py). Each test here calls the kernel-level entry directly,
bypassing the module's input checks, with targets outside [0, V) that are not ignore_index,
and logits laid out so that an unmasked read at `row * stride + target` would land on a sentinel
(the next row's columns, or the padding past V): the row must be flagged (NaN loss and NaN
gradient row), never computed from the sentinel, and the other rows' gradients stay exact.
Runs under the Triton interpreter on CPU.
"""

import functools

import pytest
import torch
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def build(template: str, name: str):
    prelude = render("prelude.py.jinja", version="test", source_name="test_data_indices")
    text = prelude + "\n\n" + render(template, name=name)
    return getattr(load_source(name, text), name)


def _padded_logits(M: int, V: int, seed: int = 0) -> torch.Tensor:
    """[M, V] logits as a view of an [M, 2V] buffer whose columns V.. hold a huge sentinel."""
    g = torch.Generator().manual_seed(seed)
    buf = torch.full((M, 2 * V), 1e4, dtype=torch.float32)
    buf[:, :V] = torch.randn(M, V, generator=g)
    return buf.to(DEVICE)[:, :V]


def _reference_rows(logits: torch.Tensor, targets: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Float64 mean cross-entropy over `rows` only (each counted once)."""
    x = logits.double()[rows]
    t = targets[rows]
    return (torch.logsumexp(x, 1) - x.gather(1, t[:, None])[:, 0]).sum()


@pytest.mark.parametrize("bad", [7, 9, -1, -101], ids=["V", "past_V", "minus_one", "negative"])
def test_cross_entropy_target_outside_vocabulary_is_flagged(bad):
    ce = build("primitives_cross_entropy.py.jinja", "ce_idx")
    M, V = 3, 7
    logits = _padded_logits(M, V).requires_grad_(True)
    targets = torch.tensor([2, bad, 4], device=DEVICE)
    loss = ce(logits, targets, -100)
    assert torch.isnan(loss), loss.item()
    loss.backward()
    g = logits.grad
    assert torch.isnan(g[1]).all()
    # Rows 0 and 2: exactly the gradient of their own loss / count (count = 3 rows not ignored).
    ref = logits.detach().clone().requires_grad_(True)
    (_reference_rows(ref, targets.clamp(0, V - 1), [0, 2]) / 3).backward()
    torch.testing.assert_close(g[[0, 2]], ref.grad[[0, 2]].float(), rtol=1e-5, atol=1e-6)


def test_cross_entropy_ignored_rows_still_count_for_nothing():
    ce = build("primitives_cross_entropy.py.jinja", "ce_idx")
    logits = _padded_logits(3, 7)
    targets = torch.tensor([2, -100, 4], device=DEVICE)
    ref = _reference_rows(logits, targets, [0, 2]) / 2
    torch.testing.assert_close(ce(logits, targets, -100).double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
@pytest.mark.parametrize("bad", [11, -3], ids=["past_V", "negative"])
def test_linear_cross_entropy_target_outside_vocabulary_is_flagged(recompute, bad):
    """The fused LM-head loss never indexes with the target, but computed a finite `lse - 0`
    for such a row (silent garbage); it is now NaN, with a NaN gradient row of h."""
    lce = build("primitives_linear_cross_entropy.py.jinja", "lce_idx")
    g = torch.Generator().manual_seed(1)
    M, D, V = 5, 16, 11
    h = torch.randn(M, D, generator=g).to(DEVICE).requires_grad_(True)
    w = (torch.randn(V, D, generator=g) / 4).to(DEVICE).requires_grad_(True)
    b = torch.randn(V, generator=g).to(DEVICE).requires_grad_(True)
    targets = torch.tensor([1, 3, bad, -100, 10], device=DEVICE)
    loss = lce(h, w, b, targets, -100, recompute=recompute)
    assert torch.isnan(loss), loss.item()
    loss.backward()
    assert torch.isnan(h.grad[2]).all()
    assert torch.isfinite(h.grad[[0, 1, 3, 4]]).all()
    assert h.grad[3].abs().max() == 0  # the ignored row
    # Without a gradient (the loss-only forward) the flag is the same.
    with torch.no_grad():
        assert torch.isnan(lce(h, w, b, targets, -100))
