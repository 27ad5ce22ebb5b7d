"""The harness's background batch drawing (`harness.prefetch`): batches come in the stream's
order, exactly `count` of them, a generator's error reaches the consumer, and a consumer that
stops early does not leave the producer blocked; and the training loop that consumes them."""

import itertools
import threading

import pytest

from sparkc.experiments.harness import prefetch


def test_order_and_count():
    assert list(prefetch(iter(range(100)), 37, depth=3)) == list(range(37))


def test_error_reaches_the_consumer():
    def broken():
        yield 1
        yield 2
        raise ValueError("bad batch")

    it = prefetch(broken(), 10, depth=1)
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match="bad batch"):
        next(it)


def test_early_stop_ends_the_producer():
    before = threading.active_count()
    it = prefetch(itertools.count(), 1000, depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the consumer's `finally`: stop and join
    assert threading.active_count() == before


def test_training_reads_losses_in_windows_and_keeps_every_step():
    """`train` reads the recorded losses every READ_EVERY steps (one wait for the device each),
    yet the curve holds every step, numbered, with its own loss, in time order, and the warm-up
    time is that of the last warm-up step."""
    import io
    from types import SimpleNamespace

    import torch

    from sparkc.experiments import harness

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return SimpleNamespace(loss=(self.w * x).sum())

    def batches():
        i = 0
        while True:
            i += 1
            yield {"x": torch.full((1, 1), float(i))}

    steps = 2 * harness.READ_EVERY + 7
    progress = harness.Progress(steps, "t", io.StringIO())
    result = harness.train(Net(), batches(), steps, torch.device("cpu"), 0.0, progress)
    assert [s for s, _, _ in result.curve] == list(range(1, steps + 1))
    # lr 0: w stays 1, so step i's loss is i (the batch's value).
    assert [loss for _, _, loss in result.curve] == [float(i) for i in range(1, steps + 1)]
    times = [t for _, t, _ in result.curve]
    assert times == sorted(times) and times[-1] <= result.seconds
    assert result.warmup_s == times[harness.warmup_steps(steps) - 1]
    assert progress.done == steps


def test_a_failed_capture_falls_back_to_eager_steps():
    """A replay whose recording fails (`CaptureError`) leaves that step to be done eagerly, and
    every later one; the mode says so. Any other error of the replay is raised."""
    from types import SimpleNamespace

    import torch
    from sparkc.runtime.train_graph import CaptureError

    from sparkc.experiments.harness import Steps

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(net.weight, 0.5)  # exact steps of 1.0 in float32
    net.forward = lambda x: SimpleNamespace(loss=(net.weight * x).sum())
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    calls = []

    def failing(**batch):
        calls.append(batch)
        raise CaptureError("recording the training step in a CUDA graph failed: test")

    steps = Steps(net, opt, failing)
    assert steps.mode == "graph"
    w0 = float(net.weight.detach())
    steps({"x": torch.ones(1, 1)})
    assert float(net.weight.detach()) == w0 - 1.0  # the step was done, eagerly
    assert steps.mode.startswith("eager (graph capture failed:") and "test" in steps.mode
    steps({"x": torch.ones(1, 1)})
    assert len(calls) == 1 and float(net.weight.detach()) == w0 - 2.0

    def broken(**batch):
        raise RuntimeError("a kernel failed")

    with pytest.raises(RuntimeError, match="a kernel failed"):
        Steps(net, opt, broken)({"x": torch.ones(1, 1)})
    assert Steps(net, opt).mode == "eager"
