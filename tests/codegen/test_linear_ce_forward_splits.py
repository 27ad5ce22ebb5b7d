"""The log-sum-exp forward of the fused linear + cross-entropy template over vocabulary splits.

On a GPU the forward gives each program one vocabulary tile (hundreds of splits), merges the
splits in a combine kernel parallel over row blocks, then reduces the mean in one program over
the blocks' loss sums. Under the Triton interpreter (16 x 16 x 16 tiles, combine blocks of 16
rows and 2 splits, the mean 16 blocks at a time) these tests force one tile per program
(`v_split=1`), a single split (`v_split=V`) and the default ranges, and check lse, the loss and
the count against float64 torch on shapes that are not block multiples: ignored rows, targets
outside [0, V), every row ignored, no rows, with and without a bias, float32 and float16; the
forward kernel's grouped program order and single writer of each target logit; and the tuning
candidates a GPU would time (the first one, the heuristic, is what SPARKC_TUNE=0 launches).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools
import types

import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAME = "lcefs"


@functools.cache
def module():
    prelude = render("prelude.py.jinja", version="test", source_name="test_lce_splits")
    text = prelude + "\n\n" + render("primitives_linear_cross_entropy.py.jinja", name=NAME)
    return load_source(NAME, text)


def sym(name):
    return getattr(module(), f"{NAME}_{name}")


def make(M, D, V, bias, ignored, seed, ignore_index=-100):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(M, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64) / D**0.5 * 3
    b = torch.randn(V, generator=g, dtype=torch.float64) if bias else None
    t = torch.randint(0, V, (M,), generator=g)
    t[torch.randperm(M, generator=g)[:ignored]] = ignore_index
    return h, w, b, t


def reference(h, w, b, t, ignore_index):
    """(lse [M], mean loss, count) in float64; a target outside [0, V) adds no logit."""
    logits = h @ w.t() + (0 if b is None else b)
    lse = torch.logsumexp(logits, dim=1)
    inside = (t >= 0) & (t < w.shape[0])
    z = torch.where(inside, logits.gather(1, t.clamp(0, w.shape[0] - 1)[:, None])[:, 0], 0.0)
    valid = t != ignore_index
    count = int(valid.sum())
    return lse, float(torch.where(valid, lse - z, 0.0).sum()) / max(count, 1), count


def run(h, w, b, t, ignore_index, v_split, dtype):
    cast = [None if x is None else x.to(device=DEVICE, dtype=dtype) for x in (h, w, b)]
    return sym("lse_forward")(*cast, t.to(DEVICE), ignore_index, v_split)


def splits_of(M, V, v_split):
    block_v = sym("config")(M, V, 8, torch.float32, torch.empty(0, device=DEVICE))[1]
    return -(-V // (-(-v_split // block_v) * block_v))


@pytest.mark.parametrize("v_split", [1, None, 10**6], ids=["one_tile", "ranges", "one_split"])
@pytest.mark.parametrize(
    "M,D,V,bias,ignored",
    [(37, 40, 100, True, 5), (33, 24, 113, False, 0), (5, 24, 7, True, 1)],
    ids=["odd", "nobias", "one_tile_vocab"],
)
def test_splits_match_float64(M, D, V, bias, ignored, v_split):
    h, w, b, t = make(M, D, V, bias, ignored, seed=M + V)
    ignore_index = -100
    lse, loss, count = run(h, w, b, t, ignore_index, v_split, torch.float32)
    rlse, rloss, rcount = reference(h, w, b, t, ignore_index)
    assert lse.dtype == torch.float32 and lse.shape == (M,)
    assert torch.allclose(lse.double().cpu(), rlse, rtol=1e-5, atol=1e-5)
    assert abs(loss.item() - rloss) <= 1e-5 * max(1.0, abs(rloss))
    assert count.dtype == torch.int32 and count.dim() == 0 and count.item() == rcount


def test_one_tile_per_program_gives_many_splits_and_agrees_with_one_split():
    # V = 113: 8 tiles of 16, so v_split=1 launches 8 splits (4 chunks of the combine's 2, the
    # last one partial) and M = 37 rows are 3 combine blocks of 16, the last one partial.
    M, D, V = 37, 40, 113
    assert splits_of(M, V, 1) == 8 and splits_of(M, V, V) == 1 and M % 16 != 0
    h, w, b, t = make(M, D, V, True, 4, seed=7)
    many = run(h, w, b, t, -100, 1, torch.float32)
    one = run(h, w, b, t, -100, V, torch.float32)
    assert torch.allclose(many[0], one[0], rtol=1e-6, atol=1e-6)
    assert abs(many[1].item() - one[1].item()) <= 1e-6 * max(1.0, abs(one[1].item()))
    assert many[2].item() == one[2].item() == M - 4
    # The merge is a fixed order: the same launch gives the same bits.
    again = run(h, w, b, t, -100, 1, torch.float32)
    assert torch.equal(many[0], again[0]) and torch.equal(many[1], again[1])


def test_combine_and_mean_over_many_row_blocks():
    # M = 300: 19 combine programs of 16 rows (the last one of 12), whose loss sums and counts
    # the mean kernel reduces 16 at a time (two passes, the second partial).
    M, D, V = 300, 16, 40
    h, w, b, t = make(M, D, V, True, 31, seed=17)
    lse, loss, count = run(h, w, b, t, -100, 1, torch.float32)
    rlse, rloss, rcount = reference(h, w, b, t, -100)
    assert torch.allclose(lse.double().cpu(), rlse, rtol=1e-5, atol=1e-5)
    assert abs(loss.item() - rloss) <= 1e-5 * max(1.0, abs(rloss))
    assert count.item() == rcount == M - 31


@pytest.mark.parametrize("v_split", [1, None], ids=["one_tile", "ranges"])
def test_targets_outside_the_vocabulary_add_no_logit(v_split):
    # Z is never initialised: the split owning a target writes it, split 0 writes 0 for a
    # target outside [0, V) that is not ignore_index; the combine flags such a row with a NaN
    # loss (never a silent lse - 0), so the mean is NaN. Every row's lse is still exact.
    M, D, V = 19, 24, 70
    h, w, b, t = make(M, D, V, True, 3, seed=11)
    t[0], t[5], t[18] = V + 3, -7, V
    lse, loss, count = run(h, w, b, t, -100, v_split, torch.float32)
    rlse, rloss, rcount = reference(h, w, b, t, -100)
    assert torch.allclose(lse.double().cpu(), rlse, rtol=1e-5, atol=1e-5)
    assert torch.isnan(loss)
    assert count.item() == rcount == int((t != -100).sum())
    # With those rows ignored instead, the loss is finite and exact.
    t[0], t[5], t[18] = -100, -100, -100
    lse, loss, count = run(h, w, b, t, -100, v_split, torch.float32)
    rlse, rloss, rcount = reference(h, w, b, t, -100)
    assert abs(loss.item() - rloss) <= 1e-5 * max(1.0, abs(rloss))


@pytest.mark.parametrize("v_split", [1, None], ids=["one_tile", "ranges"])
def test_every_row_ignored_and_no_rows(v_split):
    h, w, b, t = make(21, 24, 50, True, 21, seed=3, ignore_index=0)
    lse, loss, count = run(h, w, b, t, 0, v_split, torch.float32)
    assert loss.item() == 0.0 and count.item() == 0
    assert torch.allclose(lse.double().cpu(), reference(h, w, b, t, 0)[0], rtol=1e-5, atol=1e-5)
    h, w, b, t = make(0, 24, 50, False, 0, seed=3)
    lse, loss, count = run(h, w, b, t, -100, v_split, torch.float32)
    assert lse.shape == (0,) and loss.item() == 0.0 and count.item() == 0


def test_half_inputs_one_tile_per_program():
    # float16 operands (the interpreter has no bfloat16), float32 accumulation and merge.
    M, D, V = 29, 24, 90
    h, w, b, t = make(M, D, V, True, 2, seed=5)
    lse, loss, count = run(h, w, b, t, -100, 1, torch.float16)
    q = [None if x is None else x.half().double() for x in (h, w, b)]
    rlse, rloss, rcount = reference(*q, t, -100)
    assert torch.allclose(lse.double().cpu(), rlse, rtol=1e-4, atol=1e-4)
    assert abs(loss.item() - rloss) <= 1e-4 * max(1.0, abs(rloss))
    assert count.item() == rcount


@pytest.mark.parametrize("v_split", [1, 48], ids=["one_tile", "three_tiles"])
def test_gradients_after_a_split_forward(v_split):
    # The recompute backward reads the lse the split forward merged.
    M, D, V = 23, 24, 100
    h64, w64, b64, t = make(M, D, V, True, 3, seed=9)
    leaves = [x.float().to(DEVICE).requires_grad_(True) for x in (h64, w64, b64)]
    loss = sym("Fn").apply(*leaves, t.to(DEVICE), -100, None, True, v_split)
    loss.backward()
    ref = check_gradients(leaves, (h64, w64, b64), t)
    assert abs(loss.item() - ref) <= 1e-5 * max(1.0, abs(ref))


def check_gradients(leaves, ref_inputs, t, ignore_index=-100):
    """Compare the .grad of leaves (h, w, b) with float64 autograd of the mean cross-entropy;
    returns the reference loss."""
    ref_leaves = [x.clone().requires_grad_(True) for x in ref_inputs]
    valid = t != ignore_index
    logits = ref_leaves[0] @ ref_leaves[1].t() + ref_leaves[2]
    per_row = torch.logsumexp(logits, 1) - logits.gather(1, t.clamp(min=0)[:, None])[:, 0]
    ref = torch.where(valid, per_row, 0.0).sum() / valid.sum()
    ref.backward()
    for x, rx in zip(leaves, ref_leaves):
        err = (x.grad.double().cpu() - rx.grad).norm() / rx.grad.norm()
        assert err < 1e-4
    return ref.item()


def test_backward_runs_the_tuned_dlogits_configuration(patch_runtime):
    # On a GPU the dlogits GEMM goes through launch.tuned_gemm, whose trial launches may use a
    # different BLOCK_M than the heuristic (the bias column sums are kept per row block). Stand
    # in for the tuner under the interpreter: launch two trials (16- and 32-row tiles), choose
    # the 32-row one, and check the gradients of the run that uses it.
    module()  # generated code calls the names patched below as `_launch.<name>`
    tried = []

    def fake_tuned_gemm(kernel, heuristic, M, N, K, like, run, dual=False, tma=False, extern=None):
        base = heuristic(M, N, K, like.dtype, like, dual=dual)
        if kernel is not sym("dlogits_kernel"):
            return base  # the dW and dh GEMMs
        for bm in (16, 32):
            cfg = {**base, "BLOCK_M": bm}
            run(cfg)
            tried.append(cfg)
        return tried[-1]

    patch_runtime("tuned_gemm", fake_tuned_gemm)
    M, D, V = 37, 24, 100
    h64, w64, b64, t = make(M, D, V, True, 4, seed=11)
    leaves = [x.float().to(DEVICE).requires_grad_(True) for x in (h64, w64, b64)]
    sym("Fn").apply(*leaves, t.to(DEVICE), -100, 48, True, None).backward()
    assert [c["BLOCK_M"] for c in tried] == [16, 32]
    check_gradients(leaves, (h64, w64, b64), t)


def test_tuning_candidates_start_with_the_heuristic(patch_runtime):
    # What an H200 would time (the launch helpers told they are not interpreting): the heuristic
    # (one tile per program, 128 registers for half types, none for float32), the ranges of
    # about 8 programs per SM, 4 warps, then one-tile GEMM tiles; all distinct.
    module()  # generated code calls the names patched below as `_launch.<name>`
    patch_runtime("interpreting", lambda: False)
    patch_runtime("sm_count", lambda like: 132)
    gpu = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"), element_size=lambda: 2)
    cands = sym("fwd_candidates")(8192, 32000, 1024, torch.bfloat16, gpu)
    assert cands[:3] == [
        (128, 128, 64, 8, 3, 0, 128),
        (128, 128, 64, 8, 3, 8, 0),
        (128, 128, 64, 4, 3, 0, 0),
    ]
    assert (128, 256, 64, 8, 3, 0, 0) in cands and (256, 128, 64, 8, 3, 0, 0) in cands
    assert len(set(cands)) == len(cands)
    cols = sym("fwd_columns")
    assert cols(cands[0], 8192, 32000, gpu) == 128  # 250 splits: one per vocabulary tile
    # Partials [splits, M] bounded by CHUNK_BYTES (64 MiB): 2000 tiles x 65536 rows would be
    # 500 MiB, so 8 tiles per program (250 splits, 62.5 MiB).
    assert cols(cands[0], 65536, 256000, gpu) == 8 * 128
    # 64 row blocks x 17 splits of 15 tiles: about 8 programs per SM (the old forward).
    assert cols(cands[1], 8192, 32000, gpu) == 15 * 128
    gpu32 = types.SimpleNamespace(device=gpu.device, element_size=lambda: 4)
    cands = sym("fwd_candidates")(8192, 32000, 1024, torch.float32, gpu32)
    assert cands[0] == (128, 128, 32, 8, 3, 0, 0) and cands[1] == (128, 128, 32, 8, 3, 8, 0)
    assert all(c[2] == 32 for c in cands)


def test_interpreter_heuristic_uses_ranges():
    # Under the interpreter (or off GPU) the first candidate, used untimed, takes ranges of
    # tiles, so the default path runs the range loop and the merge of several splits.
    cand = sym("config")(37, 100, 40, torch.float32, torch.empty(0, device="cpu"))
    assert cand[:3] == (16, 16, 16) and cand[5] == 8
    cols = sym("fwd_columns")(cand, 37, 100, torch.empty(0, device="cpu"))
    assert cols % 16 == 0 and 16 < cols < 100


@pytest.mark.parametrize("v_per_split,group_v", [(16, 3), (32, 8), (112, 1)])
def test_forward_kernel_writes_every_partial_once(v_per_split, group_v):
    # PL and Z start as NaN: the grouped program order must cover every (split, row block), and
    # exactly one split writes each row's target logit (split 0 for targets outside [0, V)).
    M, D, V = 37, 24, 100
    h, w, b, t = make(M, D, V, True, 4, seed=13)
    t[3], t[30] = V, -1
    h, w, b = (x.float().to(DEVICE) for x in (h, w, b))
    t = t.to(DEVICE)
    splits = -(-V // v_per_split)
    pl = torch.full((splits, M), float("nan"), device=DEVICE)
    z = torch.full((M,), float("nan"), device=DEVICE)
    grid = (-(-M // 16) * splits,)
    sym("fwd_kernel")[grid](
        h, w, b, t, pl, z, M, V, D, h.stride(0), h.stride(1), w.stride(0), w.stride(1), 1,
        v_per_split, HAS_BIAS=True, DOT_PRECISION="ieee", BLOCK_M=16, BLOCK_V=16, BLOCK_D=16,
        GROUP_V=group_v, USE_TMA=False,
    )  # fmt: skip
    logits = h.double() @ w.double().t() + b.double()
    for s in range(splits):
        part = torch.logsumexp(logits[:, s * v_per_split : (s + 1) * v_per_split], dim=1)
        assert torch.allclose(pl[s].double().cpu(), part.cpu(), rtol=1e-5, atol=1e-5), s
    inside = (t >= 0) & (t < V)
    ref_z = torch.where(inside, logits.gather(1, t.clamp(0, V - 1)[:, None])[:, 0], 0.0)
    assert torch.allclose(z.double().cpu(), ref_z.cpu(), rtol=1e-5, atol=1e-5)
