"""Numerics of the verifier-stack scan family (`codegen_templates/spark_k_stack_scan.py.jinja`, SPEC §2.3).

Without CUDA the kernels run under the Triton interpreter (4-step checkpoint chunks, 16-wide
element blocks, so chunk boundaries and masked element blocks are exercised) in float32 and are
compared, forward and backward (`.grad` of the scores and the encodings, with upstream gradients
on read, pointer and loss), with a float64 loop written here from SPEC §2.3. That loop is checked
once against the runtime's reference rule `ref_verifier_stack`. Also tested: saturated pointers
(the clamp's gradient mask), a one-slot stack, op_noise reproducible from the seed, causality bit
for bit, determinism. GPU tests (float32 and bfloat16 at N=1000, stack 32) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools

import pytest
from sparkc.runtime.loader import load_source
from sparkc.runtime.reference import RefContext
from sparkc.runtime.reference.common import gumbel_noise
from sparkc.runtime.reference.spark_k import ref_verifier_stack

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def build(read):
    name = f"stack_{read}"
    prelude = render("prelude.py.jinja", version="test", source_name="test_stack_scan")
    module = load_source(
        name, prelude + "\n\n" + render("spark_k_stack_scan.py.jinja", name=name, read=read)
    )
    return getattr(module, name)


def bump(center, size):
    slots = torch.arange(size, dtype=center.dtype, device=center.device)
    return torch.softmax(-0.5 * (slots[None, :] - center[:, None]) ** 2, dim=-1)


def reference(logits, e, size, penalty, read, noise=None):
    """(read, pointer, loss) by the SPEC §2.3 loop, in the inputs' dtype."""
    z = logits if noise is None else torch.log_softmax(logits, -1) + noise
    pi = torch.softmax(z, dim=-1)
    push, pop = pi[..., 0], pi[..., 1]
    b, n, elem = e.shape
    mem = e.new_zeros(b, size, elem)
    p = e.new_zeros(b)
    reads, ptrs, prev = [], [], []
    for t in range(n):
        prev.append(p)
        c = push[:, t, None] * bump(p, size)
        mem = mem * (1 - c)[..., None] + c[..., None] * e[:, t, None, :]
        p = torch.clamp(p + push[:, t] - pop[:, t], 0, size - 1)
        if read == "top":
            reads.append(torch.einsum("bs,bse->be", bump(p - 1, size), mem))
        else:
            reads.append(mem.mean(dim=1))
        ptrs.append(p)
    p_prev = torch.stack(prev, dim=1)
    loss = penalty * (
        (pop * torch.relu(1 - p_prev)).mean() + (push * torch.relu(p_prev - (size - 2))).mean()
    )
    return torch.stack(reads, dim=1), torch.stack(ptrs, dim=1), loss


def make_inputs(b, n, elem, dtype=torch.float32, seed=0, logit_scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, n, 3, generator=g) * logit_scale
    e = torch.randn(b, n, elem, generator=g)
    return [t.to(DEVICE, dtype).requires_grad_(True) for t in (logits, e)]


def rel(a, b):
    a, b = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    return ((a - b).norm() / b.norm().clamp_min(1e-6)).item()


def objective(read, pointer, loss, seed=1):
    g = torch.Generator().manual_seed(seed)
    wr = torch.randn(read.shape, generator=g).to(read.device, read.dtype)
    wp = torch.randn(pointer.shape, generator=g).to(read.device, read.dtype)
    return (read * wr).sum() + (pointer * wp).sum() + 3.0 * loss


def check(read, b, n, elem, size, penalty=0.7, tol=1e-4, dtype=torch.float32, logit_scale=2.0):
    fn = build(read)
    logits, e = make_inputs(b, n, elem, dtype, logit_scale=logit_scale)
    outs = fn(logits, e, size, penalty)
    assert [tuple(o.shape) for o in outs] == [(b, n, elem), (b, n), ()]
    assert all(o.dtype == dtype for o in outs)
    ref_in = [t.detach().double().requires_grad_(True) for t in (logits, e)]
    refs = reference(*ref_in, size, penalty, read)
    for name, got, want in zip(("read", "pointer", "loss"), outs, refs):
        assert torch.isfinite(got).all(), name
        assert rel(got, want) < tol, (name, rel(got, want))
    objective(*outs).backward()
    objective(*refs).backward()
    for name, got, want in zip(("logits", "e"), (logits, e), ref_in):
        assert rel(got.grad, want.grad) < tol, (name, rel(got.grad, want.grad))


