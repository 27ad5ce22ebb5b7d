"""The shared machinery of the experiments: compile variants, match their sizes, train, time.

Consumes a `.spark` model family from `examples/experiments/` and a list of `Variant`s (a
model of the file plus hyperparameters); produces compiled, parameter-matched variants
(`prepare`), models built on the right path (`build`: the reference path on the CPU, the
generated Triton kernels on CUDA), and `TrainResult`s from `train`: AdamW with a fixed seed on
batches a task generator draws from a seeded `torch.Generator`, with the loss curve, wall time,
tokens per second and (on CUDA) the peak memory.

Parameter matching: every variant but the first names a hyperparameter (`match`, usually the
MLP width `hidden`) that the harness sets so that the variant's parameter count is as close as
the knob allows to the first variant's. Counts come from the checked program (no code
generation), and the count of the compiled module is what the results record.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from ..api import load_source
from ..pipeline import CompileOptions, run_pipeline, summarize_program


@dataclass(frozen=True)
class Variant:
    """One model of an experiment: `label` (its row in the tables), `model` (a model of the
    family file), its hyperparameters, and the hyperparameter turned to match parameter
    counts with the experiment's first variant (None: not adjusted)."""

    label: str
    model: str
    hyper: dict[str, Any] = field(default_factory=dict)
    match: str | None = "hidden"


@dataclass
class Prepared:
    """A compiled variant: its generated module and its parameter count."""

    variant: Variant
    module: Any
    parameters: int

    def describe(self) -> dict[str, Any]:
        coverage = self.module.TRITON_COVERAGE
        return {
            "label": self.variant.label,
            "model": self.variant.model,
            "hyper": dict(self.module.HYPER),
            "parameters": self.parameters,
            "reference_ops": list(coverage["reference_ops"]),
        }


