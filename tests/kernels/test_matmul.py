"""Numerics of the GEMM + fused-epilogue template (`codegen_templates/primitives_matmul.py.jinja`).

On a machine without CUDA the kernels run under the Triton interpreter in float32 and are compared,
forward and backward (the `.grad` of every input), with a float64 torch reference built from the
same epilogue list by an independent rule table. GPU tests (float32 and bfloat16 at realistic
sizes) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools
import math
import subprocess
import sys

import jinja2
import pytest
from sparkc.runtime.loader import load_source

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

ACT_REF = {
    "relu": torch.relu,
    "gelu": lambda z: 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0))),
    "silu": lambda z: z * torch.sigmoid(z),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def ref_step(z, step, ops):
    kind, _, arg = step.partition(":")
    table = {
        "bias": lambda: z + ops["bias"],
        "act": lambda: ACT_REF.get(arg, lambda t: None)(z),
        "mul": lambda: z * ops.get(arg),
        "add": lambda: z + ops.get(arg),
        "scale": lambda: z * float(arg or 0),
    }
    return table[kind]()


def reference(x, weights, epilogue, ops, kinks=None):
    """Float64 epilogue(x @ wᵀ); appends the input of every relu to `kinks` when given."""
    if len(weights) == 2:
        z = torch.nn.functional.silu(x @ weights[0].t()) * (x @ weights[1].t())
    else:
        z = x @ weights[0].t()
    for step in epilogue:
        if kinks is not None and step == "act:relu":
            kinks.append(z.detach())
        z = ref_step(z, step, ops)
    return z


def operand_names(epilogue):
    names = []
    for step in epilogue:
        kind, _, arg = step.partition(":")
        name = "bias" if kind == "bias" else (arg if kind in ("mul", "add") else None)
        if name and name not in names:
            names.append(name)
    return names


def build(name, epilogue, dual=False, **extra):
    return _build(name, tuple(epilogue), dual, tuple(sorted(extra.items())))


@functools.cache
def _build(name, epilogue, dual, extra):
    epilogue, extra = list(epilogue), dict(extra)
    prelude = render("prelude.py.jinja", version="test", source_name="test_matmul")
    fragment = render(
        "primitives_matmul.py.jinja", name=name, epilogue=epilogue, dual=dual, **extra
    )
    text = prelude + "\n\n" + fragment
    return getattr(load_source(name, text), name)


def instance_name(epilogue, dual):
    parts = ["mm", "dual" if dual else "plain"]
    parts += [s.replace(":", "_").replace(".", "p").replace("-", "m") for s in epilogue]
    return "_".join(parts)


def rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def run_case(epilogue, dual, M, K, N, dtype=torch.float32, device=DEVICE, tol=1e-4, x_t=False):
    torch.manual_seed(M * 1000 + K * 10 + N)
    fn = build(instance_name(epilogue, dual), epilogue, dual)
    x64 = (
        torch.randn(K, M, dtype=torch.float64).t()
        if x_t
        else torch.randn(M, K, dtype=torch.float64)
    )
    weights64 = [
        torch.randn(N, K, dtype=torch.float64) / math.sqrt(K) for _ in range(2 if dual else 1)
    ]
    ops64 = {}
    for op in operand_names(epilogue):
        shape = (N,) if op == "bias" else (M, N)
        ops64[op] = torch.randn(*shape, dtype=torch.float64)
    dy64 = torch.randn(M, N, dtype=torch.float64)

    def leaves(dt, dev):
        # Through `dtype` first: the reference sees exactly the kernel's (rounded) inputs.
        x = x64.to(dtype).to(dtype=dt, device=dev)
        if x_t:
            x = x.t().contiguous().t()
        ws = [w.to(dtype).to(dtype=dt, device=dev) for w in weights64]
        ops = {k: v.to(dtype).to(dtype=dt, device=dev) for k, v in ops64.items()}
        for t in [x, *ws, *ops.values()]:
            t.requires_grad_(True)
        return x, ws, ops

    # relu's derivative jumps at 0: where a pre-activation is within rounding of 0 the kernel and
    # the float64 reference may take different sides. No upstream gradient flows there.
    rx, rws, rops = leaves(torch.float64, device)
    kinks = []
    with torch.no_grad():
        reference(rx, rws, epilogue, rops, kinks)
    dy64 = dy64.to(device)
    for z in kinks:
        dy64 = torch.where(z.abs() < (1e-4 if dtype == torch.float32 else 2e-2) * z.std(), 0, dy64)

    x, ws, ops = leaves(dtype, device)
    y = fn(x, *ws, *[ops[k] for k in operand_names(epilogue)])
    y.backward(dy64.to(dtype=dtype, device=device))

    ry = reference(rx, rws, epilogue, rops)
    ry.backward(dy64)

    assert y.shape == (M, N) and y.dtype == dtype
    assert rel_err(y, ry) < tol, ("y", rel_err(y, ry))
    pairs = [("x", x, rx)] + [(f"w{i}", w, rw) for i, (w, rw) in enumerate(zip(ws, rws))]
    pairs += [(k, ops[k], rops[k]) for k in ops]
    for label, t, rt in pairs:
        assert t.grad is not None and t.grad.shape == t.shape, label
        err = rel_err(t.grad, rt.grad)
        assert err < tol, (label, err)


# The combinations sparkc's lowering uses, on odd sizes that are not block multiples.
CASES = [
    ("none", [], False, 7, 24, 10),
    ("bias", ["bias"], False, 33, 40, 72),
    ("bias_gelu", ["bias", "act:gelu"], False, 33, 24, 72),
    ("bias_relu", ["bias", "act:relu"], False, 7, 40, 10),
    ("swiglu", [], True, 33, 40, 10),
    ("bias_add", ["bias", "add:res"], False, 7, 24, 72),
    ("mul", ["mul:gate"], False, 33, 40, 10),
    ("chain", ["bias", "act:silu", "mul:gate", "scale:0.5", "add:res"], False, 7, 40, 72),
    ("acts", ["act:tanh", "act:sigmoid", "scale:-2.0"], False, 33, 24, 10),
    ("repeated_operand", ["mul:g", "act:tanh", "mul:g", "bias", "bias"], False, 7, 24, 10),
    ("swiglu_epilogue", ["scale:0.5", "add:res"], True, 7, 24, 72),
    ("single_row", ["bias", "act:gelu"], False, 1, 40, 33),
    # Pass-through chains (bias and residual adds, each residual once): dy is the gradient.
    ("add", ["add:res"], False, 33, 40, 72),
    ("bias_two_residuals", ["add:r1", "bias", "add:r2"], False, 7, 24, 10),
    ("residual_twice", ["add:res", "add:res"], False, 7, 24, 10),  # 2·dy: not pass-through
]


@pytest.mark.parametrize("epilogue,dual,M,K,N", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_forward_backward_matches_float64(epilogue, dual, M, K, N):
    run_case(epilogue, dual, M, K, N)


def force_tma(patch_runtime, persistent=False):
    """Make every matmul forward take the tensor-descriptor main loop (a tuning candidate), in a
    persistent grid when `persistent`; returns the list of the `tma` flags the forwards passed
    to the tuner."""
    from sparkc.runtime import launch

    real, used = launch.tuned_gemm, []

    def forced(kernel, heuristic, M, N, K, like, run, dual=False, tma=False, extern=None, **kw):
        cfg = real(kernel, heuristic, M, N, K, like, run, dual)
        if getattr(kernel, "fn", kernel).__name__.endswith("_fwd_kernel"):
            used.append(tma)
            return {**cfg, "USE_TMA": True, "PERSISTENT": persistent}
        return cfg

    patch_runtime("tuned_gemm", forced)
    return used


@pytest.mark.parametrize("where", ["device", "host"], ids=["kernel-desc", "host-desc"])
@pytest.mark.parametrize("case", ["bias_gelu", "swiglu", "chain", "single_row", "none"])
def test_tma_main_loop_matches_float64(monkeypatch, case, where, patch_runtime):
    # The tensor-descriptor (TMA) main loop is a GPU tuning candidate for 16-bit operands; here
    # the forward kernel is forced onto it under the interpreter (float32: the interpreter's
    # descriptors take any dtype), edge tiles and K tails read as zeros through the descriptors,
    # which the kernel builds from pointers (the default) or takes from the host.
    from sparkc.runtime import launch

    monkeypatch.setenv("SPARKC_TMA_DEVICE", "1" if where == "device" else "0")
    assert launch.tma_on_device() == (where == "device")
    made = []
    real_desc = launch.tma_descriptor
    patch_runtime("tma_descriptor", lambda *a: made.append(1) or real_desc(*a))
    used = force_tma(patch_runtime)
    patch_runtime("tma_ok", lambda *ts: all(t.stride(1) == 1 for t in ts))
    epilogue, dual, M, K, N = next(c[1:] for c in CASES if c[0] == case)
    run_case(epilogue, dual, M, K, N)
    assert used == [True]
    assert bool(made) == (where == "host")


@pytest.mark.parametrize("case", ["bias_gelu", "swiglu", "single_row", "none"])
def test_persistent_tma_grid_matches_float64(case, patch_runtime):
    # The persistent grid: under the interpreter 2 programs (its 2 "SMs") walk every tile in
    # the grouped order, edge tiles included.
    from sparkc.runtime import launch

    used = force_tma(patch_runtime, persistent=True)
    patch_runtime("tma_ok", lambda *ts: all(t.stride(1) == 1 for t in ts))
    grids = []
    real_sm_count = launch.sm_count
    patch_runtime("sm_count", lambda t: grids.append(1) or real_sm_count(t))
    epilogue, dual, M, K, N = next(c[1:] for c in CASES if c[0] == case)
    run_case(epilogue, dual, M, K, N)
    assert used == [True] and grids


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["bias_gelu", "swiglu", "chain"])
@pytest.mark.parametrize("persistent", [False, True], ids=["grid", "persistent"])
@pytest.mark.parametrize("where", ["device", "host"], ids=["kernel-desc", "host-desc"])
def test_gpu_tma_main_loop(monkeypatch, case, persistent, where, patch_runtime):
    # GPU test runs do not tune (SPARKC_TUNE=0), so the descriptor loop is forced here: bfloat16,
    # sizes that are not tile multiples (K = 520: a K tail of 8).
    monkeypatch.setenv("SPARKC_TMA_DEVICE", "1" if where == "device" else "0")
    used = force_tma(patch_runtime, persistent)
    epilogue, dual = next(c[1:3] for c in CASES if c[0] == case)
    run_case(epilogue, dual, 1000, 520, 776, dtype=torch.bfloat16, tol=1e-2)
    assert used == [True]


EXTERN_CASES = ["none", "bias_gelu", "swiglu", "single_row", "acts", "chain", "mul", "bias_add"]
EXTERN_CASES += ["repeated_operand", "bias"]


@pytest.mark.parametrize("case", EXTERN_CASES)
def test_extern_gemm_choice_matches_float64(force_extern_gemm, case):
    # torch's own GEMM is a tuning candidate of every GEMM product but SwiGLU's forward: the
    # forward of a single-weight GEMM (with an epilogue: then one elementwise pass, NAME_epi_kernel,
    # applies it to the z0 torch wrote, saving z0 in place ("acts", "mul") or a later step's input
    # ("chain", "bias_gelu")), or with a bias-only epilogue ("bias") torch's GEMM with the bias in
    # its own epilogue (addmm, one pass), the backward's dX and dW (SwiGLU: its one dW GEMM; its
    # dX sums two products and stays on the kernel). Forced here, as if it had won.
    epilogue, dual, M, K, N = next(c[1:] for c in CASES if c[0] == case)
    run_case(epilogue, dual, M, K, N)
    plain = [f"{instance_name(epilogue, dual)}_mm_kernel"] * (1 if dual else 2)
    first = [f"{instance_name(epilogue, dual)}_fwd_kernel"] if not dual else []
    assert force_extern_gemm == first + plain


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["none", "bias_gelu", "bias"])
def test_gpu_extern_gemm_choice(force_extern_gemm, case):
    epilogue, dual = next(c[1:3] for c in CASES if c[0] == case)
    run_case(epilogue, dual, 1000, 520, 776, dtype=torch.bfloat16, tol=1e-2)
    assert len(force_extern_gemm) == 3


def test_tma_needs_aligned_16_bit_rows():
    from sparkc.runtime import launch, tma

    if tma._tensor_descriptor_class() is None:
        pytest.fail("this Triton has no triton.tools.tensor_descriptor (3.4+ is required)")
    x = torch.zeros(8, 64, dtype=torch.bfloat16, device=DEVICE)
    assert launch.tma_ok(x, torch.zeros(16, 64, dtype=torch.float16, device=DEVICE))
    assert not launch.tma_ok(x.float())  # 32-bit operands keep the pointer main loop
    assert not launch.tma_ok(x.t())  # last stride is not 1
    assert launch.tma_ok(x[:, :60])  # a column slice keeps 128-byte rows
    assert not launch.tma_ok(torch.zeros(8, 60, dtype=torch.bfloat16, device=DEVICE))  # 120 B
    assert not launch.tma_ok(x.view(-1)[1:65].view(1, 64))  # base not 16-byte aligned


def test_tma_can_be_switched_off(monkeypatch):
    from sparkc.runtime import launch

    x = torch.zeros(8, 64, dtype=torch.bfloat16, device=DEVICE)
    assert launch.tma_ok(x)
    monkeypatch.setenv("SPARKC_GEMM_TMA", "0")  # for side-by-side measurements
    assert not launch.tma_ok(x)


def test_strided_input():
    # x as a transposed (column-major) view: the kernels read any strides.
    run_case(["bias", "act:relu"], False, 33, 40, 10, x_t=True)


def test_forward_without_grad_matches():
    fn = build("mm_nograd_bias_gelu", ["bias", "act:gelu"])
    x, w, b = torch.randn(7, 24), torch.randn(10, 24), torch.randn(10)
    y = fn(x, w, b)
    ref = reference(x.double(), [w.double()], ["bias", "act:gelu"], {"bias": b.double()})
    assert not y.requires_grad
    assert rel_err(y, ref) < 1e-4


def test_two_instances_share_one_module():
    prelude = render("prelude.py.jinja", version="test", source_name="two")
    a = render("primitives_matmul.py.jinja", name="lin_a", epilogue=["bias"])
    b = render("primitives_matmul.py.jinja", name="lin_b", epilogue=["act:relu"], dual=False)
    mod = load_source("mm_two_instances", prelude + "\n\n" + a + "\n\n" + b)
    x, w, bias = torch.randn(7, 24), torch.randn(10, 24), torch.randn(10)
    assert rel_err(mod.lin_a(x, w, bias), x.double() @ w.double().t() + bias.double()) < 1e-4
    assert rel_err(mod.lin_b(x, w), torch.relu(x.double() @ w.double().t())) < 1e-4


def test_render_is_deterministic_and_formatted():
    ctx = {"name": "mm_fmt", "epilogue": ["bias", "act:gelu", "mul:g", "add:r", "scale:0.5"]}
    text = render("primitives_matmul.py.jinja", **ctx)
    assert text == render("primitives_matmul.py.jinja", **ctx)
    for extra in ({}, {"dual": True}):
        text = render("primitives_matmul.py.jinja", **{**ctx, **extra})
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--check", "--line-length", "100", "-"],
            input=text,
            check=False,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "epilogue,needle",
    [
        (["act:swish"], "unknown activation"),
        (["dropout"], "unknown epilogue step"),
        (["mul:x"], "bad operand name"),
        (["add:bias"], "bad operand name"),
        (["mul:dy"], "bad operand name"),
        (["mul:tma"], "bad operand name"),  # a local of the forward's launcher
    ],
)
def test_render_rejects_bad_epilogues(epilogue, needle):
    with pytest.raises(jinja2.UndefinedError, match=needle):
        render("primitives_matmul.py.jinja", name="bad", epilogue=epilogue)


# M >= 2048 takes the 128x256 tiles (3000 is not a multiple of 128); M <= 64 the decode tiles.
GPU_SIZES = [(3000, 1024, 2816), (37, 768, 3072)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("M,K,N", GPU_SIZES)
@pytest.mark.parametrize(
    "epilogue,dual", [c[1:3] for c in CASES[:8]], ids=[c[0] for c in CASES[:8]]
)
def test_gpu_matches_reference(epilogue, dual, M, K, N, dtype, tol):
    run_case(epilogue, dual, M, K, N, dtype=dtype, device="cuda", tol=tol)


def _many_case(M, K, widths, dtype, device, adjacent_grads, tol):
    """The horizontally fused projection `<name>_many(x, *ws)` against float64 x @ wᵢᵀ, forward and
    the gradients of x and every weight; `adjacent_grads`: the output gradients arrive as column
    blocks of one buffer (what attention's backward writes), else as separate tensors."""
    torch.manual_seed(M + K + sum(widths))
    mod = build("mm_many_plain", [])
    many = sys.modules[mod.__module__].mm_many_plain_many
    x64 = torch.randn(M, K, dtype=torch.float64)
    ws64 = [torch.randn(n, K, dtype=torch.float64) / math.sqrt(K) for n in widths]
    dys64 = [torch.randn(M, n, dtype=torch.float64) for n in widths]
    x = x64.to(dtype).to(device).requires_grad_()
    ws = [w.to(dtype).to(device).requires_grad_() for w in ws64]
    outs = many(x, *ws)
    assert [tuple(o.shape) for o in outs] == [(M, n) for n in widths]
    # One buffer: the outputs are its column blocks (views), in order.
    assert len({o.untyped_storage().data_ptr() for o in outs}) == 1
    if adjacent_grads:
        buf = torch.cat(dys64, 1).to(dtype).to(device)
        starts = [sum(widths[:i]) for i in range(len(widths))]
        dys = [buf[:, s : s + n] for s, n in zip(starts, widths)]
    else:
        dys = [d.to(dtype).to(device) for d in dys64]
    torch.autograd.backward(outs, dys)
    xr = x64.to(dtype).double().requires_grad_()
    wr = [w.to(dtype).double().requires_grad_() for w in ws64]
    refs = [xr @ w.t() for w in wr]
    torch.autograd.backward(refs, [d.to(dtype).double() for d in dys64])
    for out, ref in zip(outs, refs):
        assert rel_err(out, ref) < tol
    assert rel_err(x.grad, xr.grad) < tol
    for w, r in zip(ws, wr):
        assert rel_err(w.grad, r.grad) < tol


@pytest.mark.parametrize("adjacent", [True, False], ids=["adjacent-grads", "separate-grads"])
@pytest.mark.parametrize("widths", [(24, 24, 24), (24, 8, 8)], ids=["mha", "gqa"])
def test_many_projection_matches_float64(adjacent, widths):
    _many_case(19, 24, widths, torch.float32, DEVICE, adjacent, 1e-4)


def test_many_projection_reads_adjacent_gradients_in_place(patch_runtime):
    # Gradients written as column blocks of one buffer reach the backward GEMMs as that buffer
    # (no stacking copy); separate ones are stacked.
    from sparkc.runtime import launch

    seen = []
    real = launch.adjacent_columns
    patch_runtime("adjacent_columns", lambda m, w: seen.append(real(m, w)) or seen[-1])
    for adjacent in (True, False):
        _many_case(9, 16, (16, 8, 8), torch.float32, DEVICE, adjacent, 1e-4)
    shared, stacked = seen
    assert shared._base is not None and shared.shape == (9, 32)
    assert stacked._base is None and stacked.is_contiguous()


def test_column_block_helpers():
    from sparkc.runtime import launch

    buf = torch.randn(6, 10)
    blocks = [buf[:, 0:4], buf[:, 4:7], buf[:, 7:10]]
    whole = launch.adjacent_columns(blocks, [4, 3, 3])
    assert whole.data_ptr() == buf.data_ptr() and torch.equal(whole, buf)
    # Out of order, a gap, or another buffer: stacked copies.
    for mats in ([blocks[1], blocks[0], blocks[2]], [buf[:, 0:4], buf[:, 5:8], buf[:, 7:10]]):
        widths = [m.shape[1] for m in mats]
        got = launch.adjacent_columns(mats, widths)
        assert got.data_ptr() != buf.data_ptr() and torch.equal(got, torch.cat(mats, 1))
    # bnhd views of one [B·N, 3·H·d] buffer get gradient buffers laid out the same way.
    qkv = torch.randn(2 * 5, 3 * 2 * 4)
    q, k, v = (qkv[:, i * 8 : (i + 1) * 8].view(2, 5, 2, 4) for i in range(3))
    dq, dk, dv = launch.grads_like(q, k, v)
    assert [t.stride() for t in (dq, dk, dv)] == [q.stride()] * 3
    assert dk.data_ptr() == dq.data_ptr() + 8 * dq.element_size()
    # Grouped-query heads (k, v narrower than q) lay out the same way.
    qkv = torch.randn(2 * 5, (4 + 2 + 2) * 4)
    q = qkv[:, :16].view(2, 5, 4, 4)
    k, v = (qkv[:, 16 + i * 8 : 24 + i * 8].view(2, 5, 2, 4) for i in range(2))
    dq, dk, dv = launch.grads_like(q, k, v)
    assert (dq.stride(), dk.stride(), dv.stride()) == (q.stride(), k.stride(), v.stride())
    assert dv.data_ptr() == dq.data_ptr() + 24 * dq.element_size()
    whole = launch.adjacent_columns([t.reshape(10, -1) for t in (dq, dk, dv)], [16, 8, 8])
    assert whole.data_ptr() == dq.data_ptr() and whole.shape == (10, 32)
    # Contiguous separate tensors: separate contiguous gradients.
    a, b = torch.randn(2, 5, 2, 4), torch.randn(2, 5, 2, 4)
    ga, gb = launch.grads_like(a, b)
    assert ga.is_contiguous() and gb.is_contiguous() and ga.data_ptr() != gb.data_ptr()


def test_stacked_weights_are_kept_only_inside_frozen_weights_and_while_unchanged():
    import gc

    from sparkc.runtime import launch, stacking

    import sparkc

    ws = [torch.randn(n, 8) for n in (8, 4, 4)]
    first = launch.stacked_rows(ws, keep=True)
    assert launch.stacked_rows(ws, keep=True) is not first  # outside the block: never kept
    assert not stacking._STACKED
    with sparkc.frozen_weights():
        first = launch.stacked_rows(ws, keep=True)
        assert torch.equal(first, torch.cat(ws, 0))
        assert launch.stacked_rows(ws, keep=True) is first  # unchanged weights: no copy
        assert launch.stacked_rows(ws, keep=False) is not first  # gradients flow: fresh
        assert tuple(id(w) for w in ws) not in stacking._STACKED  # and the kept copy is dropped
        first = launch.stacked_rows(ws, keep=True)
        with torch.no_grad():
            ws[1].mul_(2)  # a tracked in-place update (optimizer step, load_state_dict)
        again = launch.stacked_rows(ws, keep=True)
        assert again is not first and torch.equal(again, torch.cat(ws, 0))
        # The entry goes with its weights, so tensors later at their addresses are never a hit.
        key = tuple(id(w) for w in ws)
        assert key in stacking._STACKED
        values = [w.clone() for w in ws]
        del ws
        gc.collect()
        assert key not in stacking._STACKED
        assert torch.equal(launch.stacked_rows(values, keep=True), torch.cat(values, 0))
        with sparkc.frozen_weights():  # nested blocks: the outermost one frees
            pass
        assert stacking._STACKED
    assert not stacking._STACKED


def test_many_projection_decodes_with_kept_weights_and_sees_weight_updates():
    # Decoding inside frozen_weights(): the second call reuses the stacked weights, and a weight
    # update in between (load_state_dict copies in place) reaches the output.
    from sparkc.runtime import launch

    mod = build("mm_many_plain", [])
    many = sys.modules[mod.__module__].mm_many_plain_many
    ws = [torch.nn.Parameter(torch.randn(n, 16) / 4) for n in (16, 8, 8)]
    x = torch.randn(3, 16)
    cats = []
    real = torch.cat
    with pytest.MonkeyPatch.context() as mp, launch.frozen_weights():
        mp.setattr(torch, "cat", lambda *a, **k: cats.append(1) or real(*a, **k))
        for step in range(3):
            with torch.no_grad():
                if step == 2:
                    ws[0].copy_(torch.randn(16, 16))
                outs = many(x, *ws)
            for o, w in zip(outs, ws):
                torch.testing.assert_close(o, x @ w.detach().t(), rtol=1e-5, atol=1e-5)
    assert len(cats) == 2  # stacked on the first call and after the update, not on the second


def test_weights_kept_under_inference_mode_serve_a_later_backward_to_the_input():
    # Generation under torch.inference_mode(), then training something upstream of frozen
    # projection weights: the kept copy is saved for the backward, so it must not be an
    # inference tensor.
    from sparkc.runtime import launch, stacking

    mod = build("mm_many_plain", [])
    many = sys.modules[mod.__module__].mm_many_plain_many
    ws = [torch.randn(n, 16) / 4 for n in (16, 8, 8)]
    with launch.frozen_weights():
        with torch.inference_mode():
            many(torch.randn(3, 16), *ws)
        x = torch.randn(3, 16, requires_grad=True)
        outs = many(x, *ws)
        assert stacking._STACKED  # the backward below reads the kept copy
        sum(o.sum() for o in outs).backward()
    expected = sum(w.sum(0) for w in ws).expand(3, 16)
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_gpu_many_projection(dtype, tol):
    _many_case(3000, 1024, (1024, 256, 256), dtype, "cuda", True, tol)


@pytest.mark.parametrize(
    "epilogue,kernel_launched", [(["add:res"], False), (["bias", "add:res"], True)]
)
def test_pass_through_backward_passes_dy_on(epilogue, kernel_launched):
    # A chain of bias and residual adds hands dy itself on as dL/dz0 and as the residual's
    # gradient (no copies); the epilogue kernel runs only for the bias's column sums.
    fn = build(instance_name(epilogue, False), epilogue)
    mod = sys.modules[fn.__module__]
    x, w = torch.randn(9, 24, requires_grad=True), torch.randn(10, 24, requires_grad=True)
    ops = [torch.randn(10, requires_grad=True)] if "bias" in epilogue else []
    res = torch.randn(9, 10, requires_grad=True)
    launched = []
    kernel = getattr(mod, instance_name(epilogue, False) + "_bwd_epilogue_kernel")
    real_getitem = type(kernel).__getitem__
    y = fn(x, w, *ops, res)
    dy = torch.randn(9, 10)
    try:
        type(kernel).__getitem__ = lambda self, grid: (
            launched.append(self) or real_getitem(self, grid)
        )
        y.backward(dy)
    finally:
        type(kernel).__getitem__ = real_getitem
    assert torch.equal(res.grad, dy)
    assert (kernel in launched) == kernel_launched
    if ops:
        assert rel_err(ops[0].grad, dy.double().sum(0)) < 1e-6


@pytest.mark.parametrize(
    "case", ["bias", "bias_add", "bias_two_residuals"], ids=["bias", "bias_add", "two_residuals"]
)
def test_bias_gradient_folded_into_the_weight_gradient_gemm(monkeypatch, patch_runtime, case):
    """Where dy is large (here: always) a bias-only epilogue's bias gradient is the extra column
    of the weight-gradient GEMM over [x | 1 0…] (`fold_bias_dw`), not a column-sum pass: every
    gradient still matches float64, and the fold ran once per backward."""
    from sparkc.runtime import gemm

    monkeypatch.setattr(gemm, "FOLD_BIAS_MIN_ELEMENTS", 0)
    calls = []
    real = gemm.fold_bias_dw
    patch_runtime("fold_bias_dw", lambda *a: calls.append(a[2].shape) or real(*a))
    _, epilogue, dual, M, K, N = next(c for c in CASES if c[0] == case)
    run_case(epilogue, dual, M, K, N)
    assert calls == [(M, K)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_gpu_bias_gradient_folded(monkeypatch, dtype, tol):
    from sparkc.runtime import gemm

    monkeypatch.setattr(gemm, "FOLD_BIAS_MIN_ELEMENTS", 0)
    run_case(["bias"], False, 333, 256, 1000, dtype=dtype, device="cuda", tol=tol)


def test_bias_gradient_of_a_frozen_weight_is_a_column_sum(monkeypatch, patch_runtime):
    """Without a weight gradient there is no GEMM to fold the bias into: the column sums run."""
    from sparkc.runtime import gemm

    monkeypatch.setattr(gemm, "FOLD_BIAS_MIN_ELEMENTS", 0)
    patch_runtime("fold_bias_dw", lambda *a: pytest.fail("folded without a weight gradient"))
    fn = build(instance_name(["bias"], False), ["bias"])
    x, w = torch.randn(9, 24, requires_grad=True), torch.randn(10, 24)
    bias = torch.randn(10, requires_grad=True)
    dy = torch.randn(9, 10)
    fn(x, w, bias).backward(dy)
    assert rel_err(bias.grad, dy.double().sum(0)) < 1e-6 and w.grad is None


def test_relu_mask_of_backward_is_the_forward_s_after_a_bias():
    """bias then relu, half precision: z0 = 0.25 + 2⁻¹⁴ rounds to 0.25 in float16, and the bias is
    −0.25, so the forward's relu input is 2⁻¹⁴ > 0 (the output passes it). The backward must use
    that same mask: recomputing z0 + bias from the rounded z0 gives exactly 0 and dropped the
    gradient of such elements (spd_router's pred1.bias gradient in bfloat16 on the GPU)."""
    dtype = torch.float16
    fn = build(instance_name(["bias", "act:relu"], False), ["bias", "act:relu"])
    x = torch.tensor([[1.0, 2.0**-14], [1.0, -1.0]], dtype=dtype, device=DEVICE, requires_grad=True)
    w = torch.tensor([[0.25, 1.0]], dtype=dtype, device=DEVICE, requires_grad=True)
    bias = torch.tensor([-0.25], dtype=dtype, device=DEVICE, requires_grad=True)
    y = fn(x, w, bias)
    assert y[0, 0].item() == 2.0**-14 and y[1, 0].item() == 0.0  # the forward passes row 0 only
    y.backward(torch.ones_like(y))
    assert bias.grad.item() == 1.0  # row 0's gradient, not 0
    assert x.grad[0].tolist() == [0.25, 1.0] and x.grad[1].tolist() == [0.0, 0.0]
