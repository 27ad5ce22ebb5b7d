"""Numerics of the fused linear + cross-entropy template (`primitives_linear_cross_entropy.py.jinja`).

Forward (the mean loss) and backward (dh, dw, db) against a float64 torch reference that stores
the logits, under the Triton interpreter on CPU (float32; float16 for the float32-accumulator
path), on sizes that are not block multiples, with ignored rows, every row ignored, several
vocabulary splits and several backward chunks. GPU tests (float32 and bfloat16 at realistic sizes,
peak memory far below the logits') are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools

import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def build(name="lce"):
    prelude = render("prelude.py.jinja", version="test", source_name="test_linear_ce")
    text = prelude + "\n\n" + render("primitives_linear_cross_entropy.py.jinja", name=name)
    return getattr(load_source(name, text), name)


def reference(h, w, b, targets, ignore_index):
    logits = h @ w.t()
    if b is not None:
        logits = logits + b
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    per_row = torch.logsumexp(logits, dim=1) - logits.gather(1, safe[:, None])[:, 0]
    return torch.where(valid, per_row, torch.zeros_like(per_row)).sum() / valid.sum().clamp_min(1)


def rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make(M, D, V, bias, ignored, seed, scale=1.0, ignore_index=-100):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(M, D, generator=g, dtype=torch.float64) * scale
    w = torch.randn(V, D, generator=g, dtype=torch.float64) / D**0.5
    b = torch.randn(V, generator=g, dtype=torch.float64) if bias else None
    t = torch.randint(0, V, (M,), generator=g)
    t[torch.randperm(M, generator=g)[:ignored]] = ignore_index
    return h, w, b, t


def check(
    M,
    D,
    V,
    bias=True,
    ignored=0,
    dtype=torch.float32,
    tol=1e-4,
    device=DEVICE,
    v_chunk=None,
    scale=1.0,
    ignore_index=-100,
    grad_scale=1.0,
    seed=0,
    recompute=False,
):
    h64, w64, b64, t = make(M, D, V, bias, ignored, seed, scale, ignore_index)

    def leaves(dt, dev):
        out = [
            None if x is None else x.to(dtype=dt, device=dev).requires_grad_(True)
            for x in (h64, w64, b64)
        ]
        return out

    h, w, b = leaves(dtype, device)
    loss = build()(h, w, b, t.to(device), ignore_index, v_chunk=v_chunk, recompute=recompute)
    (loss * grad_scale).backward()
    rh, rw, rb = leaves(torch.float64, device)
    rh_q, rw_q = rh, rw
    if dtype != torch.float32:  # compare against the same rounded inputs, in float64
        rh_q, rw_q = rh.to(dtype).double(), rw.to(dtype).double()
    rb_q = None if rb is None else (rb.to(dtype).double() if dtype != torch.float32 else rb)
    ref = reference(rh_q, rw_q, rb_q, t.to(device), ignore_index)
    (ref * grad_scale).backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert torch.isfinite(loss)
    assert abs(loss.item() - ref.item()) <= tol * max(1.0, abs(ref.item())), (
        loss.item(),
        ref.item(),
    )
    for label, x, rx in (("h", h, rh), ("w", w, rw), ("b", b, rb)):
        if x is None:
            continue
        assert x.grad is not None and x.grad.shape == x.shape and x.grad.dtype == dtype, label
        err = rel_err(x.grad, rx.grad)
        assert err < tol, (label, err)
    return loss, (h, w, b)


@pytest.mark.parametrize(
    "M,D,V,bias,ignored",
    [(33, 40, 100, True, 5), (7, 24, 65, False, 0), (1, 40, 7, True, 0), (65, 24, 33, True, 64)],
    ids=["odd", "nobias", "single_row", "one_counted"],
)
@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_matches_float64(M, D, V, bias, ignored, recompute):
    check(M, D, V, bias, ignored, recompute=recompute)


def test_loss_without_gradients_matches_training_loss():
    # No gradient needed: the loss-only forward (online log-sum-exp, no stored logits).
    h, w, b, t = make(33, 40, 100, True, 5, 0, 1.0, -100)
    fn = build()
    with torch.no_grad():
        eval_loss = fn(h.float(), w.float(), b.float(), t)
    train_loss = fn(h.float().requires_grad_(True), w.float(), b.float(), t)
    assert abs(eval_loss.item() - train_loss.item()) < 1e-5


@pytest.mark.parametrize("v_chunk", [24, 40], ids=["chunk24", "chunk40"])
def test_backward_in_vocabulary_chunks(v_chunk):
    # Several chunks: dh accumulates in place (float32), dw/db written chunk by chunk.
    check(33, 40, 100, True, 3, v_chunk=v_chunk, seed=1, recompute=True)


def force_tma(patch_runtime, on_gpu=False):
    """Make the loss forward and the dlogits GEMM take their tensor-descriptor main loops (GPU
    tuning candidates); returns the names of the kernels forced. Under the interpreter the
    descriptors take float32 too."""
    from sparkc.runtime import launch

    forced = []
    real_pick, real_tuned = launch.pick, launch.tuned_gemm

    def pick(name, shape_class, candidates, bench_fn, *, source, like):
        if name.endswith("_fwd_kernel") and shape_class[-1] == "tma":
            cands = candidates() if callable(candidates) else candidates
            forced.append(name)
            return next(c for c in cands if len(c) == 8)
        return real_pick(name, shape_class, candidates, bench_fn, source=source, like=like)

    def tuned(kernel, heuristic, M, N, K, like, run, dual=False, tma=False, **kw):
        cfg = real_tuned(kernel, heuristic, M, N, K, like, run, dual, **kw)
        if tma and getattr(kernel, "fn", kernel).__name__.endswith("_dlogits_kernel"):
            forced.append("dlogits")
            return {**cfg, "USE_TMA": True, "PERSISTENT": False}
        return cfg

    patch_runtime("pick", pick)
    patch_runtime("tuned_gemm", tuned)
    patch_runtime("tuning_enabled", lambda: True)
    if not on_gpu:
        patch_runtime("tma_ok", lambda *ts: all(t.stride(-1) == 1 for t in ts))
        # pick() returns the first candidate untimed under the interpreter: go through ours.
        patch_runtime("interpreting", lambda: False)
    return forced


@pytest.mark.parametrize("M,D,V,bias", [(33, 40, 100, True), (7, 24, 65, False)])
def test_tma_main_loops_match_float64(M, D, V, bias, patch_runtime):
    # The loss forward's and the dlogits GEMM's descriptor main loops (tuning candidates for
    # 16-bit operands on a GPU), forced under the interpreter: rows past M and V read as zeros.
    forced = force_tma(patch_runtime)
    check(M, D, V, bias, 3, v_chunk=40, seed=4, recompute=True)
    assert forced == ["lce_fwd_kernel", "dlogits"]


@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_extern_gemm_choice_matches_float64(force_extern_gemm, recompute):
    # torch's own GEMM (a tuning candidate of the epilogue-free GEMMs: the training forward's
    # logits, dh and dw; the recompute backward's dw and dh, accumulated over vocabulary
    # chunks), forced as if it had won.
    check(33, 40, 100, True, 3, v_chunk=None if not recompute else 40, seed=2, recompute=recompute)
    assert force_extern_gemm and set(force_extern_gemm) == {"lce_mm_kernel"}
    # Recompute: three chunks of 40 columns, dw and dh once per chunk. Training forward: three
    # chunks of 11 rows under the interpreter, logits, dh and dw per chunk.
    assert len(force_extern_gemm) == (6 if recompute else 9)


@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_half_inputs_accumulate_in_float32(recompute):
    # float16 (the interpreter handles it; bfloat16 it does not) takes the separate float32
    # accumulator across chunks: dh's vocabulary chunks (recompute), dw's row chunks (training).
    check(
        33, 24, 72, True, 2, dtype=torch.float16, tol=1e-2, v_chunk=32, seed=2, recompute=recompute
    )


@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_every_row_ignored_gives_zero_loss_and_zero_grads(recompute):
    loss, (h, w, b) = check(7, 24, 40, True, ignored=7, recompute=recompute)
    assert loss.item() == 0.0
    for x in (h, w, b):
        assert torch.count_nonzero(x.grad).item() == 0


@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_custom_ignore_index_and_upstream_scale(recompute):
    # ignore_index = 0 is a real class id: rows targeting it drop out; the upstream grad scales.
    check(33, 24, 40, False, ignored=9, ignore_index=0, grad_scale=3.0, seed=3, recompute=recompute)


@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_large_logits_are_stable(recompute):
    # Logits of magnitude ~ 100: the online log-sum-exp must not overflow.
    check(7, 40, 100, True, 1, scale=60.0, tol=1e-4, seed=4, recompute=recompute)


def test_render_is_deterministic():
    a = render("primitives_linear_cross_entropy.py.jinja", name="lce_det")
    assert a == render("primitives_linear_cross_entropy.py.jinja", name="lce_det")
    assert "lce_det_fwd_kernel" in a and "{{" not in a


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("M,D,V", [(4096, 1024, 32000), (1000, 768, 50257)])
@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_gpu_matches_reference(M, D, V, dtype, tol, recompute):
    check(M, D, V, True, M // 10, dtype=dtype, tol=tol, device="cuda", seed=5, recompute=recompute)


def check_gpu_bf16(seed, recompute):
    """M = 1000, D = 768, V = 5000 in bfloat16 on the GPU, 100 ignored rows; the recompute path
    in vocabulary chunks of 2048."""
    check(
        1000,
        768,
        5000,
        True,
        100,
        dtype=torch.bfloat16,
        tol=1e-2,
        device="cuda",
        seed=seed,
        v_chunk=2048 if recompute else None,
        recompute=recompute,
    )


@pytest.mark.gpu
def test_gpu_tma_main_loops(patch_runtime):
    forced = force_tma(patch_runtime, on_gpu=True)
    check_gpu_bf16(7, recompute=True)
    assert forced == ["lce_fwd_kernel", "dlogits"]


@pytest.mark.gpu
@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_gpu_extern_gemm_choice(force_extern_gemm, recompute):
    check_gpu_bf16(6, recompute)
    assert force_extern_gemm


@pytest.mark.gpu
@pytest.mark.parametrize("recompute", [False, True], ids=["train_forward", "recompute"])
def test_gpu_peak_memory_below_logits(recompute):
    M, D, V = 8192, 1024, 32000
    h = torch.randn(M, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(V, D, device="cuda", dtype=torch.bfloat16) / 32).requires_grad_(True)
    t = torch.randint(0, V, (M,), device="cuda")
    fn = build()
    fn(h, w, None, t, recompute=recompute).backward()  # compile and warm up
    h.grad = w.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(h, w, None, t, recompute=recompute).backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    grads = h.numel() * 2 + w.numel() * 2
    logits = M * V * 2  # the bfloat16 logits eager PyTorch stores
    if recompute:  # one 64 MB dlogits chunk at a time
        bound = logits / 4
    else:  # the criterion: below eager PyTorch's peak by at least the logits
        h.grad = w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        torch.nn.functional.cross_entropy(h @ w.t(), t).backward()
        torch.cuda.synchronize()
        bound = torch.cuda.max_memory_allocated() - base - grads - logits
    assert extra - grads < bound, (extra, grads, logits)


def test_second_backward_of_a_training_forward_is_refused():
    h, w, b, t = make(9, 16, 20, True, 0, 0, 1.0, -100)
    h = h.float().requires_grad_(True)
    loss = build()(h, w.float(), b.float(), t, recompute=False)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="recompute=True"):
        loss.backward()


def test_default_path_follows_the_hidden_width():
    # Below TRAIN_FORWARD_MIN_D the default recomputes (a second backward works, and adds up);
    # at or above it the training forward is taken (a second backward is refused).
    fn = build()
    consts = fn.__globals__  # the rendered module's namespace
    h, w, b, t = make(9, 16, 20, True, 0, 0, 1.0, -100)
    h = h.float().requires_grad_(True)
    loss = fn(h, w.float(), b.float(), t)
    loss.backward(retain_graph=True)
    first = h.grad.clone()
    loss.backward()
    assert torch.allclose(h.grad, 2 * first)
    consts["lce_TRAIN_FORWARD_MIN_D"] = 16
    try:
        h.grad = None
        loss = fn(h, w.float(), b.float(), t)
        loss.backward(retain_graph=True)
        with pytest.raises(RuntimeError, match="recompute=True"):
            loss.backward()
    finally:
        consts["lce_TRAIN_FORWARD_MIN_D"] = 2048