def family_path(stem: str) -> Path:
    """`examples/experiments/<stem>.spark` of the checkout this package runs from, else of the
    current directory."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = base / "examples" / "experiments" / f"{stem}.spark"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"examples/experiments/{stem}.spark not found (run from the repository root)"
    )


def count_parameters(text: str, source_name: str, model: str, hyper: dict[str, Any]) -> int:
    """Trainable parameters of `model` with `hyper`, from the checked program."""
    options = CompileOptions(overrides=tuple(hyper.items()), model=model)
    result = run_pipeline(text, source_name, options, stop_after="check")
    return summarize_program(result.artefact).params


def match_knob(text: str, source_name: str, variant: Variant, target: int) -> Variant:
    """`variant` with its `match` hyperparameter set so its parameter count is nearest to
    `target` (parameters are affine in an MLP width: two counts give the slope)."""
    knob = variant.match
    if knob is None:
        return variant
    base = variant.hyper.get(knob)
    if base is None:
        raise ValueError(f"variant {variant.label!r} must give its knob {knob!r} a start value")
    p0 = count_parameters(text, source_name, variant.model, variant.hyper)
    p1 = count_parameters(text, source_name, variant.model, {**variant.hyper, knob: base + 1})
    slope = p1 - p0
    if slope <= 0:
        raise ValueError(f"{knob!r} does not change the size of {variant.label!r}")
    value = max(1, base + round((target - p0) / slope))
    return replace(variant, hyper={**variant.hyper, knob: value})


def prepare(stem: str, variants: list[Variant], shared: dict[str, Any]) -> list[Prepared]:
    """Compile every variant of `examples/experiments/<stem>.spark` with the `shared`
    hyperparameters, the later ones matched in size to the first."""
    path = family_path(stem)
    text, name = path.read_text(), path.name
    out: list[Prepared] = []
    target = None
    for variant in variants:
        variant = replace(variant, hyper={**shared, **variant.hyper})
        if target is None:
            target = count_parameters(text, name, variant.model, variant.hyper)
        else:
            variant = match_knob(text, name, variant, target)
        module = load_source(text, name, model=variant.model, **variant.hyper)
        count = sum(math.prod(p.shape) for p in module.PARAMS if p.trainable)
        out.append(Prepared(variant, module, count))
    return out


def build(prepared: Prepared, device: torch.device, seed: int) -> torch.nn.Module:
    """A fresh model with weights from `seed`: Triton kernels on CUDA, reference path on CPU."""
    torch.manual_seed(seed)
    impl = "triton" if device.type == "cuda" else "reference"
    return prepared.module.Model(impl=impl).to(device)


@dataclass
class TrainResult:
    """What one training run measured. `curve` holds (step, seconds since start, task loss);
    `warmup_s` is the time of the first `warmup_steps(steps)` steps (kernel compilation and tuning
    happen there on CUDA), which `tokens_per_s` and `loss_at` leave out."""

    curve: list[tuple[int, float, float]]
    seconds: float
    tokens_per_s: float
    peak_memory_mb: float | None
    warmup_s: float = 0.0
    # How the steps ran: "graph" (replayed from a CUDA graph), "eager", or "eager (...)" when
    # recording the graph failed and the run went on with eager steps (the reason in brackets).
    mode: str = "eager"

    @property
    def final_loss(self) -> float:
        tail = [loss for _, _, loss in self.curve[-max(1, len(self.curve) // 10) :]]
        return sum(tail) / len(tail)

    def loss_at(self, seconds: float) -> float:
        """The mean task loss of the last tenth of the steps done within `seconds` after the
        warm-up."""
        done = [loss for _, t, loss in self.curve if t - self.warmup_s <= seconds]
        done = done or [self.curve[0][2]]
        tail = done[-max(1, len(done) // 10) :]
        return sum(tail) / len(tail)


class Progress:
    """Progress over all runs of an experiment: tqdm when installed and `stream` is a
    terminal, else a line per finished run and one every `every_s` seconds."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, every_s: float = 30.0):
        self.stream = stream or sys.stderr
        self.total, self.label, self.done = total, label, 0
        self.bar = None
        # Without a bar, a line every `every_s` seconds too (long runs in logs).
        self.every_s, self.start = every_s, time.perf_counter()
        self.last = self.start
        if getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=label, file=self.stream, ncols=90)

    def step(self, count: int, loss: float) -> None:
        """`count` more steps done, the last one's loss `loss`."""
        self.done += count
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self.bar.update(count)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            print(
                f"{self.label}: step {self.done}/{self.total}, loss {loss:.4f}, "
                f"{now - self.start:.0f} s",
                file=self.stream,
                flush=True,
            )

    def run_done(self, what: str, result: TrainResult) -> None:
        line = (
            f"{self.label}: {what}: loss {result.final_loss:.4f}, {result.seconds:.1f} s, "
            f"{result.tokens_per_s:,.0f} tokens/s [{self.done}/{self.total} steps]"
        )
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


Batch = dict[str, torch.Tensor]

# Training reads the recorded losses every this many steps (and at the last warm-up step and
# the end), not every step: each read waits for the device. Four experiments at once on an
# H100 ran dyck's replayed steps at ~44 ms with a read per step (2026-12-07, twelfth session);
# the likely cause, inferred and not measured, is that each wait also waits for the other
# processes' time slices on the GPU.
READ_EVERY = 25


