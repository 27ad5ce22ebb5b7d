"""Where a compiled decode step parts from the eager one (the H100 failure of 2026-12-07,
fifteenth session: `test_gpu_compiled_graph_replay_equals_eager_steps[splatflow]`, the compiled
graph's logits 1.1e-2 from the eager steps' in float32, where the uncompiled graph and the
prefill-then-steps test against the full forward agree to 1e-5; on the CPU, under the
interpreter, the same mix of a Triton-path prefill and compiled PyTorch steps agrees to 2e-7
with both the aot_eager and the inductor backends).

Consumes: an example model (default splatflow, its default size, float32) on CUDA. Produces a
table: for each way of running the single-token steps after an 8-token prefill on the Triton
path, the largest relative difference of each step's logits (and of each sequence's) from the
full forward of the whole sequence on the reference path:
- `kernels`: ordinary cached calls (the decode kernels, as the test's `want`);
- `rules`: static steps with the PyTorch step rules (`cache.kernels = False`), not compiled;
- `rules+aot_eager` / `rules+inductor`: the same static step under `torch.compile(fullgraph=True)`
  with that backend (no CUDA graph: the graph only replays what the step does).
- `graph` / `graph+inductor`: `GraphStep(compile=False / True)`, the failing test's way;
- `... (first call redone)`: the first compiled call (which compiles, and where Inductor may
  launch a kernel several times to tune it) is run, the cache's state and position put back,
  and the call run again for real.
Reading: `rules` far off → the step rules on the GPU; only `+inductor` off → Inductor's code for
them; `+aot_eager` off too → tracing (functionalisation of the in-place state updates); off
without "(first call redone)" but not with it → the first call applied a state update more than
once (splat's S += φᵀv is not idempotent; tiny_gpt's key/value writes, which pass, are).
`--dry-run` runs it on the CPU (Triton interpreter, aot_eager only) to check the script.

Run: python3 -P bench/probe_compiled_decode.py [--model splatflow] [--steps 16] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="splatflow")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--dry-run", action="store_true", help="CPU, interpreter, aot_eager only")
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
    import torch
    from sparkc.runtime.decode import static_forward

    import sparkc

    device = "cpu" if args.dry_run else "cuda"
    mod = sparkc.load(ROOT / "examples" / f"{args.model}.spark")
    torch.manual_seed(0)
    net = mod.Model(impl="triton").eval().to(device)
    ref = mod.Model(impl="reference").eval().to(device)
    ref.load_state_dict(net.state_dict())
    n = 8 + args.steps
    tokens = torch.randint(0, net.HYPER["vocab"], (2, n), device=device)
    with torch.no_grad():
        full = ref(tokens).logits.float()

    def run(way: str):
        cache = net.new_cache(2, n + 8)
        with torch.no_grad():
            outs = [net(tokens[:, :8], cache=cache).logits.float()]
        if way == "kernels":
            with torch.no_grad():
                outs += [net(tokens[:, t : t + 1], cache=cache).logits.float() for t in range(8, n)]
            return outs
        if way.startswith("graph"):  # the failing test's way: GraphStep (a CUDA graph), compiled
            from sparkc.runtime.decode_graph import GraphStep

            step = GraphStep(net, cache, compile=way == "graph+inductor")
            outs += [step(tokens[:, t : t + 1]).logits.float().clone() for t in range(8, n)]
            return outs
        buf = torch.empty_like(tokens[:, :1])

        def step():
            cache.kernels = False
            out = static_forward(
                net, cache, [buf if i.name == "tokens" else None for i in net.INPUTS]
            )
            return out.logits

        backend = way.split("+")[1].split(" ")[0] if "+" in way else None
        fn = torch.compile(step, backend=backend, fullgraph=True) if backend else step
        for t in range(8, n):
            buf.copy_(tokens[:, t : t + 1])
            if t == 8 and way.endswith("(first call redone)"):
                # The first call compiles (and Inductor may run a kernel several times to tune
                # it): run it, put the cache's state back, and run it again for real.
                kept = [*cache.tensors().values(), cache.position]
                saved = [x.clone() for x in kept]
                fn()
                for x, y in zip(kept, saved):
                    x.copy_(y)
            outs.append(fn().float().clone())
            cache.length += 1
        return outs

    # A suspect checked alone: the window state's update (runtime/reference/common.py,
    # `window_step`: `last.copy_(cat(last, x)[:, -rows:])`, a copy onto itself shifted by the new
    # rows). Done in place by parallel threads, rows would be read after being overwritten.
    def shift(last, x):
        last.copy_(torch.cat((last, x), dim=1)[:, -last.shape[1] :])

    last = torch.randn(2, 6, 1024, device=device)
    new = torch.randn(2, 1, 1024, device=device)
    want = torch.cat((last, new), dim=1)[:, 1:].clone()
    backend = "aot_eager" if args.dry_run else "inductor"
    torch.compile(shift, backend=backend, fullgraph=True)(last, new)
    shift_err = float((last - want).abs().max())
    print(f"window shift under {backend}: max |error| {shift_err:.1e}")

    ways = ["kernels", "rules", "rules+aot_eager"]
    ways += (
        ["rules+aot_eager (first call redone)"]
        if args.dry_run
        else ["rules+inductor", "rules+inductor (first call redone)", "graph", "graph+inductor"]
    )
    rows = {}
    for way in ways:
        try:
            got = torch.cat(run(way), 1)
        except Exception as e:  # noqa: BLE001 - reported per row
            rows[way] = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"{way:<18} {rows[way]['error']}")
            continue
        scale = full.abs().max()
        per_step = [float((got[:, t] - full[:, t]).abs().max() / scale) for t in range(8, n)]
        per_seq = [float((got[b, 8:] - full[b, 8:]).abs().max() / scale) for b in range(2)]
        rows[way] = {
            "per_step": per_step,
            "per_sequence": per_seq,
            "prefill": float((got[:, :8] - full[:, :8]).abs().max() / scale),
        }
        print(
            f"{way:<18} prefill {rows[way]['prefill']:.1e}  steps max {max(per_step):.1e} "
            f"(first over 1e-5: {next((i + 8 for i, e in enumerate(per_step) if e > 1e-5), '-')})  "
            f"per sequence {per_seq[0]:.1e} / {per_seq[1]:.1e}"
        )
    if args.json:
        meta = {
            "window_shift_error": shift_err,
            "model": args.model,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        }
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
