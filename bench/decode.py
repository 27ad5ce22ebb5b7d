"""Tokens per second of generation: sparkc's cached decoding against a gpt-fast-style baseline.

Consumes: examples/tiny_gpt.spark at d=1024, 8 layers, 16 heads, vocab 32000, max_len 1024
(override with --d/--layers/--heads/--vocab), a prompt of --prompt tokens (512) and --new
tokens (512), batches --batch (1 and 64), --dtype (bf16). Produces one row per (runner, batch):
prefill ms, decode tokens/s (new tokens × batch / time of the decode steps) and total tokens/s,
greedy decoding throughout, and the largest difference between the runners' prefill logits
(the baseline is loaded with sparkc's weights, so it computes the same model). Runners:
- `sparkc`: `sparkc.generate`'s loop (model(new, cache=cache), argmax), the generated module
  (the prompt through the generated prefill, the full forward's kernels; the one-token steps
  through the decode rules and their kernels, docs/decoding.md);
- `sparkc_graph`: the same model with the one-token step replayed from a CUDA graph
  (runtime/decode_graph.py `GraphStep`, what `generate(cuda_graph=True)` runs; argmax outside
  the graph, the ids unchecked since they come from the logits); the step is captured in the
  warm-up run and replayed in the timed one, as the compiled runner's graphs are;
- `sparkc_graph_compiled`: the same with the step compiled by `torch.compile` before it is
  captured (`GraphStep(compile=True)`: inductor fuses the PyTorch decode rules);
- `eager`: the baseline model, a plain PyTorch tiny_gpt with a static KV cache and SDPA, one
  eager forward per token;
- `compiled`: the same with the one-token step under `torch.compile(mode="reduce-overhead")`
  (CUDA graphs), gpt-fast's recipe.
`--dry-run`: tiny sizes on the CPU, the compiled runner with dynamo's `eager` backend (no C++
compiler, no CUDA graphs) and `sparkc_graph` running its static step without a graph: every row
runs end to end; the numbers mean nothing.
`--models splatflow hspmn spark_k` adds the three sparkc runners for those examples at the
same width, heads, layers and vocabulary, in the same run (the baseline exists for tiny_gpt only);
`--no-tiny-gpt` leaves out tiny_gpt's and the baseline's rows.
With --json PATH the rows are written too. Timings only: no assertions beyond the agreement
check (a difference above --tol is reported, exit code 1).

`--sweep` instead times one decoded token (B=1) after contexts of 1k, 8k and 32k positions for
tiny_gpt, splatflow, spark_k and bench/verifier_lm.spark (the verifier stack as the only mixer)
at the same width (`--sweep-layers` layers, default 2; the cache filled by chunked cached calls
first), as cached calls and replayed from a CUDA graph: attention's time grows with the context,
splat's and the verifier's state does not (spark_k's fk_attention grows like attention).

Run: python bench/decode.py [--batch 1 64] [--prompt 512] [--new 512] [--dtype bf16]
     [--models splatflow hspmn spark_k] [--dry-run] [--json PATH]
     python bench/decode.py --sweep [--contexts 1024 8192 32768] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from sparkc.runtime.decode import static_forward
from sparkc.runtime.decode_graph import GraphStep
from torch import nn

import sparkc

ROOT = Path(__file__).resolve().parents[1]


class Baseline(nn.Module):
    """tiny_gpt in plain PyTorch (pre-norm attention + GELU MLP, RMSNorm, untied head), with a
    static KV cache [B, H, max_len, d] per layer written at `pos` and SDPA over it."""

    def __init__(self, sd: dict, layers: int, heads: int, batch: int, max_len: int, dtype):
        super().__init__()
        self.sd = {k: v.detach() for k, v in sd.items()}
        self.layers, self.heads = layers, heads
        d = self.sd["tok.weight"].shape[1]
        self.hd = d // heads
        dev = self.sd["tok.weight"].device
        shape = (layers, batch, heads, max_len, self.hd)
        self.register_buffer("k_cache", torch.zeros(shape, device=dev, dtype=dtype))
        self.register_buffer("v_cache", torch.zeros(shape, device=dev, dtype=dtype))
        mask = torch.ones(max_len, max_len, dtype=torch.bool, device=dev).tril()
        self.register_buffer("mask", mask)

    def _norm(self, x, name):
        return F.rms_norm(x.float(), (x.shape[-1],), self.sd[name].float(), 1e-6).to(x.dtype)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        sd, b, n = self.sd, tokens.shape[0], tokens.shape[1]
        x = F.embedding(tokens, sd["tok.weight"]) + sd["pos.weight"][pos]
        mask = self.mask[pos][None, None]  # [1, 1, n, max_len]
        for i in range(self.layers):
            p = f"blocks.{i}."
            h = self._norm(x, p + "h_rmsnorm.weight")
            q, k, v = (
                F.linear(h, sd[p + f"h_attention.{w}.weight"])
                .view(b, n, self.heads, self.hd)
                .transpose(1, 2)
                for w in ("wq", "wk", "wv")
            )
            self.k_cache[i][:, :, pos] = k
            self.v_cache[i][:, :, pos] = v
            o = F.scaled_dot_product_attention(q, self.k_cache[i], self.v_cache[i], attn_mask=mask)
            x = x + F.linear(o.transpose(1, 2).reshape(b, n, -1), sd[p + "h_attention.wo.weight"])
            h = self._norm(x, p + "rmsnorm.weight")
            h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
            x = x + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        x = self._norm(x, "final.weight")
        return F.linear(x, sd["logits.weight"], sd["logits.bias"])


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed_greedy(prefill, step, new, device):
    """(prefill s, decode s, prefill logits): `prefill()` gives the prompt's logits, then
    `new - 1` greedy steps of `step(token)` (which returns logits), each phase synchronised."""
    _sync(device)
    t0 = time.perf_counter()
    logits = prefill()
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    t1 = time.perf_counter()
    for _ in range(new - 1):
        nxt = step(nxt)[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    return t1 - t0, time.perf_counter() - t1, logits


def run_sparkc(net, prompt, new, device):
    """(prefill s, decode s, prefill logits) of greedy cached decoding."""
    b, p = prompt.shape
    cache = net.new_cache(b, p + new, device=device)
    return _timed_greedy(
        lambda: net(prompt, cache=cache).logits,
        lambda t: net(t, cache=cache).logits,
        new,
        device,
    )


def run_sparkc_graph(net, state: dict, prompt, new, device, compile=False):
    """(prefill s, decode s, prefill logits) of greedy decoding with the CUDA-graph step; `state`
    keeps the cache and the step between runs (reset, prefilled again, the graph replayed). On
    the CPU the same static step runs without a graph."""
    b, p = prompt.shape
    if "cache" not in state:
        state["cache"] = cache = net.new_cache(b, p + new, device=device)
        state["step"] = _graph_step(net, cache, device, compile)
    cache, step = state["cache"], state["step"]
    cache.reset()
    return _timed_greedy(
        lambda: net(prompt, cache=cache).logits,
        lambda t: step(t, check=False).logits,
        new,
        device,
    )


def run_baseline(model, step, prompt, new, device):
    p = prompt.shape[1]
    model.k_cache.zero_()
    model.v_cache.zero_()
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model(prompt, torch.arange(p, device=device))
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        t1 = time.perf_counter()
        for i in range(new - 1):
            pos = torch.tensor([p + i], device=device)
            nxt = step(nxt, pos)[:, -1].argmax(-1, keepdim=True).clone()
    _sync(device)
    return t1 - t0, time.perf_counter() - t1, logits


SWEEP_MODELS = {  # model -> (its file, hyperparameters besides d, layers, vocab, max_len)
    "tiny_gpt": (ROOT / "examples" / "tiny_gpt.spark", {"heads": 16}),
    "splatflow": (ROOT / "examples" / "splatflow.spark", {}),
    "spark_k": (ROOT / "examples" / "spark_k.spark", {}),
    "verifier_lm": (ROOT / "bench" / "verifier_lm.spark", {}),
}


def sweep(args, device, dtype) -> list[dict]:
    """Time per decoded token after a context of C positions, per model: the cache is filled by
    chunked cached calls (not timed), then `--sweep-steps` single-token calls are timed
    (`ms_per_token`), then as many steps replayed from a CUDA graph (`ms_per_token_graph`, no
    launch overhead; on the CPU the static step without a graph)."""
    rows = []
    steps = args.sweep_steps
    for name in args.sweep_models:
        path, hyper = SWEEP_MODELS[name]
        for ctx in args.contexts:
            max_len = ctx + 2 * steps + 3
            if "max_len" in sparkc.load(path).HYPER:
                hyper = {**hyper, "max_len": max_len}
            mod = sparkc.load(path, d=args.d, layers=args.sweep_layers, vocab=args.vocab, **hyper)
            torch.manual_seed(0)
            net = mod.Model().to(device=device, dtype=dtype).eval()
            cache = net.new_cache(1, max_len, device=device)
            tokens = torch.randint(0, args.vocab, (1, ctx), device=device)
            for at in range(0, ctx, args.chunk):
                net(tokens[:, at : at + args.chunk], cache=cache)
            nxt = tokens[:, -1:]
            net(nxt, cache=cache)  # warm-up step
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                nxt = net(nxt, cache=cache).logits[:, -1].argmax(-1, keepdim=True)
            _sync(device)
            ms = 1e3 * (time.perf_counter() - t0) / steps
            step = _graph_step(net, cache, device)
            for _ in range(2):  # warm-up, then capture (and the first replay)
                nxt = step(nxt, check=False).logits[:, -1].argmax(-1, keepdim=True)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                nxt = step(nxt, check=False).logits[:, -1].argmax(-1, keepdim=True)
            _sync(device)
            ms_graph = 1e3 * (time.perf_counter() - t0) / steps
            rows.append(
                {"model": name, "context": ctx, "ms_per_token": ms, "ms_per_token_graph": ms_graph}
            )
            print(
                f"sweep {name:10s} context {ctx:6d}  {ms:8.3f} ms/token  "
                f"{ms_graph:8.3f} ms/token replayed",
                flush=True,
            )
            del net, cache, step
    return rows


def model_rows(args, example: str, device, dtype) -> tuple[list[dict], float]:
    """`--models`: the sparkc runners (cached calls, the graph step, the compiled graph step) for
    another example at the same width, heads, layers and vocabulary (its other hyperparameters at
    their defaults), every batch of `--batch`; (rows, largest prefill-logits difference between the
    runners). A runner that fails is reported in its row, not fatal."""
    path = ROOT / "examples" / f"{example}.spark"
    hyper = {"d": args.d, "layers": args.layers, "vocab": args.vocab, "heads": args.heads}
    if "max_len" in sparkc.load(path).HYPER:
        hyper["max_len"] = args.prompt + args.new
    mod = sparkc.load(path, **hyper)
    torch.manual_seed(0)
    net = mod.Model().to(device=device, dtype=dtype).eval()
    rows, worst = [], 0.0
    for b in args.batch:
        prompt = torch.randint(0, args.vocab, (b, args.prompt), device=device)
        runners = {
            "sparkc": lambda p=prompt: run_sparkc(net, p, args.new, device),
            "sparkc_graph": lambda p=prompt, st={}: run_sparkc_graph(net, st, p, args.new, device),
            "sparkc_graph_compiled": lambda p=prompt, st={}: run_sparkc_graph(
                net, st, p, args.new, device, compile=True
            ),
        }
        ref = None
        for name, run in runners.items():
            row = {"model": example, "runner": name, "batch": b}
            try:
                run()  # warm-up: kernels tuned and compiled, graphs captured
                pre, dec, logits = run()
            except Exception as e:  # noqa: BLE001 - reported in the row
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                rows.append(row)
                print(f"{example:10s} {name:21s} B={b:<3d} failed: {row['error']}", flush=True)
                continue
            ref = logits.float() if ref is None else ref
            diff = (logits.float() - ref).abs().max().item()
            worst = max(worst, diff)
            row.update(
                prefill_ms=1e3 * pre,
                decode_tok_s=b * (args.new - 1) / dec if dec > 0 else math.inf,
                total_tok_s=b * args.new / (pre + dec),
                logits_diff=diff,
            )
            rows.append(row)
            print(
                f"{example:10s} {name:21s} B={b:<3d} prefill {row['prefill_ms']:9.1f} ms  "
                f"decode {row['decode_tok_s']:10.1f} tok/s  total {row['total_tok_s']:10.1f} "
                f"tok/s  |Δlogits| {diff:.2e}",
                flush=True,
            )
    return rows, worst


def _graph_step(net, cache, device, compile=False):
    """The CUDA-graph step on a GPU; on the CPU the same static step without a graph."""
    if device.type == "cuda":
        return GraphStep(net, cache, compile=compile)
    fn = static_forward
    if compile:
        fn = torch.compile(static_forward, backend="eager", fullgraph=True)

    def cpu_step(t, check):
        out = fn(net, cache, [t, None])
        cache.length += 1
        return out

    return cpu_step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=512)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "f16", "f32"))
    ap.add_argument("--tol", type=float, default=None, help="largest prefill logits difference")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument(
        "--sweep",
        action="store_true",
        help="instead: ms per token at each --contexts for tiny_gpt, splatflow, spark_k, verifier_lm (B=1)",
    )
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192, 32768])
    ap.add_argument(
        "--sweep-models", nargs="+", default=list(SWEEP_MODELS), choices=list(SWEEP_MODELS)
    )
    ap.add_argument("--sweep-layers", type=int, default=2)
    ap.add_argument("--sweep-steps", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=1024, help="prefill chunk of the sweep")
    ap.add_argument(
        "--models",
        nargs="*",
        default=[],
        choices=("splatflow", "hspmn", "spark_k"),
        help="also these examples' sparkc rows at the same width (no baseline: it is tiny_gpt)",
    )
    ap.add_argument(
        "--no-tiny-gpt",
        action="store_true",
        help="only the --models rows (no tiny_gpt and baseline rows: a device call's time for them)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.dry_run:
        args.batch, args.prompt, args.new = [1, 4], 16, 8
        args.d, args.layers, args.heads, args.vocab, args.dtype = 64, 2, 4, 128, "f32"
        args.contexts, args.sweep_steps, args.chunk = [8, 32], 4, 16
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype]
    if args.sweep:
        rows = sweep(args, device, dtype)
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
        return 0
    tol = args.tol if args.tol is not None else (1e-4 if dtype == torch.float32 else 0.1)
    max_len = args.prompt + args.new
    mod = sparkc.load(
        ROOT / "examples" / "tiny_gpt.spark",
        d=args.d,
        layers=args.layers,
        heads=args.heads,
        vocab=args.vocab,
        max_len=max_len,
    )
    torch.manual_seed(0)
    net = mod.Model().to(device=device, dtype=dtype).eval()
    rows, worst = [], 0.0
    for b in [] if args.no_tiny_gpt else args.batch:
        prompt = torch.randint(0, args.vocab, (b, args.prompt), device=device)
        base = Baseline(net.state_dict(), args.layers, args.heads, b, max_len, dtype)
        if args.dry_run:
            compiled = torch.compile(base, backend="eager", fullgraph=True)
        else:
            compiled = torch.compile(base, mode="reduce-overhead", fullgraph=True)
        runners = {
            "sparkc": lambda p=prompt: run_sparkc(net, p, args.new, device),
            "sparkc_graph": lambda p=prompt, st={}: run_sparkc_graph(net, st, p, args.new, device),
            "sparkc_graph_compiled": lambda p=prompt, st={}: run_sparkc_graph(
                net, st, p, args.new, device, compile=True
            ),
            "eager": lambda p=prompt, m=base: run_baseline(m, m, p, args.new, device),
            "compiled": lambda p=prompt, m=base, c=compiled: run_baseline(
                m, c, p, args.new, device
            ),
        }
        ref = None
        for name, run in runners.items():
            run()  # warm-up: kernels tuned and compiled, graphs captured
            pre, dec, logits = run()
            ref = logits.float() if ref is None else ref
            diff = (logits.float() - ref).abs().max().item()
            worst = max(worst, diff)
            row = {
                "model": "tiny_gpt",
                "runner": name,
                "batch": b,
                "prefill_ms": 1e3 * pre,
                "decode_tok_s": b * (args.new - 1) / dec if dec > 0 else math.inf,
                "total_tok_s": b * args.new / (pre + dec),
                "logits_diff": diff,
            }
            rows.append(row)
            print(
                f"{name:21s} B={b:<3d} prefill {row['prefill_ms']:9.1f} ms  "
                f"decode {row['decode_tok_s']:10.1f} tok/s  total {row['total_tok_s']:10.1f} tok/s"
                f"  |Δlogits| {diff:.2e}",
                flush=True,
            )
    for example in args.models:
        more, diff = model_rows(args, example, device, dtype)
        rows += more
        worst = max(worst, diff)
    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "shape": f"d={args.d} layers={args.layers} heads={args.heads} vocab={args.vocab}",
        "prompt": args.prompt,
        "new": args.new,
    }
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if worst > tol:
        print(f"prefill logits differ by {worst:.3e} (> {tol}): the runners disagree")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