def train(
    net: torch.nn.Module,
    batches: Iterator[Batch],
    steps: int,
    device: torch.device,
    lr: float,
    progress: Progress,
    task_loss: Callable[[Any], torch.Tensor] | None = None,
    graph: bool = False,
) -> TrainResult:
    """`steps` AdamW steps on `batches` (moved to `device`); the total loss (task terms plus
    auxiliary losses) is what is minimised, `task_loss(out)` (default `out.loss`) is recorded.
    With `graph` on CUDA each step (forward, backward, AdamW with its state on the device) is
    replayed from a CUDA graph after two eager warm-up steps: the same arithmetic, one launch
    of the host's work per step."""
    cuda = device.type == "cuda"
    graph = graph and cuda
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0, capturable=graph)
    replay = None
    if graph:
        from ..runtime.train_graph import graphed

        # The tasks draw token ids in range by construction: no range check, which would
        # read a value on the host (a synchronisation) every step.
        replay = graphed(net, opt, check_values=False)
    run_step = Steps(net, opt, replay)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    net.train()
    curve: list[tuple[int, float, float]] = []
    pending: list[torch.Tensor] = []  # the recorded losses of the steps since the last read
    warm = warmup_steps(steps)
    tokens = 0
    start = time.perf_counter()

    def read() -> None:
        """Read the pending losses (one device synchronisation); their steps' times are spread
        evenly between the last read and now (the host runs ahead of the device in between)."""
        if not pending:
            return
        values = torch.stack(pending).float().cpu().tolist()
        now = time.perf_counter() - start
        last = curve[-1][1] if curve else 0.0
        for i, value in enumerate(values, 1):
            curve.append((len(curve) + 1, last + (now - last) * i / len(values), value))
        pending.clear()
        progress.step(len(values), values[-1])

    for step, host in enumerate(prefetch(batches, steps), 1):
        batch = {k: v.to(device, non_blocking=True) for k, v in host.items()}
        first = next(iter(batch.values()))
        tokens += first.shape[0] * first.shape[1]  # every input is [B, N, ...]
        mode = run_step.mode
        out = run_step(batch)
        if run_step.mode != mode:
            print(f"{progress.label}: {run_step.mode}", file=progress.stream, flush=True)
        # A copy: a replayed step's outputs are overwritten by the next replay.
        pending.append((task_loss(out) if task_loss else out.loss).detach().clone())
        if step == warm or step % READ_EVERY == 0 or step == steps:
            read()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    warmup_s = curve[warm - 1][1] if warm else 0.0
    rate = tokens * (steps - warm) / steps / max(seconds - warmup_s, 1e-9)
    return TrainResult(curve, seconds, rate, peak, warmup_s, run_step.mode)


class Steps:
    """One training step per call, `steps(batch)` -> the outputs: replayed by `replay` (a
    `sparkc.graphed` step) when given, else eager (forward, backward, `opt.step()`). If
    recording the graph fails (`CaptureError`: nothing of the recorded step ran), that step and
    every later one run eagerly, and `mode` says why ("graph", "eager", or "eager (graph capture
    failed: ...)")."""

    def __init__(self, net: torch.nn.Module, opt: torch.optim.Optimizer, replay: Any = None):
        self.net, self.opt, self.replay = net, opt, replay
        self.mode = "eager" if replay is None else "graph"

    def __call__(self, batch: Batch) -> Any:
        if self.replay is not None:
            from ..runtime.train_graph import CaptureError

            try:
                return self.replay(**batch)
            except CaptureError as e:
                self.replay, self.mode = None, f"eager (graph capture failed: {str(e)[:200]})"
        out = self.net(**batch)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt.step()
        return out


def prefetch(batches: Iterator[Batch], count: int, depth: int = 4) -> Iterator[Batch]:
    """The first `count` batches of `batches`, drawn `depth` ahead in a background thread (in
    order: one producer) so that drawing the next batch on the host overlaps the device's
    step. The thread stops when the consumer is done or drops the iterator."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for _ in range(count):
                if not hand(next(batches)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            hand(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        for _ in range(count):
            item = items.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def warmup_steps(steps: int) -> int:
    """Steps left out of the timing: up to 5, never more than a fifth of the run."""
    return min(5, steps // 5)


def stream(make: Callable[[torch.Generator], Batch], seed: int) -> Iterator[Batch]:
    """An endless stream of training batches drawn from a generator seeded with `seed`."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield make(gen)


def train_seed(seed: int) -> int:
    """The data seed of training run `seed` (evaluation data uses `eval_seed`)."""
    return 1_000_003 * (seed + 1)


def eval_seed(seed: int) -> int:
    """The data seed of the held-out evaluation set of run `seed`: never a training seed."""
    return 7_000_001 * (seed + 1) + 17


