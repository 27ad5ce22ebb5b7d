"""An independent check of the reachability experiment's fk_attention result: the same task and
training loop with the models written directly in PyTorch (about 40 lines, nothing generated
by sparkc) beside sparkc's reference path of `reachability.spark`.

Why: at the experiment's documented size fk_attention stayed at chance (loss ln 2) where
attention learned. Before reading that as a property of the architecture, this script asks
whether a plain PyTorch implementation of the same operator (SPEC's `R = Σ_{h=0..hops} P_h`,
`P_0 = V`, `P_h = β A P_{h−1}`, then `wo` with a bias) trains the same way on the same batches.

Consumes: command-line options (the smoke size of the experiment by default: 6 nodes, 8 edges,
budgets 1..3, d = 32, 2 heads, 1 layer, MLP width 64; AdamW at 3e-3, batch 16). Produces: per
implementation and hop count (0 = plain attention) the mean training loss of the last 200 steps
for each seed, and how many seeds learned (mean loss below `--learned`, default 0.5; chance is
ln 2 = 0.693). On the 2-core development CPU one (implementation, hops, seed) run of 2,000
steps takes 5–10 s.

Both start from the same weights (sparkc's initialisation at the seed, copied into the PyTorch
model) and see the same batches, so a seed's two rows differ only by float rounding, which
training amplifies over the steps.

Run: python examples/experiments/reachability_eager.py [--steps 2000] [--seeds 0,1,2]
     [--hops 0,2] [--impl eager,sparkc]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparkc.experiments import tasks

SIZE = {"nodes": 6, "edges": 8, "max_k": 3, "d": 32, "heads": 2, "layers": 1, "hidden": 64}


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Mixer(nn.Module):
    """Causal attention (hops = 0) or the Feynman–Kac sum over `hops` powers of βA."""

    def __init__(self, d: int, heads: int, hops: int, beta: float):
        super().__init__()
        self.heads, self.hops, self.beta = heads, hops, beta
        self.wq, self.wk, self.wv = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.wo = nn.Linear(d, d, bias=hops > 0)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (
            w(x).view(b, n, self.heads, -1).transpose(1, 2) for w in (self.wq, self.wk, self.wv)
        )
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        a = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -math.inf).softmax(-1)
        if self.hops == 0:
            r = a @ v
        else:
            p = r = v
            for _ in range(self.hops):
                p = self.beta * (a @ p)
                r = r + p
        return self.wo(r.transpose(1, 2).reshape(b, n, d))


class Net(nn.Module):
    def __init__(self, hops: int, beta: float = 0.5):
        super().__init__()
        s = SIZE
        d = s["d"]
        self.src, self.dst = nn.Embedding(s["nodes"], d), nn.Embedding(s["nodes"], d)
        self.kind = nn.Embedding(s["max_k"] + 1, d)
        for emb in (self.src, self.dst, self.kind):
            nn.init.normal_(emb.weight)  # N(0, 1), as sparkc's `embed`
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [RMSNorm(d), Mixer(d, s["heads"], hops, beta), RMSNorm(d),
                 nn.Linear(d, s["hidden"]), nn.Linear(s["hidden"], d)]
            )
            for _ in range(s["layers"])
        )  # fmt: skip
        self.norm, self.head = RMSNorm(d), nn.Linear(d, 2)

    def forward(self, src, dst, kind, targets):
        x = self.src(src) + self.dst(dst) + self.kind(kind)
        for n1, mix, n2, fc1, fc2 in self.layers:
            x = x + mix(n1(x))
            x = x + fc2(F.gelu(fc1(n2(x))))
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=tasks.IGNORE)


def sparkc_net(hops: int):
    """The experiment's own model (`Attention` or `FK`) on sparkc's reference path."""
    import sparkc

    path = Path(__file__).with_name("reachability.spark")
    size = {k: v for k, v in SIZE.items() if k != "edges"}
    if hops == 0:
        module = sparkc.load(path, model="Attention")
        return module.Model(impl="reference", **size)
    module = sparkc.load(path, model="FK")
    return module.Model(impl="reference", hops=hops, beta=0.5, **size)


def same_start(net: nn.Module, ref: nn.Module) -> nn.Module:
    """`net` with the weights of sparkc's model `ref`: both list their parameters in the same
    order (embeddings, then per layer norm, mixer, norm, MLP, then the final norm and head),
    checked shape by shape."""
    theirs = list(ref.state_dict().values())
    mine = net.state_dict()
    if [tuple(t.shape) for t in theirs] != [tuple(t.shape) for t in mine.values()]:
        raise RuntimeError("the two models' parameters differ")
    net.load_state_dict(dict(zip(mine, theirs)))
    return net


def train(impl: str, hops: int, seed: int, steps: int) -> float:
    """Mean training loss of the last 200 steps (or all, when fewer). Both implementations start
    from the same weights (sparkc's initialisation at `seed`) and see the same batches."""
    torch.manual_seed(seed)
    ref = sparkc_net(hops)
    net = same_start(Net(hops), ref) if impl == "eager" else ref
    gen = torch.Generator().manual_seed(100 + seed)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        inputs, _ = tasks.reachability_batch(gen, 16, SIZE["nodes"], SIZE["edges"], SIZE["max_k"])
        loss = net(**inputs)
        loss = loss if torch.is_tensor(loss) else loss["ce"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tail = losses[-200:]
    return sum(tail) / len(tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--hops", default="0,2", help="0 is plain attention")
    ap.add_argument("--impl", default="eager,sparkc")
    ap.add_argument("--learned", type=float, default=0.5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| implementation | hops | final loss per seed | seeds learned |")
    print("|---|---|---|---|")
    for impl in args.impl.split(","):
        for hops in (int(h) for h in args.hops.split(",")):
            final = [train(impl, hops, s, args.steps) for s in seeds]
            learned = sum(f < args.learned for f in final)
            cells = " / ".join(f"{f:.3f}" for f in final)
            print(f"| {impl} | {hops} | {cells} | {learned} of {len(seeds)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
