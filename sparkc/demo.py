"""`python -m sparkc.demo`: the project's main job.

Compiles `examples/tiny_gpt.spark` into `build/tiny_gpt/` (the same as `sparkc compile
examples/tiny_gpt.spark -o build`), imports the generated package, and trains the model for a few
hundred steps on a small synthetic next-token task whose loss can fall far below ln(vocab):
every sequence is an arithmetic progression modulo the vocabulary with a random start and a
random step, so from the third token on the next token is determined by the two before it.

On a CUDA device the model runs its generated Triton kernels (forward and backward); on the CPU
it runs the generated reference path. Prints the compiler's kernel plan, the loss every few
steps, and a summary. Exit code 0 when the loss fell, 1 when compilation failed, 2 when the loss
did not fall (the job is also a smoke test).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from .cli import parse_define
from .diagnostics import SparkError

EXAMPLE = "tiny_gpt"


def find_example(name: str = EXAMPLE) -> Path:
    """The example in the source checkout this package runs from, else under ./examples."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        path = base / "examples" / f"{name}.spark"
        if path.is_file():
            return path
    raise FileNotFoundError(f"examples/{name}.spark not found (run from the repository root)")


def progressions(batch: int, length: int, vocab: int, generator) -> tuple:
    """Token sequences t_i = (start + i·step) mod vocab; returns (tokens, next-token targets)."""
    import torch

    start = torch.randint(0, vocab, (batch, 1), generator=generator)
    step = torch.randint(1, 4, (batch, 1), generator=generator)
    seq = (start + step * torch.arange(length + 1)) % vocab
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparkc.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--impl", default="auto", choices=("auto", "reference", "triton"))
    ap.add_argument("--out", default="build", help="where the generated package is written")
    ap.add_argument(
        "--example", default=EXAMPLE, help=f"which examples/NAME.spark to train (default {EXAMPLE})"
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
    overrides = dict(args.define or ())

    import torch

    from .api import compile_to, import_package

    try:
        example = find_example(args.example)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        pkg = compile_to(args.out, example, force=False, overrides=overrides)
    except SparkError as err:
        print(err.render({str(example): example.read_text()}), file=sys.stderr)
        return 1
    module = import_package(pkg, f"sparkc_demo_{example.stem}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    net = module.Model(impl=args.impl).to(device)
    path = "Triton kernels" if net._use_triton(torch.empty(0, device=device)) else "reference path"
    vocab = int(module.HYPER["vocab"])
    print(f"compiled {example.name} -> {pkg}")
    print(
        f"model {module.MODEL_NAME}: {net.num_parameters:,} parameters, hyperparameters "
        + ", ".join(f"{k}={v}" for k, v in module.HYPER.items())
    )
    print(
        f"kernel plan: {module.TRITON_COVERAGE['groups']} fused kernel groups; "
        f"running the {path} on {device}"
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    first = last = None
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        tokens, targets = progressions(args.batch, args.length, vocab, gen)
        out = net(tokens.to(device), targets.to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        # The task loss: the model's `ce` output where it has one (the total also carries
        # auxiliary losses such as a router's balance term), else the total.
        task = out.get("ce", out.loss)
        loss = task.item()
        first = loss if first is None else first
        last = loss
        if step == 1 or step % max(1, args.steps // 10) == 0:
            print(f"step {step:4d}  loss {loss:.4f}  total {out.loss.item():.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    print(
        f"summary: loss {first:.3f} -> {last:.3f} (ln vocab = {math.log(vocab):.3f}) in "
        f"{args.steps} steps, {elapsed:.1f} s ({1000 * elapsed / args.steps:.1f} ms/step), "
        f"{path} on {device}"
    )
    return 0 if last < 0.5 * first else 2


if __name__ == "__main__":
    sys.exit(main())