@torch.no_grad()
def evaluate(net: torch.nn.Module, batch: Batch, device: torch.device, chunk: int) -> Any:
    """Run `net` in evaluation mode on `batch` in chunks of `chunk` rows; returns the outputs
    (every output tensor concatenated over the chunks, on the CPU)."""
    net.eval()
    rows = next(iter(batch.values())).shape[0]
    parts: list[dict[str, torch.Tensor]] = []
    for lo in range(0, rows, chunk):
        out = net(**{k: v[lo : lo + chunk].to(device) for k, v in batch.items()})
        parts.append({k: v.float().cpu() for k, v in out.items() if v.dim() > 0})
    net.train()
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@dataclass
class Config:
    """How an experiment runs: the device, the seeds, `smoke` (tiny sizes), a step override,
    the output folder and the progress stream."""

    device: torch.device
    seeds: tuple[int, ...]
    smoke: bool = False
    steps: int | None = None
    out: Path = Path("build/experiments")
    stream: TextIO | None = None
    # CPU threads while training (None: torch's default). Tiny smoke models run many times
    # faster on one thread than with intra-op threads fighting over a busy machine's cores.
    cpu_threads: int | None = None

    # Size settings replaced by name (`--set lengths=4096`), applied by `size`.
    overrides: tuple[tuple[str, Any], ...] = ()

    # On CUDA, replay each training step from a CUDA graph (`sparkc.graphed`): the small models
    # of the experiments are host-bound per call (the dyck verifier model ran ~36 ms per step on
    # the H100, 2026-12-07, almost all of it host time). False: one eager call per step.
    graph: bool = True

    def size(self, sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The experiment's `smoke` or `full` size, with `steps` and the `overrides` applied
        (ValueError for a setting the size does not have or a value of another kind)."""
        size = dict(sizes["smoke" if self.smoke else "full"])
        for key, value in self.overrides:
            if key not in size:
                raise ValueError(f"no size setting {key!r}; settings: {', '.join(size)}")
            if isinstance(size[key], tuple) != isinstance(value, tuple):
                kind = "a list (a,b,...)" if isinstance(size[key], tuple) else "one value"
                raise ValueError(f"size setting {key!r} takes {kind}")
            size[key] = value
        if self.steps is not None:
            size["steps"] = self.steps
        return size

    @property
    def path(self) -> str:
        return "Triton kernels" if self.device.type == "cuda" else "reference path"

    def describe(self, size: dict[str, Any]) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "path": self.path,
            "size": "smoke" if self.smoke else "full",
            **size,
        }


def train_record(result: TrainResult, steps: int) -> dict[str, Any]:
    """The training measurements a run's JSON entry keeps."""
    return {
        "steps": steps,
        "final_loss": result.final_loss,
        "seconds": result.seconds,
        "warmup_seconds": result.warmup_s,
        "tokens_per_s": result.tokens_per_s,
        "peak_memory_mb": result.peak_memory_mb,
        "mode": result.mode,
    }


def run_grid(
    cfg: Config,
    label: str,
    prepared: list[Prepared],
    make: Callable[[torch.Generator], Batch],
    steps: int,
    lr: float,
    measure: Callable[[torch.nn.Module, int, TrainResult], dict[str, float]],
    add_run: Callable[[str, int, dict[str, float], dict[str, Any]], None],
    task_loss: Callable[[Any], torch.Tensor] | None = None,
) -> None:
    """Train every prepared variant once per seed on batches from `make` and record
    `measure(net, seed, result)` through `add_run(variant, seed, metrics, train record)`."""
    progress = Progress(steps * len(prepared) * len(cfg.seeds), label, cfg.stream)
    threads = torch.get_num_threads()
    if cfg.cpu_threads is not None and cfg.device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    try:
        for prep in prepared:
            for seed in cfg.seeds:
                net = build(prep, cfg.device, seed)
                batches = stream(make, train_seed(seed))
                result = train(
                    net, batches, steps, cfg.device, lr, progress, task_loss, graph=cfg.graph
                )
                progress.run_done(f"{prep.variant.label} seed {seed}", result)
                add_run(
                    prep.variant.label,
                    seed,
                    measure(net, seed, result),
                    train_record(result, steps),
                )
                del net
    finally:
        progress.close()
        torch.set_num_threads(threads)
