"""A whole training step replayed from a CUDA graph (runtime/train_graph.py, `sparkc.graphed`).

On the CPU the CUDA side is emulated (`CpuTrainStep`): the capture records the step without
running it and returns static outputs; each replay re-runs the recorded step on the static input
buffers (gradients cleared first, as a real replay overwrites them) and refills those outputs. That checks everything but the CUDA calls themselves: every
call is one real step (graphed training equals the eager loop bit for bit, the optimizer's state
included), the inputs reach the graph only through the static buffers, the rules of a recorded
step (fixed shapes, inputs validated before each replay, capturable optimizers, re-recording
after a parameter is replaced). The GPU tests (marked) replay real graphs: tiny_gpt on the Triton
path with AdamW(capturable=True) against the eager loop, and a replay issues no host
synchronisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sparkc.runtime import train_graph as tg
from sparkc.runtime.module_support import InputError, ModelOutput

import sparkc

ROOT = Path(__file__).resolve().parents[2]
HYPER = {"d": 16, "heads": 2, "layers": 1, "vocab": 13, "max_len": 16}


class CpuTrainStep(tg.TrainStep):
    """`TrainStep` with the CUDA side emulated (module docstring)."""

    captures = replays = 0

    def _require_device(self, device):
        pass

    def _warm(self, fn):
        return fn()

    def _capture(self, fn):
        self.fn = fn
        self.captures += 1
        self.static_out = ModelOutput()
        return self.static_out

    def _replay(self):
        # A real replay writes the gradients into the buffers the recorded backward allocated
        # (they were None at capture): fresh values, no accumulation. Re-running Python would
        # accumulate, so the emulation clears them first.
        self.model.zero_grad(set_to_none=True)
        out = self.fn()
        self.static_out.clear()
        self.static_out.update({k: v.detach() for k, v in out.items()})
        self.replays += 1


def _pair(impl: str = "reference"):
    mod = sparkc.load(ROOT / "examples" / "tiny_gpt.spark")
    torch.manual_seed(0)
    eager = mod.Model(impl=impl, **HYPER)
    graphed = mod.Model(impl=impl, **HYPER)
    graphed.load_state_dict(eager.state_dict())
    return eager, graphed


def _batches(n: int, b: int = 2, t: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "tokens": torch.randint(0, HYPER["vocab"], (b, t), generator=g),
            "targets": torch.randint(0, HYPER["vocab"], (b, t), generator=g),
        }
        for _ in range(n)
    ]


def _sgd(net):
    return torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_graphed_training_equals_the_eager_loop(impl):
    eager, net = _pair(impl)
    opt_e, opt_g = _sgd(eager), _sgd(net)
    # The Triton path runs under the interpreter: fewer steps (one warm-up, a recording, replays).
    warmup, steps = (2, 6) if impl == "reference" else (1, 4)
    step = CpuTrainStep(net, opt_g, warmup=warmup)
    batches = _batches(steps)
    for k, batch in enumerate(batches):
        opt_e.zero_grad(set_to_none=True)
        want = eager(**batch)
        want.loss.backward()
        opt_e.step()
        got = step(**batch) if k % 2 else step(batch["tokens"], targets=batch["targets"])
        assert torch.equal(got.loss, want.loss.detach()), k
        assert torch.equal(got.logits, want.logits.detach()), k
    assert step.captures == 1 and step.replays == steps - warmup and step.steps == steps
    for (name, pe), (_, pg) in zip(eager.named_parameters(), net.named_parameters()):
        assert torch.equal(pe, pg), name
        assert torch.equal(pe.grad, pg.grad), name  # the last step's gradients, not a sum


def test_replays_read_only_the_static_buffers():
    """A replay sees the call's batch only through the buffers `_load` fills."""
    _, net = _pair()
    step = CpuTrainStep(net, None, warmup=1)
    first, second = _batches(2)
    step(**first)
    out = step(**first)  # recorded with the first batch's values in the buffers
    loss_first = out.loss.clone()
    out = step(**second)
    assert not torch.equal(out.loss, loss_first)
    assert torch.equal(step.static[0], second["tokens"])
    # Without an optimizer the parameters never change: the first batch gives its loss again.
    assert torch.equal(step(**first).loss, loss_first)


def test_a_recorded_step_keeps_its_shapes_and_checks_its_inputs():
    _, net = _pair()
    step = CpuTrainStep(net, _sgd(net), warmup=1)
    (batch,) = _batches(1)
    step(**batch)
    step(**batch)  # recorded
    with pytest.raises(InputError, match=r"input 'tokens' must be \[2, 9\] int64 as at the"):
        step(**_batches(1, b=3)[0])
    with pytest.raises(InputError, match="unknown input 'tokns'"):
        step(tokns=batch["tokens"], targets=batch["targets"])
    with pytest.raises(InputError, match="given twice"):
        step(batch["tokens"], tokens=batch["tokens"])
    with pytest.raises(InputError, match="recorded with it"):
        step(tokens=batch["tokens"])
    bad = dict(batch, tokens=batch["tokens"].clone())
    bad["tokens"][1, 4] = HYPER["vocab"]  # an id past the vocabulary: the range rule, on the host
    with pytest.raises(InputError, match=r"input 'tokens' holds 13 at index \[1, 4\]"):
        step(**bad)
    with pytest.raises(InputError, match="dtype"):
        step(tokens=batch["tokens"].float(), targets=batch["targets"])
    assert step.replays == 1  # no failed call replayed


