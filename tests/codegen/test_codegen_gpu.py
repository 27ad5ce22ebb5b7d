"""Generated modules on a CUDA device: real compiled Triton kernels, forward and backward, in
float32 and bfloat16 against the float64 reference path; and tiny_gpt training on its kernels.
Skipped without CUDA (marker `gpu`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from programs import PROGRAMS

from sparkc import api

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
# float32 runs IEEE matmuls (rtol ~1e-5); bfloat16 carries 8 mantissa bits through every layer.
TOL = {torch.float32: 2e-4, torch.bfloat16: 5e-2}


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-2 * max(1, b.numel()) ** 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_generated_kernels_match_reference_on_gpu(name, dtype):
    src, makers = PROGRAMS[name]
    module = api.load_source(src, f"{name}.spark")
    torch.manual_seed(0)
    ref = module.Model(impl="reference").double().cuda()
    tri = module.Model(impl="triton").cuda()
    tri.load_state_dict(ref.state_dict())
    tri.to(dtype)
    g = torch.Generator().manual_seed(7)
    for b, n in [(2, 37), (3, 130)]:
        data = {k: make(b, n, g).cuda() for k, make in makers.items()}
        ref_in = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in data.items()}
        tri_in = {
            k: v.to(dtype).requires_grad_(True) if v.is_floating_point() else v
            for k, v in data.items()
        }
        out_r = ref(**ref_in)
        out_t = tri(**tri_in)
        for k, v in out_r.items():
            if isinstance(v, torch.Tensor):
                assert torch.isfinite(out_t[k]).all(), k
                assert _rel(out_t[k], v) < TOL[dtype], (name, k, _rel(out_t[k], v))
        total_r = sum(
            v.double().sum()
            for k, v in out_r.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "aux_loss"
        )
        total_t = sum(
            v.float().sum()
            for k, v in out_t.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "aux_loss"
        )
        ref.zero_grad()
        tri.zero_grad()
        total_r.backward()
        total_t.backward()
        for (pn, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
            assert pt.grad is not None and torch.isfinite(pt.grad).all(), pn
            assert _rel(pt.grad, pr.grad) < 3 * TOL[dtype], (name, pn, _rel(pt.grad, pr.grad))
        for k, v in ref_in.items():
            if v.is_floating_point():
                assert _rel(tri_in[k].grad, v.grad) < 3 * TOL[dtype], (name, k)


def test_tiny_gpt_trains_on_generated_kernels():
    """Every op of tiny_gpt runs in generated kernels on the GPU, and the loss falls."""
    from sparkc.tools.demo_data import progressions

    module = api.load(ROOT / "examples" / "tiny_gpt.spark")
    assert module.TRITON_COVERAGE["reference_ops"] == ()
    torch.manual_seed(0)
    net = module.Model().cuda()
    assert net._use_triton(torch.empty(0, device="cuda"))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(150):
        tokens, targets = progressions(16, 32, 64, gen)
        out = net(tokens.cuda(), targets.cuda())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.25 * losses[0], losses[::15]


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_of_the_triton_path(backend):
    """`torch.compile` over the generated module (its autograd Functions, Triton launches and the
    fused q/k/v projection whose outputs are views of one buffer) gives the uncompiled loss and
    gradients."""
    module = api.load(ROOT / "examples" / "tiny_gpt.spark")
    torch.manual_seed(0)
    net = module.Model().cuda()
    tokens = torch.randint(0, 64, (2, 37), device="cuda")
    out = net(tokens, tokens)
    out.loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    compiled = torch.compile(net, backend=backend)
    out2 = compiled(tokens, tokens)
    out2.loss.backward()
    assert _rel(out2.loss, out.loss) < 1e-5
    for g, p in zip(grads, net.parameters()):
        assert _rel(p.grad, g) < 1e-4


@pytest.mark.parametrize("name", ["spark_k", "splatflow", "hspmn"])
def test_example_triton_path_matches_reference_on_gpu(name):
    """One forward+backward of each example through its generated kernels (float32) against
    its reference path in float64 on the same parameters and seed."""
    from sparkc.tools.demo_data import progressions

    module = api.load(ROOT / "examples" / f"{name}.spark")
    torch.manual_seed(0)
    ref = module.Model(impl="reference").double().cuda()
    tri = module.Model(impl="triton").cuda()
    tri.load_state_dict(ref.state_dict())
    vocab = int(module.HYPER["vocab"])
    tokens, targets = progressions(4, 40, vocab, torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    a = ref(tokens.cuda(), targets.cuda())
    torch.manual_seed(5)
    b = tri(tokens.cuda(), targets.cuda())
    assert _rel(b.loss, a.loss) < 1e-3
    a.loss.backward()
    b.loss.backward()
    for (pn, pr), (_, pt) in zip(ref.named_parameters(), tri.named_parameters()):
        if pr.grad is None:
            assert pt.grad is None, pn
            continue
        assert _rel(pt.grad, pr.grad) < 1e-3, (name, pn, _rel(pt.grad, pr.grad))


# (example, overrides, steps, learning rate): the CPU training cases of test_examples_train.py,
# here at the examples' own widths, on their generated kernels.
TRAIN_CASES = [
    ("spark_k", {}, 200, 3e-3),
    ("splatflow", {}, 120, 3e-3),
    ("hspmn", {}, 120, 3e-3),
]


@pytest.mark.parametrize("name, hyper, steps, lr", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_example_trains_on_generated_kernels(name, hyper, steps, lr):
    """Each example learns the next-token task on its Triton path: the task loss (`ce`) ends
    well below ln(vocab) and below half its start."""
    import math

    from training import task_losses

    module = api.load(ROOT / "examples" / f"{name}.spark", **hyper)
    torch.manual_seed(0)
    net = module.Model(impl="triton").cuda()
    vocab = int(module.HYPER["vocab"])
    losses = task_losses(net, vocab, steps, lr, device="cuda", length=32)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * math.log(vocab) and last < 0.5 * first, (name, first, last)
