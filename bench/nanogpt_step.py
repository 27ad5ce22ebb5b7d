"""The tiny_gpt training step against the same model written nanoGPT-style (issue 22, item 0).

Consumes examples/tiny_gpt.spark at --batch 8, --seq 1024, --d 1024, --heads 16, --layers 2,
--vocab 32000 (bf16) and builds, from the same initial weights, what a user writes instead: a
nanoGPT-style PyTorch module (`nn.Embedding` token and position tables, pre-norm blocks of
`nn.RMSNorm`, one fused q/k/v `nn.Linear`, `F.scaled_dot_product_attention(is_causal=True)`, a
GELU MLP, a final RMSNorm and an untied head, `F.cross_entropy`). Produces one row per variant:
the median time of one training step (zero_grad, forward, loss, backward, fused AdamW step;
`triton.testing.do_bench` over four rotating batches), the first step's time (compilation and
tuning included) and the peak memory of a step. Variants, side by side in one run:
- `sparkc`: the generated module's Triton path, one call per step;
- `sparkc_graph`: the same step replayed from one CUDA graph (`sparkc.graphed`, AdamW
  capturable);
- `nanogpt`: the nanoGPT-style module, eager;
- `nanogpt_compiled`: the same under `torch.compile(mode="default")`;
- `nanogpt_max` (`--max-autotune`): under `torch.compile(mode="max-autotune")`.
Before timing, both models' losses on one batch are compared (float32: the same model must give
the same loss; `--tol`). `--dry-run`: tiny sizes on the CPU (sparkc's reference path, dynamo's
`eager` backend, no graph variant): the rows and the loss check run, the times mean nothing.
Prints a table; `--json PATH` writes the rows. Never asserts a time.

Run: python bench/nanogpt_step.py [--d 2048 --layers 8] [--max-autotune] [--json r.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import sparkc
from sparkc.tools.benchutil import peak_mb, timer

ROOT = Path(__file__).resolve().parents[1]


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.n1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(o.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.n2(x))))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, layers: int, max_len: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.final, self.head = nn.RMSNorm(d, eps=1e-6), nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.final(x))
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def load_from_sparkc(self, sd: dict) -> None:
        """The generated tiny_gpt's weights (its state_dict names) into this module."""
        own = {"tok.weight": sd["tok.weight"], "pos.weight": sd["pos.weight"]}
        own |= {"final.weight": sd["final.weight"], "head.weight": sd["logits.weight"]}
        own["head.bias"] = sd["logits.bias"]
        for i in range(len(self.blocks)):
            p = q = f"blocks.{i}."
            att = [sd[p + f"h_attention.{w}.weight"] for w in ("wq", "wk", "wv")]
            own[q + "qkv.weight"] = torch.cat(att)
            own[q + "proj.weight"] = sd[p + "h_attention.wo.weight"]
            own[q + "n1.weight"], own[q + "n2.weight"] = (
                sd[p + "h_rmsnorm.weight"],
                sd[p + "rmsnorm.weight"],
            )
            for w in ("fc1", "fc2"):
                for t in ("weight", "bias"):
                    own[f"{q}{w}.{t}"] = sd[f"{p}mlp.{w}.{t}"]
        self.load_state_dict(own)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("batch", 8), ("seq", 1024), ("d", 1024), ("heads", 16)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    ap.add_argument("--max-autotune", action="store_true", help="add torch.compile max-autotune")
    ap.add_argument("--tol", type=float, default=1e-4, help="float32 loss agreement (relative)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    a = ap.parse_args(argv)
    if a.dry_run:
        a.batch, a.seq, a.d, a.heads, a.layers, a.vocab, a.dtype = 2, 16, 32, 4, 2, 50, "f32"
    return a


def loss_check(mod, a, device) -> float:
    """Both models in float32 on one batch from the same weights: relative loss difference.
    sparkc's side is its reference path (the generated kernels' tested oracle): the architecture
    is what is compared, and float32 kernels would be compiled and tuned for this one check
    before the timed bf16 ones (at d = 2048 / 8 layers that ran the call past 280 s)."""
    torch.manual_seed(0)
    net = mod.Model(impl="reference").to(device)
    ref = NanoGPT(a.vocab, a.d, a.heads, a.layers, a.seq).to(device)
    ref.load_from_sparkc(net.state_dict())
    g = torch.Generator().manual_seed(9)
    tok, tgt = (torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(device) for _ in "ab")
    with torch.no_grad():
        mine, theirs = net(tokens=tok, targets=tgt).loss, ref(tok, tgt)
    return abs(float(mine) - float(theirs)) / abs(float(theirs))


def variants(mod, a, device, dtype) -> dict:
    """name -> (module, optimizer, step(batch)); every model starts from the same weights."""
    torch.manual_seed(0)
    base = mod.Model().to(device, dtype).state_dict()
    cuda = device.type == "cuda"
    out = {}

    def sparkc_net():
        net = mod.Model(impl="triton" if cuda else "reference").to(device, dtype)
        net.load_state_dict(base)
        return net

    net = sparkc_net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=cuda or None)

    def sparkc_step(batch, net=net, opt=opt):
        opt.zero_grad(set_to_none=True)
        net(**batch).loss.backward()
        opt.step()

    out["sparkc"] = sparkc_step
    if cuda:
        g_net = sparkc_net()
        g_opt = torch.optim.AdamW(g_net.parameters(), lr=1e-4, fused=True, capturable=True)
        graph_step = sparkc.graphed(g_net, g_opt)
        out["sparkc_graph"] = lambda batch, s=graph_step: s(**batch)
    modes = [("nanogpt", None), ("nanogpt_compiled", "default")]
    if a.max_autotune:
        modes.append(("nanogpt_max", "max-autotune"))
    for name, mode in modes:
        model = NanoGPT(a.vocab, a.d, a.heads, a.layers, a.seq).to(device)
        model.load_from_sparkc({k: v.float() for k, v in base.items()})
        model = model.to(dtype)
        o = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda or None)
        fn = model
        if mode is not None:
            fn = torch.compile(model, mode=mode) if cuda else torch.compile(model, backend="eager")

        def step(batch, fn=fn, o=o):
            o.zero_grad(set_to_none=True)
            fn(batch["tokens"], batch["targets"]).backward()
            o.step()

        out[name] = step
    return out