def test_a_replaced_parameter_records_again():
    _, net = _pair()
    step = CpuTrainStep(net, _sgd(net), warmup=1)
    batch = _batches(1)[0]
    for _ in range(3):
        step(**batch)
    assert step.captures == 1
    p = next(net.parameters())
    p.data = p.data.clone()  # same values, another address (as `.to()` or `.data =` give)
    step(**batch)
    assert step.captures == 2


def test_loss_function_and_misuse():
    _, net = _pair()
    batch = _batches(1)[0]
    step = CpuTrainStep(net, None, loss_fn=lambda out: out.logits.float().square().mean())
    out = step(tokens=batch["tokens"])
    assert out.loss.dim() == 0 and out.loss > 0
    with pytest.raises(ValueError, match="needs a scalar loss"):
        CpuTrainStep(net)(tokens=batch["tokens"])
    with pytest.raises(ValueError, match="capturable=True"):
        CpuTrainStep(net, torch.optim.AdamW(net.parameters(), capturable=False))
    other = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not this model's"):
        CpuTrainStep(net, torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="generated by sparkc"):
        CpuTrainStep(other)
    with pytest.raises(ValueError, match="warmup must be"):
        CpuTrainStep(net, warmup=0)
    with pytest.raises(ValueError, match="CUDA device"):
        sparkc.graphed(net)  # the real class: the model is on the CPU


EXAMPLES = ("tiny_gpt", "splatflow", "hspmn", "spark_k", "procedural")


def _example_batches(mod, n: int, device, seed: int = 1):
    from sparkc.tools.bench import make_inputs

    g = torch.Generator().manual_seed(seed)
    return [make_inputs(mod, {"B": 2, "N": 37, "T": 8}, device, torch.float32, g) for _ in range(n)]


def test_graphed_procedural_example_feeds_every_input():
    """The procedural example's tape inputs (ops, args, has_arg) reach the step like the tokens
    (emulated capture on the CPU, reference path)."""
    mod = sparkc.load(ROOT / "examples" / "procedural.spark")
    torch.manual_seed(0)
    eager, net = mod.Model(impl="reference"), mod.Model(impl="reference")
    net.load_state_dict(eager.state_dict())
    opt_e, opt_g = _sgd(eager), _sgd(net)
    step = CpuTrainStep(net, opt_g, warmup=1)
    for k, batch in enumerate(_example_batches(mod, 4, "cpu")):
        opt_e.zero_grad(set_to_none=True)
        want = eager(**batch)
        want.loss.backward()
        opt_e.step()
        assert torch.equal(step(**batch).loss, want.loss.detach()), k
    assert step.captures == 1 and step.replays == 3


def test_a_failed_recording_says_why_and_records_again_next_call():
    _, net = _pair()
    step = CpuTrainStep(net, _sgd(net), warmup=1)
    batch = _batches(1)[0]
    step(**batch)
    real = step._capture

    def fail(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    step._capture = fail
    with pytest.raises(RuntimeError, match="may not synchronise with the host") as info:
        step(**batch)
    assert "operation not permitted" in str(info.value.__cause__)
    step._capture = real
    step(**batch)  # nothing was kept from the failed attempt: this call records
    assert step.captures == 1 and step.replays == 1


@pytest.mark.gpu
@pytest.mark.parametrize("example", EXAMPLES)
def test_gpu_graphed_training_equals_the_eager_loop(example):
    """Every example, float32 on the Triton path with AdamW(capturable=True): 8 graphed steps
    against 8 eager ones from the same weights on the same batches."""
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    torch.manual_seed(0)
    eager = mod.Model(impl="triton").cuda()
    net = mod.Model(impl="triton").cuda()
    net.load_state_dict(eager.state_dict())
    opt_e = torch.optim.AdamW(eager.parameters(), lr=1e-3, capturable=True)
    opt_g = torch.optim.AdamW(net.parameters(), lr=1e-3, capturable=True)
    step = sparkc.graphed(net, opt_g)
    for k, batch in enumerate(_example_batches(mod, 8, "cuda")):
        opt_e.zero_grad(set_to_none=True)
        want = eager(**batch)
        want.loss.backward()
        opt_e.step()
        got = step(**batch)
        # Atomic adds in some backward kernels make the sums' order vary: not bit for bit.
        assert abs(got.loss.item() - want.loss.item()) <= 1e-4 * abs(want.loss.item()), k
    assert step.graph is not None and step.steps == 8
    for (name, pe), (_, pg) in zip(eager.named_parameters(), net.named_parameters()):
        assert torch.allclose(pe, pg, rtol=1e-3, atol=1e-5), name


@pytest.mark.gpu
def test_gpu_graphed_replay_does_not_sync():
    mod = sparkc.load(ROOT / "examples" / "tiny_gpt.spark")
    net = mod.Model(impl="triton", d=64, heads=4, layers=1, vocab=50, max_len=64).cuda()
    step = sparkc.graphed(
        net, torch.optim.AdamW(net.parameters(), capturable=True), check_values=False
    )
    batch = {n: torch.randint(0, 50, (2, 37), device="cuda") for n in ("tokens", "targets")}
    for _ in range(3):
        step(**batch)
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(**batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
