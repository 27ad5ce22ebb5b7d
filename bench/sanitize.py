"""Run every generated kernel family once, forward and backward, on odd shapes, for
`compute-sanitizer --tool memcheck` on the GPU machine.

Covers the code-generation test programs (tests/codegen/programs.py: every primitive, attention
with and without the basis bias, fused cross-entropy, tied logits) in float32 and bfloat16, and
every example model (fk_attention, the verifier stack scan, spd_router, token_router, the splat
trajectory, demopack, ...) at small widths and lengths that are not block multiples. Tuning
launches every candidate configuration exactly once (timings under the memory checker mean
nothing: `bench_ms` is replaced by one call, and the choices go to a throw-away tuning
cache), so each tile shape is checked too. Prints the distinct kernels launched; exit status 0
when every model ran.

    compute-sanitizer --tool memcheck --error-exitcode 9 python3 -P bench/sanitize.py
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "codegen"))

from programs import PROGRAMS

from sparkc import api
from sparkc.tools.demo_data import progressions

LAUNCHES: collections.Counter = collections.Counter()


def _record_launches() -> None:
    from triton.runtime.jit import JITFunction

    original = JITFunction.run

    def run(self, *args, **kwargs):
        LAUNCHES[self.fn.__name__] += 1
        return original(self, *args, **kwargs)

    JITFunction.run = run


def _launch_each_candidate_once() -> None:
    """Tuning as coverage: every candidate runs once (no warm-up, repetitions or back-to-back
    calls, which under the memory checker cost minutes per kernel: on 2026-12-02 most programs
    did not finish in 200 s), and the choices, all ties, stay out of the real tuning cache."""
    import os
    import tempfile

    from sparkc.runtime import autotune, launch

    os.environ["SPARKC_CACHE_DIR"] = tempfile.mkdtemp(prefix="sparkc_sanitize_")
    os.environ["SPARKC_TUNE_ROUNDS"] = "1"

    def once(fn) -> float:
        fn()
        return 0.0

    # Where generated code looks it up (`_launch.bench_ms`) and where tuned_gemm does.
    launch.bench_ms = autotune.bench_ms = once


def _objective(out) -> torch.Tensor:
    return sum(
        v.float().sum()
        for k, v in out.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "aux_loss"
    )


def run_program(name: str, dtype: torch.dtype) -> None:
    src, makers = PROGRAMS[name]
    module = api.load_source(src, f"{name}.spark")
    torch.manual_seed(0)
    net = module.Model(impl="triton").cuda().to(dtype)
    g = torch.Generator().manual_seed(7)
    for b, n in [(2, 37), (3, 130)]:
        data = {
            k: (v.to(dtype).requires_grad_(True) if v.is_floating_point() else v)
            for k, v in ((k, make(b, n, g).cuda()) for k, make in makers.items())
        }
        _objective(net(**data)).backward()


def run_example(name: str, overrides: dict) -> None:
    module = api.load(ROOT / "examples" / f"{name}.spark", **overrides)
    torch.manual_seed(0)
    net = module.Model(impl="triton").cuda()
    vocab = int(module.HYPER["vocab"])
    g = torch.Generator().manual_seed(3)
    tokens, targets = progressions(3, 45, vocab, g)
    data = {"tokens": tokens.cuda(), "targets": targets.cuda()}
    if name == "procedural":  # instruction tapes: opcodes 0..6 then -1 (end), T = 11
        ops = torch.randint(0, 7, (3, 11), generator=g, dtype=torch.int32)
        ops[:, 8:] = -1
        data["ops"] = ops.cuda()
        data["args"] = torch.randn(3, 11, int(module.HYPER["d"]), generator=g).cuda()
        data["has_arg"] = (torch.rand(3, 11, generator=g) < 0.5).cuda()
    out = net(**data)
    (out.loss + _objective(out)).backward()


EXAMPLES = {
    "tiny_gpt": {"d": 48, "heads": 3},
    "spark_k": {},
    "splatflow": {},
    "hspmn": {},
    "procedural": {},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated program/example names")
    ap.add_argument("--shard", default="0/1", help="I/N: run every N-th job starting at I")
    args = ap.parse_args()
    shard, shards = (int(v) for v in args.shard.split("/"))
    only = set(filter(None, args.only.split(",")))
    _record_launches()
    _launch_each_candidate_once()
    failed = []
    jobs = [
        (f"{p}/{str(dt)[6:]}", run_program, (p, dt))
        for p in sorted(PROGRAMS)
        for dt in (torch.float32, torch.bfloat16)
    ]
    jobs += [(f"example {e}", run_example, (e, hp)) for e, hp in EXAMPLES.items()]
    jobs = [j for j in jobs if not only or j[2][0] in only][shard::shards]
    if not jobs:
        # compute-sanitizer reports an error for a process that never touches the GPU.
        torch.zeros(1, device="cuda")
        print(f"no job in shard {shard}/{shards}", flush=True)
    for label, fn, fargs in jobs:
        try:
            fn(*fargs)
            torch.cuda.synchronize()
            print(f"ok    {label}", flush=True)
        except Exception as err:  # noqa: BLE001  report every model, then fail
            failed.append(label)
            print(f"FAIL  {label}: {type(err).__name__}: {err}", flush=True)
    print(
        f"triton {triton.__version__}, torch {torch.__version__}; "
        f"{len(LAUNCHES)} distinct kernels, {sum(LAUNCHES.values())} launches:"
    )
    for k, v in sorted(LAUNCHES.items()):
        print(f"  {k:48s} {v}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