def test_local_reference_matches_runtime_reference():
    """The loop above is the runtime oracle's scan, given the same scores and encodings."""
    g = torch.Generator().manual_seed(4)
    b, n, d, elem, size = 2, 6, 8, 5, 4
    h = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    shapes = {
        "ctrl1": (d // 2, d),
        "ctrl2": (3, d // 2),
        "enc": (elem, d),
        "head1": (d // 4, d + elem),
        "head2": (1, d // 4),
    }
    params = {}
    for key, (o, i) in shapes.items():
        params[f"{key}.weight"] = torch.randn(o, i, generator=g, dtype=torch.float64)
        params[f"{key}.bias"] = torch.randn(o, generator=g, dtype=torch.float64)
    lin = torch.nn.functional.linear
    logits = lin(
        torch.relu(lin(h, params["ctrl1.weight"], params["ctrl1.bias"])),
        params["ctrl2.weight"],
        params["ctrl2.bias"],
    )
    e = lin(h, params["enc.weight"], params["enc.bias"])
    for read in ("top", "mean"):
        hp = {
            "stack": size,
            "elem": elem,
            "signals": 1,
            "read": read,
            "op_noise": False,
            "penalty": 0.7,
        }
        want = ref_verifier_stack({"h": h}, params, hp, RefContext())
        got = reference(logits, e, size, 0.7, read)
        assert torch.allclose(got[0], want[0]) and torch.allclose(got[1], want[2])
        assert torch.allclose(got[2], want[3])


@pytest.mark.parametrize("read", ["top", "mean"])
@pytest.mark.parametrize("n,size", [(1, 4), (7, 16), (13, 4)])
def test_matches_reference(read, n, size):
    check(read, 2, n, 24, size)


@pytest.mark.parametrize("read", ["top", "mean"])
def test_saturated_pointer_and_penalties(read):
    """Large scores pin the pointer at 0 or S−1 (clamp gradient mask, both penalty terms)."""
    check(read, 2, 11, 16, 3, penalty=2.0, logit_scale=12.0)


def test_one_slot_stack():
    check("top", 1, 6, 5, 1)


@pytest.mark.parametrize("read", ["top", "mean"])
def test_op_noise_reproducible_from_the_seed(read):
    """noisy=True draws the same float32 uniforms as the reference path's Gumbel noise."""
    fn = build(read)
    logits, e = make_inputs(2, 9, 16)
    torch.manual_seed(11)
    outs = fn(logits, e, 4, 1.0, noisy=True)
    torch.manual_seed(11)
    noise = gumbel_noise((2, 9, 3), torch.device(DEVICE), RefContext(training=True))
    ref_in = [t.detach().double().requires_grad_(True) for t in (logits, e)]
    refs = reference(*ref_in, 4, 1.0, read, noise=noise.double())
    for got, want in zip(outs, refs):
        assert rel(got, want) < 1e-4
    objective(*outs).backward()
    objective(*refs).backward()
    for got, want in zip((logits, e), ref_in):
        assert rel(got.grad, want.grad) < 1e-4
    quiet = fn(logits, e, 4, 1.0)
    assert not torch.equal(quiet[0], outs[0])


def test_causal_perturbation_is_bit_exact():
    fn = build("top")
    logits, e = (x.detach() for x in make_inputs(2, 14, 24))
    t = 6
    l2, e2 = logits.clone(), e.clone()
    l2[:, t + 1 :] = torch.randn_like(l2[:, t + 1 :]) * 3.0
    e2[:, t + 1 :] = torch.randn_like(e2[:, t + 1 :]) * 3.0
    a, b = fn(logits, e, 8, 1.0), fn(l2, e2, 8, 1.0)
    for x, y in zip(a[:2], b[:2]):
        assert torch.equal(x[:, : t + 1], y[:, : t + 1])
        assert not torch.equal(x, y)


def test_backward_is_deterministic():
    fn = build("top")
    logits, e = make_inputs(2, 10, 20)
    grads = []
    for _ in range(2):
        logits.grad = e.grad = None
        objective(*fn(logits, e, 4, 1.0)).backward()
        grads.append((logits.grad.clone(), e.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("read", ["top", "mean"])
def test_gpu_against_reference(dtype, tol, read):
    check(read, 4, 1000, 96, 32, tol=tol, dtype=dtype)
