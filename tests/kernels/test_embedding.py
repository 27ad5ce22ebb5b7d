"""Numerics of the embedding-gather template (with and without the fused positional add).

Without CUDA: Triton interpreter, float32, against float64 torch: forward, dweight by both the
atomic and the sorted deterministic path, dpos with a position offset, out-of-range ids (device
flag, zero rows, host check) and repeated ids. GPU tests are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def emb():
    text = render("prelude.py.jinja", version="test", source_name="test_embedding")
    text += render("primitives_embedding.py.jinja", name="emb_plain", pos=False) + "\n\n"
    text += render("primitives_embedding.py.jinja", name="emb_pos", pos=True)
    mod = load_source("test_embedding_mod", text)
    return {False: mod.emb_plain, True: mod.emb_pos}


def rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(
    fn,
    pos,
    V,
    D,
    shape,
    offset,
    deterministic,
    tok_dtype=torch.int64,
    dtype=torch.float32,
    device=DEVICE,
    tol=1e-5,
):
    W = torch.randn(V, D, device=device, dtype=dtype, requires_grad=True)
    P = torch.randn(offset + shape[-1] + 3, D, device=device, dtype=dtype, requires_grad=True)
    # Few distinct ids: rows repeat, so dW really sums (the atomic and sorted paths differ).
    tok = torch.randint(0, min(V, 5), shape, device=device).to(tok_dtype)
    tok[..., 0] = V - 1
    params = [W, P] if pos else [W]
    y = fn(tok, *params, pos_offset=offset, deterministic=deterministic)
    W64, P64 = (t.detach().double().requires_grad_() for t in (W, P))
    ref = W64[tok.long()] + (P64[offset : offset + shape[-1]] if pos else 0)
    assert y.shape == (*shape, D) and y.dtype == dtype and rel(y, ref) < tol
    cot = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, cot)
    refs = torch.autograd.grad(ref, [W64, P64] if pos else [W64], cot.double())
    for g, r in zip(grads, refs):
        assert g.dtype == dtype and rel(g, r) < tol
    return grads


@pytest.mark.parametrize("pos", [False, True])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize(
    "V,D,shape,offset", [(11, 40, (3, 7), 2), (5, 24, (1, 1), 0), (9, 33, (2, 9), 0)]
)
def test_embedding_matches_float64(emb, pos, deterministic, V, D, shape, offset):
    torch.manual_seed(V + D)
    check(emb[pos], pos, V, D, shape, offset if pos else 0, deterministic)


def test_int32_ids(emb):
    torch.manual_seed(1)
    check(emb[True], True, 7, 24, (2, 5), 1, True, tok_dtype=torch.int32)


def test_deterministic_path_is_bitwise_reproducible(emb):
    torch.manual_seed(2)
    a = check(emb[False], False, 6, 24, (4, 9), 0, True)
    torch.manual_seed(2)
    b = check(emb[False], False, 6, 24, (4, 9), 0, True)
    assert torch.equal(a[0], b[0])


def test_out_of_range_ids_flag_without_sync_and_host_check(emb):
    W = torch.randn(6, 24, device=DEVICE)
    tok = torch.tensor([[0, 6, 2], [-1, 5, 1]], device=DEVICE)
    err = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    y = emb[False](tok, W, err=err)
    assert int(err) == 1
    assert torch.equal(y[0, 1], torch.zeros(24, device=DEVICE))
    assert torch.equal(y[1, 0], torch.zeros(24, device=DEVICE))
    assert torch.equal(y[0, 0], W[0]) and torch.equal(y[1, 1], W[5])
    ok = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    emb[False](tok.clamp(0, 5), W, err=ok)
    assert int(ok) == 0
    with pytest.raises(IndexError, match="token id 6 is out of range"):
        emb[False](tok, W, check_ids=True)


def test_sequence_longer_than_positional_table(emb):
    W, P = torch.randn(4, 8, device=DEVICE), torch.randn(5, 8, device=DEVICE)
    tok = torch.zeros(1, 4, dtype=torch.long, device=DEVICE)
    emb[True](tok, W, P, pos_offset=1)
    with pytest.raises(ValueError, match="max_len=5"):
        emb[True](tok, W, P, pos_offset=2)


@pytest.mark.gpu
@pytest.mark.parametrize("pos", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("deterministic", [False, True])
def test_embedding_gpu(emb, pos, dtype, deterministic):
    torch.manual_seed(0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    check(
        emb[pos], pos, 50257, 768, (8, 1024), 0, deterministic, dtype=dtype, device="cuda", tol=tol
    )
