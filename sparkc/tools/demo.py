"""`python -m sparkc.demo`: the project's main job.

Compiles `examples/tiny_gpt.spark` into `build/tiny_gpt/` (the same as `sparkc compile
examples/tiny_gpt.spark -o build`), imports the generated package, and trains the model for a few
hundred steps on a small synthetic next-token task whose loss can fall far below ln(vocab):
every sequence is an arithmetic progression modulo the vocabulary with a random start and a
random step, so from the third token on the next token is determined by the two before it.
`--example NAME` trains another example (`--example all`: every one in turn); inputs other than
tokens and targets (instruction tapes, argument vectors, ...) are made from the model's declared
inputs by `sparkc.tools.demo_data`.

On a CUDA device the model runs its generated Triton kernels (forward and backward); on the CPU
it runs the generated reference path. Prints the compiler's kernel plan, a progress bar with the
loss (tqdm when installed, else one line rewritten in place; on a stream that is not a terminal,
the loss every tenth of the run), a short greedy sample from the trained model (cached decoding,
`sparkc.generate`; `--sample 0` leaves it out) and one summary line per run. Exit code 0 when every run's loss
fell to half its first value, 1 when compilation failed, 2 when a loss did not fall (the job is
also a smoke test).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TextIO

from ..cli import parse_define
from ..diagnostics import SparkError
from .demo_data import describe, make_batch, plan_inputs, progressions  # noqa: F401 (re-export)

EXAMPLE = "tiny_gpt"


def _checkout_examples() -> list[Path]:
    return [base / "examples" for base in (Path(__file__).resolve().parents[2], Path.cwd())]


def find_example(name: str = EXAMPLE) -> Path:
    """The example in the source checkout this package runs from, else under ./examples."""
    for folder in _checkout_examples():
        path = folder / f"{name}.spark"
        if path.is_file():
            return path
    raise FileNotFoundError(f"examples/{name}.spark not found (run from the repository root)")


def all_examples() -> list[str]:
    """The example names (sorted) of the first examples/ folder that has any."""
    for folder in _checkout_examples():
        names = sorted(p.stem for p in folder.glob("*.spark"))
        if names:
            return names
    raise FileNotFoundError("no examples/*.spark found (run from the repository root)")


class Progress:
    """Training progress: a bar (tqdm, or one line rewritten in place) or periodic lines.

    `mode` is 'bar' or 'lines'; 'auto' picks the bar when `stream` is a terminal.
    """

    WIDTH = 24

    def __init__(self, total: int, label: str, stream: TextIO, mode: str = "auto"):
        self.total, self.label, self.stream = total, label, stream
        if mode == "auto":
            mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.tqdm = None
        if mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.tqdm = tqdm(total=total, desc=label, file=stream, leave=True, ncols=90)

    def update(self, step: int, loss: float, total_loss: float) -> None:
        if self.mode == "lines":
            if step == 1 or step % max(1, self.total // 10) == 0:
                print(f"step {step:4d}  loss {loss:.4f}  total {total_loss:.4f}", file=self.stream)
            return
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self.tqdm.update(1)
            return
        done = self.WIDTH * step // self.total
        bar = "#" * done + "." * (self.WIDTH - done)
        line = f"\r{self.label} [{bar}] {step}/{self.total}  loss {loss:.4f}"
        self.stream.write(line + ("\n" if step == self.total else ""))
        self.stream.flush()

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def train(name: str, args: argparse.Namespace, overrides: dict) -> tuple[int, str]:
    """Compile and train one example; returns (exit code, summary line)."""
    import torch

    from ..api import compile_graph, compile_to, import_package

    try:
        example = find_example(name)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1, f"summary: {name}: not found"
    text = example.read_text()
    try:
        pkg = compile_to(args.out, example, force=False, overrides=overrides)
        graph = compile_graph(text, str(example), overrides)
    except SparkError as err:
        print(err.render({str(example): text}), file=sys.stderr)
        return 1, f"summary: {name}: compilation failed"
    module = import_package(pkg, f"sparkc_demo_{example.stem}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    net = module.Model(impl=args.impl).to(device)
    path = "Triton kernels" if net._use_triton(torch.empty(0, device=device)) else "reference path"
    plans = plan_inputs(graph, module.INPUTS)
    vocab = min((p.high for p in plans if p.role in ("tokens", "targets")), default=0)
    print(f"compiled {example.name} -> {pkg}")
    print(
        f"model {module.MODEL_NAME}: {net.num_parameters:,} parameters, hyperparameters "
        + ", ".join(f"{k}={v}" for k, v in module.HYPER.items())
    )
    print(
        f"kernel plan: {module.TRITON_COVERAGE['groups']} fused kernel groups; "
        f"running the {path} on {device}"
    )
    print(f"inputs: {describe(plans)}")
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    first = last = math.nan
    progress = Progress(args.steps, example.stem, sys.stdout, args.progress)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = make_batch(plans, args.batch, args.length, gen, extra=args.tape_length)
        out = net(**{k: v.to(device) for k, v in batch.items()})
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        # The task loss: the model's `ce` output where it has one (the total also carries
        # auxiliary losses such as a router's balance term), else the total.
        loss = out.get("ce", out.loss).item()
        first = loss if step == 1 else first
        last = loss
        progress.update(step, loss, out.loss.item())
    progress.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if args.sample > 0:
        print_sample(net, module, plans, args, gen, device)
    steps = max(args.steps, 1)
    ln_vocab = f"{math.log(vocab):.3f}" if vocab > 1 else "n/a"
    summary = (
        f"summary: {example.stem}: loss {first:.3f} -> {last:.3f} (ln vocab = {ln_vocab}) in "
        f"{args.steps} steps, {elapsed:.1f} s ({1000 * elapsed / steps:.1f} ms/step), "
        f"{path} on {device}"
    )
    print(summary)
    return (0 if last < 0.5 * first else 2), summary


def print_sample(net, module, plans, args, gen, device) -> None:
    """Greedy continuation of a fresh task prompt by cached decoding (`sparkc.generate`), with
    the task's own continuation beside it; a program that cannot decode says why instead."""

    from ..generation import generate

    if module.NOT_DECODABLE:
        print(f"sample: none ({module.NOT_DECODABLE[0]})")
        return
    batch = make_batch(plans, 1, args.length, gen, extra=args.tape_length)
    first = module.INPUTS[0].name
    limit = min((r["max_len"] for r in module.RULES if r.get("kind") == "max_len"), default=64)
    prompt_len = 4
    new = max(0, min(args.sample, limit - prompt_len + 1, args.length - prompt_len))
    seq = set(module.SEQUENCE_INPUTS)
    inputs = {k: v.to(device) for k, v in batch.items() if k not in seq}
    tokens = batch[first]
    net.eval()
    out = generate(net, tokens[:, :prompt_len], new, temperature=0, inputs=inputs)
    net.train()
    shown = lambda t: " ".join(str(int(v)) for v in t)
    print(
        f"sample (greedy, cached decoding): {shown(out[0, :prompt_len])} -> "
        f"{shown(out[0, prompt_len:])}  (the task continues {shown(tokens[0, prompt_len : prompt_len + new])})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparkc.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument(
        "--tape-length", type=int, default=8, help="size of other symbolic dimensions (tapes)"
    )
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument(
        "--sample", type=int, default=16, help="tokens generated after training (0: none)"
    )
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--impl", default="auto", choices=("auto", "reference", "triton"))
    ap.add_argument("--out", default="build", help="where the generated package is written")
    ap.add_argument(
        "--progress",
        default="auto",
        choices=("auto", "bar", "lines"),
        help="a progress bar, or the loss every tenth of the run (auto: a bar on a terminal)",
    )
    ap.add_argument(
        "--example",
        default=EXAMPLE,
        help=f"which examples/NAME.spark to train (default {EXAMPLE}; 'all': every example)",
    )
    ap.add_argument(
        "-D",
        dest="define",
        action="append",
        type=parse_define,
        metavar="NAME=VALUE",
        help="override a model hyperparameter (repeatable), as `sparkc compile -D`",
    )
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    overrides = dict(args.define or ())
    try:
        names = all_examples() if args.example == "all" else [args.example]
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    results = [train(name, args, overrides) for name in names]
    if len(results) > 1:
        print("\n".join(summary for _, summary in results))
    return max(code for code, _ in results)


if __name__ == "__main__":
    sys.exit(main())
