"""Train an example model on several processes with PyTorch's own engines: DDP or FSDP2.

    torchrun --nproc_per_node=2 examples/train_ddp.py --strategy fsdp --steps 200
    torchrun --nproc_per_node=2 examples/train_ddp.py --strategy ddp --accum 4 \\
        --checkpoint-activations --save ckpt --save-every 50
    torchrun --nproc_per_node=2 examples/train_ddp.py --strategy ddp --resume ckpt --steps 300

Consumes an example program (`examples/NAME.spark`, compiled through `sparkc.load` with the
`-D` overrides) and the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Produces one line per step on rank 0 (`step S  loss L`: the loss of the whole
global batch, averaged over ranks, so the curve does not depend on the world size), a summary
line with tokens/s, and with `--save DIR` distributed checkpoints `DIR/step-000050/`
(`torch.distributed.checkpoint`: model, optimizer, step and seed; loadable under any world size
and either strategy).

- `--strategy ddp`: `torch.nn.parallel.DistributedDataParallel`; `--strategy fsdp`: FSDP2
  (`torch.distributed.fsdp.fully_shard`) on the whole generated module. A generated module
  reads its parameters itself (it has no per-block submodules that run their own forward), so
  the root is the only FSDP unit: parameters are sharded at rest and gathered for the forward.
  0-d parameters, which FSDP2 cannot shard, stay replicated with averaged gradients.
- `--precision bf16` (default on CUDA): FSDP2 `MixedPrecisionPolicy(param_dtype=bfloat16,
  reduce_dtype=float32)`; DDP's `mixed_precision=_MixedPrecision(...)` with the same dtypes (a
  bfloat16 copy of the float32 parameters runs forward and backward, so the Triton kernels run
  in bfloat16 too; autocast would not reach them). Optimizer state and master weights stay
  float32. DDP's mixed precision needs CUDA (it records CUDA events); on the CPU only FSDP2
  runs in bfloat16.
- `--accum N`: N micro-batches per optimizer step; gradients are synchronised only on the
  last (`DDP.no_sync` / FSDP2 `set_requires_gradient_sync(False)` on the others).
- `--checkpoint-activations`: `torch.utils.checkpoint` (non-reentrant) around the model call:
  the forward is recomputed in the backward instead of keeping activations.
- Data: the global batch of step S is drawn from a generator seeded by (seed, S) and split
  across ranks and micro-batches, so it does not depend on the world size; the module's own
  random draws (dropout, gate noise) come from torch's RNG reseeded from (seed, S, rank) at
  every step. A resumed run therefore repeats an uninterrupted run's loss curve.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.utils.checkpoint import checkpoint

import sparkc
from sparkc.api import compile_graph
from sparkc.cli import parse_define
from sparkc.tools.demo_data import make_batch, plan_inputs

HERE = Path(__file__).resolve().parent


class Checkpointed(torch.nn.Module):
    """Runs `inner` under non-reentrant activation checkpointing."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return checkpoint(self.inner, *args, use_reentrant=False, **kwargs)


def wrap(net, strategy: str, *, precision: str = "fp32", ckpt: bool = False, device=None):
    """The callable training model around `net` (which keeps the clean parameter names)."""
    bf16 = precision == "bf16"
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        # fully_shard refuses 0-d parameters ("fully_shard doesn't support scalar parameters",
        # e.g. trajectory's `strength`): they stay replicated, their gradients are averaged by
        # `backward` below.
        scalars = {p for p in net.parameters() if p.dim() == 0}
        policy = mp if bf16 else MixedPrecisionPolicy()
        fully_shard(net, mp_policy=policy, ignored_params=scalars or None)
        return Checkpointed(net) if ckpt else net
    if strategy != "ddp":
        raise ValueError(f"strategy must be ddp or fsdp, got {strategy!r}")
    from torch.nn.parallel import DistributedDataParallel

    extra = {}
    if bf16 and (device is None or device.type != "cuda"):
        # DDP's mixed precision records CUDA events ("cpu backend doesn't support events").
        raise ValueError("--precision bf16 with --strategy ddp needs CUDA; use fsdp or fp32")
    if bf16:
        from torch.nn.parallel.distributed import _MixedPrecision

        extra["mixed_precision"] = _MixedPrecision(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.bfloat16
        )
    ids = [device.index] if device is not None and device.type == "cuda" else None
    return DistributedDataParallel(Checkpointed(net) if ckpt else net, device_ids=ids, **extra)


def micro_batches(batch: dict, rank: int, world: int, accum: int, batch_dim: dict) -> list:
    """This rank's `accum` micro-batches of a global batch: rank-major contiguous slices of
    every input whose first dimension is the batch (`batch_dim[name]`); others are shared."""
    size = next(v.shape[0] for k, v in batch.items() if batch_dim[k])
    per = size // (world * accum)
    out = []
    for i in range(accum):
        lo = (rank * accum + i) * per
        out.append({k: v[lo : lo + per] if batch_dim[k] else v for k, v in batch.items()})
    return out