def main(argv=None) -> int:
    a = parse(argv)
    device = torch.device("cpu" if a.dry_run else "cuda")
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    mod = sparkc.load(
        ROOT / "examples" / "tiny_gpt.spark",
        d=a.d,
        heads=a.heads,
        layers=a.layers,
        vocab=a.vocab,
        max_len=a.seq,
    )
    diff = loss_check(mod, a, device)
    print(f"float32 loss, sparkc vs nanoGPT-style from the same weights: relative diff {diff:.2e}")
    g = torch.Generator().manual_seed(1)
    batches = [
        {
            k: torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(device)
            for k in ("tokens", "targets")
        }
        for _ in range(4)
    ]
    bench = timer(device.type, warmup=25, rep=100)
    rows = []
    for name, step in variants(mod, a, device, dtype).items():
        k = [0]

        def call(step=step, k=k):
            k[0] += 1
            return step(batches[k[0] % len(batches)])

        t0 = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        first = time.perf_counter() - t0
        for _ in range(3):  # the graph step's warm-ups and capture; compiled code settles
            call()
        peak = peak_mb(call) if device.type == "cuda" else float("nan")
        ms = bench(call)
        rows.append({"variant": name, "ms": ms, "first_step_s": first, "peak_MiB": peak})
        print(f"{name:18s} {ms:9.3f} ms/step  first step {first:7.1f} s  peak {peak:8.0f} MiB")
    by = {r["variant"]: r["ms"] for r in rows}
    for other in ("nanogpt", "nanogpt_compiled", "nanogpt_max"):
        for mine in ("sparkc", "sparkc_graph"):
            if other in by and mine in by:
                print(f"{other} / {mine} = {by[other] / by[mine]:.3f} (>= 1: sparkc faster)")
    if a.json:
        meta = {
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "shape": vars(a),
            "loss_rel_diff_f32": diff,
        }
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    if diff > a.tol:
        print(f"the two models disagree ({diff:.2e} > {a.tol}): not the same architecture")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