def backward(model, net, strategy: str, micro: list) -> torch.Tensor:
    """Forward and backward over the micro-batches (gradients synchronised on the last one);
    returns this rank's mean loss, detached."""
    total = None  # summed on the device: no host synchronisation per micro-batch
    for i, mb in enumerate(micro):
        last = i == len(micro) - 1
        if strategy == "fsdp":
            net.set_requires_gradient_sync(last)
        sync = model.no_sync() if strategy == "ddp" and not last else contextlib.nullcontext()
        with sync:
            loss = model(**mb).loss.float() / len(micro)
            loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    if strategy == "fsdp":
        world = dist.get_world_size()
        for p in net.parameters():  # the replicated (ignored) parameters: not DTensors
            if p.grad is not None and not hasattr(p, "full_tensor"):
                dist.all_reduce(p.grad)
                p.grad.div_(world)
    return total


def save(path: Path, net, opt, step: int, seed: int) -> None:
    msd, osd = get_state_dict(net, opt)
    train = {"step": torch.tensor(step), "seed": torch.tensor(seed)}
    dcp.save({"model": msd, "optim": osd, "train": train}, checkpoint_id=str(path))


def load(path: Path, net, opt) -> tuple[int, int]:
    """Loads model and optimizer state in place; returns (step, seed) of the checkpoint."""
    msd, osd = get_state_dict(net, opt)
    train = {"step": torch.tensor(0), "seed": torch.tensor(0)}
    state = {"model": msd, "optim": osd, "train": train}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(net, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return int(train["step"]), int(train["seed"])


def latest(path: Path) -> Path:
    """`path` itself when it is a checkpoint, else its newest `step-*` folder."""
    if (path / ".metadata").is_file():
        return path
    found = sorted(path.glob("step-*/.metadata"))
    if not found:
        raise FileNotFoundError(f"no checkpoint (a folder with .metadata) in {path}")
    return found[-1].parent


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--example", default="tiny_gpt", help="examples/NAME.spark to train")
    ap.add_argument("-D", dest="define", action="append", type=parse_define, default=[])
    ap.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    cuda = torch.cuda.is_available()
    ap.add_argument("--backend", choices=("gloo", "nccl"), default="nccl" if cuda else "gloo")
    ap.add_argument("--impl", choices=("auto", "reference", "triton"), default="auto")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16" if cuda else "fp32")
    ap.add_argument("--steps", type=int, default=100, help="total optimizer steps")
    ap.add_argument("--batch", type=int, default=16, help="global batch (sequences per step)")
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--tape-length", type=int, default=8, help="other symbolic dimensions")
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-activations", action="store_true")
    ap.add_argument("--save", type=Path, help="folder for distributed checkpoints")
    ap.add_argument("--save-every", type=int, default=0, help="also save every K steps")
    ap.add_argument("--resume", type=Path, help="a checkpoint, or a --save folder (newest)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # FSDP2 warns that the module returned a view (the logits: F.linear's output on a 3-d input
    # is one); only an in-place change of an output would lose its hooks, and none happens here.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view")
    use_cuda = args.backend == "nccl"
    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch % (world * args.accum):
        raise SystemExit(f"--batch {args.batch} is not a multiple of world x accum")
    device = torch.device("cpu")
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    path = HERE / f"{args.example}.spark"
    overrides = dict(args.define)
    if rank != 0:
        dist.barrier()  # rank 0 compiles into the cache first
    module = sparkc.load(path, **overrides)
    graph = compile_graph(path.read_text(), str(path), overrides)
    if rank == 0:
        dist.barrier()
    plans = plan_inputs(graph, module.INPUTS)
    tokens = next(p for p in plans if p.role == "tokens")
    batch_dim = {p.name: bool(p.shape) and p.shape[0] == tokens.shape[0] for p in plans}

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    net = module.Model(impl=args.impl).to(device)
    model = wrap(
        net,
        args.strategy,
        precision=args.precision,
        ckpt=args.checkpoint_activations,
        device=device,
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    step, seed = 0, args.seed
    if args.resume is not None:
        step, seed = load(latest(args.resume), net, opt)
        if rank == 0:
            print(f"resumed from {latest(args.resume)} at step {step} (seed {seed})")

    t0, tokens_seen, saved = time.perf_counter(), 0, None
    while step < args.steps:
        step += 1
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        batch = make_batch(plans, args.batch, args.length, gen, extra=args.tape_length)
        micro = micro_batches(batch, rank, world, args.accum, batch_dim)
        micro = [{k: v.to(device) for k, v in mb.items()} for mb in micro]
        torch.manual_seed((seed * 1_000_003 + step) * 4099 + rank)  # the module's own draws
        loss = backward(model, net, args.strategy, micro)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = loss.to(device)
        dist.all_reduce(loss)  # gloo has no AVG: sum, then divide
        tokens_seen += args.batch * args.length
        if rank == 0:
            print(f"step {step}  loss {loss.item() / world:.9f}", flush=True)
        if args.save is not None and args.save_every and step % args.save_every == 0:
            save(args.save / f"step-{step:06d}", net, opt, step, seed)
            saved = step
    if args.save is not None and saved != step:
        save(args.save / f"step-{step:06d}", net, opt, step, seed)
    if use_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        print(
            f"summary: {args.example} {args.strategy} world={world} impl={args.impl} "
            f"precision={args.precision} accum={args.accum}: {tokens_seen} tokens in "
            f"{elapsed:.2f} s ({tokens_seen / max(elapsed, 1e-9):.0f} tokens/s)"
        )
    # The wrapper goes first, while the group still exists: DDP's reducer destroyed after
    # `destroy_process_group` (when `main` returns) could hang the process on gloo at exit
    # (torch 2.13, CPU: one run in three of a 2-process DDP resume never exited).
    del model
    dist.barrier()  # no rank tears the group down while another still uses it
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
