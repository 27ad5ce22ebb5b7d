"""`sparkc bench`: time a compiled model or a single op against eager PyTorch and torch.compile.

Consumes a `.spark` file (or `--op NAME` with its hyperparameters, wrapped into a one-op model),
a binding of the symbolic dimensions (`--shape B=8,N=2048`) and a device; produces a table (and
JSON with `--json`) with, per variant and mode (forward, forward+backward): the median time, the
time of the first call (cold start: compilation, tuning), achieved TFLOP/s and GB/s from the
counted FLOPs and minimum bytes (`sparkc/ir/cost.py`), their fraction of the ceilings measured in
the same run (a large device-to-device copy and an 8192³ bf16 matmul), and the peak memory.

Variants: `sparkc` (the generated Triton path), `sparkc-graph` (the same kernels replayed from
CUDA graphs, `graph_step`), `eager` (the generated reference path: plain PyTorch), `compile` and
`compile-max` (`torch.compile` of the reference path, default and max-autotune), and, only when
named in `--variants`, `compile-graph` (mode="reduce-overhead", torch's CUDA graphs).
`--profile TOP` adds, per row, torch.profiler's busiest kernels and the device-busy fraction. On a machine without CUDA only `eager` (and `compile`) run, timed with
`time.perf_counter`, so the command also works as a CPU smoke test. Timing on CUDA uses
`triton.testing.do_bench` medians over rotating input sets larger than L2. Never asserts times.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import SparkError, error
from .bench_profile import format_profile, profile_step


@dataclass
class BenchOptions:
    path: str | None
    op: str | None = None
    op_hyper: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    shape: dict[str, int] = field(default_factory=dict)
    device: str | None = None
    dtype: str = "bf16"
    compile: bool = True
    modes: tuple[str, ...] = ("fwd", "fwd+bwd")
    json_path: str | None = None
    # > 0: profile every row with torch.profiler and print its `profile` busiest kernels (CPU:
    # operators) with the device-busy fraction, which tells kernel-bound from host-bound.
    profile: int = 0
    # Only these variants (VARIANTS); None: every one that applies, except OPT_IN.
    variants: tuple[str, ...] | None = None


def parse_shape(text: str) -> dict[str, int]:
    """`B=8,N=2048,D=1024` → {'B': 8, ...}; raises ValueError with the bad part."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not name.isidentifier() or not value.isdigit() or int(value) <= 0:
            raise ValueError(f"bad --shape entry '{part}': expected NAME=POSITIVE_INT")
        out[name] = int(value)
    return out


def op_program(op: str, hyper: dict[str, Any], width: int) -> str:
    """A one-op model around `op`: `x: float[B, N, d]` in, every float output out."""
    from ..ir.ops import OPS

    spec = OPS.get(op)
    if spec is None or not spec.callable or spec.category == "config":
        from ..diagnostics import did_you_mean

        raise error(
            "E0801",
            f"cannot benchmark '{op}': not a callable op",
            None,
            help=did_you_mean(op, [n for n, s in OPS.items() if s.callable]) or "",
        )
    required = [p for p in spec.inputs if not p.optional]
    if len(required) != 1 or required[0].dtype != "float":
        raise error(
            "E0801",
            f"--op benchmarks ops whose only tensor input is a float [B, N, D] "
            f"tensor; '{op}' takes {', '.join(p.name for p in required)}",
            None,
            help="write a small .spark model around it and benchmark that file",
        )
    args = ", ".join(["x"] + [f"{k}={_literal(v)}" for k, v in hyper.items()])
    outs = [o.name for o in spec.outputs if not o.is_loss]
    lines = [f"model Bench(d = {width}) {{", "  input x: float[B, N, d]", f"  r = {op}({args})"]
    if len(spec.outputs) == 1:
        lines.append("  output r")
    else:
        for name in outs:
            lines += [f"  o_{name} = r.{name}", f"  output o_{name}"]
    return "\n".join(lines + ["}"]) + "\n"


def _literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# -------------------------------------------------------------------------------------------
# Measurement


def _timer(cuda: bool) -> Callable[[Callable[[], Any]], float]:
    if cuda:
        from triton.testing import do_bench

        return lambda fn: float(do_bench(fn, warmup=25, rep=100, return_mode="median"))

    def cpu(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return cpu


def ceilings(torch, timer) -> dict[str, float]:
    """Copy bandwidth (GB/s, read + write) and bf16 matmul rate (TFLOP/s), measured here."""
    src = torch.randn(2**28, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    bw = 2 * src.numel() * src.element_size() / ms / 1e6
    src = dst = None  # free 1 GiB before the matmul
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = timer(lambda: x @ y)
    return {"copy_GBps": bw, "matmul_bf16_TFLOPs": 2 * 8192**3 / ms / 1e9}


def make_inputs(module, shape: dict[str, int], device, dtype, generator) -> dict[str, Any]:
    import torch

    vocab = int(module.HYPER.get("vocab", 2))
    out = {}
    for spec in module.INPUTS:
        dims = [d if isinstance(d, int) else shape[d] for d in spec.shape]
        if spec.dtype in ("int", "i64", "i32"):
            high = 9 if spec.name == "ops" else vocab
            t = torch.randint(0, high, dims, generator=generator)
            t = t.to(torch.int32) if spec.dtype == "i32" else t
        elif spec.dtype == "bool":
            t = torch.rand(dims, generator=generator) > 0.5
        else:
            t = torch.randn(dims, generator=generator).to(dtype)
        out[spec.name] = t.to(device)
    return out


MODES = ("fwd", "fwd+bwd", "step")
VARIANTS = ("sparkc", "sparkc-graph", "eager", "compile", "compile-max", "compile-graph")
# Run only when named in --variants (each costs minutes of compilation or adds little).
OPT_IN = ("compile-graph",)


def _objective(out, torch):
    if out.get("loss") is not None:
        return out["loss"]
    return sum(
        v.float().sum()
        for k, v in out.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.requires_grad
    )


def run(opts: BenchOptions, emit: Callable[[str], None] = print) -> dict[str, Any]:
    import torch

    from .. import api
    from ..ir.cost import graph_cost

    bad = [m for m in opts.modes if m not in MODES]
    if bad:
        raise error(
            "E0803",
            f"unknown --modes entry '{bad[0]}'",
            None,
            help="use fwd, fwd+bwd and/or step (a training step with AdamW), comma-separated",
        )
    # Before anything touches Triton: the ceilings' `do_bench` starts Triton's driver, which builds
    # its launch utilities in Triton's cache; with TRITON_CACHE_DIR set empty that failed on the
    # GPU ("Could not create or locate cache dir", 2026-12-02) before the model's kernels (whose
    # prelude points the cache at sparkc's folder) were imported.
    from sparkc.runtime import launch

    launch.configure_triton_cache()
    cuda = torch.cuda.is_available() if opts.device is None else opts.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[opts.dtype]
    timer = _timer(cuda)
    if opts.op:
        width = opts.shape.get("D", opts.shape.get("d", 0))
        if not width:
            raise error(
                "E0802",
                "--op needs the model width in --shape (D=...)",
                None,
                help="e.g. --shape B=8,N=2048,D=1024",
            )
        source, name = op_program(opts.op, opts.op_hyper, width), f"bench_{opts.op}.spark"
    else:
        source, name = Path(opts.path).read_text(), Path(opts.path).name
    t0 = time.perf_counter()
    module = api.load_source(source, name, model=opts.model, **opts.overrides)
    load_s = time.perf_counter() - t0
    for spec in module.INPUTS:
        missing = [d for d in spec.shape if isinstance(d, str) and d not in opts.shape]
        if missing:
            raise error(
                "E0802",
                f"--shape does not bind {', '.join(missing)} (input '{spec.name}')",
                None,
                help=f"e.g. --shape {','.join(f'{d}=8' for d in missing)}",
            )
    graph = api.compile_graph(source, name, opts.overrides, opts.model)
    cost = graph_cost(graph, opts.shape, float_bytes=torch.tensor([], dtype=dtype).element_size())
    report: dict[str, Any] = {
        "model": module.MODEL_NAME,
        "shape": opts.shape,
        "dtype": opts.dtype,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "load_s": load_s,
        "cost": cost,
        "rows": [],
    }
    if cuda:
        import triton

        report["triton"] = triton.__version__
        report["ceilings"] = ceilings(torch, timer)
    torch.manual_seed(0)
    base = module.Model(impl="reference")
    variants: dict[str, Callable[[], Any]] = {}
    if cuda:
        variants["sparkc"] = lambda: module.Model(impl="triton")
        # The same kernels replayed from CUDA graphs: no host work per launch.
        variants["sparkc-graph"] = lambda: module.Model(impl="triton")
    variants["eager"] = lambda: module.Model(impl="reference")
    if opts.compile:
        variants["compile"] = lambda: torch.compile(module.Model(impl="reference"))
        if cuda:
            variants["compile-max"] = lambda: torch.compile(
                module.Model(impl="reference"), mode="max-autotune"
            )
            variants["compile-graph"] = lambda: torch.compile(
                module.Model(impl="reference"), mode="reduce-overhead"
            )
    if opts.variants is None:
        variants = {k: v for k, v in variants.items() if k not in OPT_IN}
    if opts.variants is not None:
        unknown = [v for v in opts.variants if v not in VARIANTS]
        if unknown:
            raise error(
                "E0804",
                f"unknown --variants entry '{unknown[0]}'",
                None,
                help=f"choose from {', '.join(VARIANTS)}, comma-separated",
            )
        variants = {k: v for k, v in variants.items() if k in opts.variants}
    gen = torch.Generator().manual_seed(0)
    one = make_inputs(module, opts.shape, device, dtype, gen)
    per_set = sum(t.numel() * t.element_size() for t in one.values())
    l2 = torch.cuda.get_device_properties(device).L2_cache_size if cuda else 0
    n_sets = min(8, max(1, math.ceil(2 * l2 / max(per_set, 1))))  # rotate past the L2 cache
    sets = [one] + [make_inputs(module, opts.shape, device, dtype, gen) for _ in range(n_sets - 1)]
    for vname, build in variants.items():
        net = build()
        target = getattr(net, "_orig_mod", net)
        target.load_state_dict(base.state_dict())
        target.to(device=device, dtype=dtype)
        # "step": a whole training step, forward + backward + AdamW (the same optimizer for every
        # variant; fused on the GPU).
        opt = torch.optim.AdamW(target.parameters(), lr=1e-4, fused=cuda or None)
        graphed: dict[str, Any] = {}
        for mode in opts.modes:
            k = [0]

            def step(net=net, mode=mode, k=k, target=target, opt=opt):
                inputs = sets[k[0] % len(sets)]
                k[0] += 1
                if mode == "fwd":
                    with torch.no_grad():
                        return net(**inputs)
                target.zero_grad(set_to_none=True)
                _objective(net(**inputs), torch).backward()
                if mode == "step":
                    opt.step()

            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base_mem = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            if vname == "sparkc-graph":
                step = graph_step(module, net, mode, sets, opt, graphed)
            step()
            if cuda:
                torch.cuda.synchronize()
            first_s = time.perf_counter() - t0
            peak = float("nan")
            if cuda and vname == "sparkc-graph":
                # A graph's memory is allocated once, at capture (in the first call): a replay
                # allocates nothing, so the first call's peak is the one to report.
                peak = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
            elif vname == "compile-graph":
                pass  # captured on a later call into torch's own pool: not measured (nan)
            elif cuda:
                torch.cuda.reset_peak_memory_stats()
                base_mem = torch.cuda.memory_allocated()
                step()
                torch.cuda.synchronize()
                peak = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
            ms = timer(step)
            flops = cost["flops_fwd" if mode == "fwd" else "flops_fwd_bwd"]
            nbytes = cost["bytes_fwd" if mode == "fwd" else "bytes_fwd_bwd"]
            row = {
                "variant": vname,
                "mode": mode,
                "ms": ms,
                "first_call_s": first_s,
                "TFLOPs": flops / ms / 1e9,
                "GBps": nbytes / ms / 1e6,
                "peak_MiB": peak,
            }
            if cuda:
                c = report["ceilings"]
                row["floor_ms"] = max(
                    flops / c["matmul_bf16_TFLOPs"] / 1e9, nbytes / c["copy_GBps"] / 1e6
                )
                row["of_floor"] = row["floor_ms"] / ms
            report["rows"].append(row)
            emit(f"  {vname:<12} {mode:<8} {ms:9.3f} ms  first call {first_s:6.1f} s")
            if opts.profile > 0:
                row["profile"] = profile_step(step, cuda, opts.profile)
                emit(format_profile(vname, mode, row["profile"], cuda))
        del net, opt
    emit(format_table(report))
    if opts.json_path:
        Path(opts.json_path).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report


def graph_step(module, net, mode: str, sets: list[dict], opt, graphed: dict) -> Callable[[], Any]:
    """`mode`'s step for `net` replayed from CUDA graphs. The forward is one graph captured under
    no_grad; forward+backward uses `torch.cuda.make_graphed_callables` (a forward and a backward
    graph behind an autograd function, made once per net and kept in `graphed`); a training step
    is one graph of forward, backward and a capturable fused AdamW (`sparkc.graphed`, whose first
    two calls are eager warm-ups). Each call first copies the next input set into the graph's
    static inputs (and checks it, for the step), the cost a user pays too."""
    import torch

    names = [spec.name for spec in module.INPUTS]
    static = [sets[0][n].clone() for n in names]
    k = [0]

    def load() -> None:
        inputs = sets[k[0] % len(sets)]
        k[0] += 1
        for buf, n in zip(static, names):
            buf.copy_(inputs[n])

    if mode == "fwd":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(2):  # compiles and tunes outside the capture
                net(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            out = net(*static)

        def replay():
            load()
            graph.replay()
            return out

        return replay
    if mode == "step":
        # The whole step (forward, backward, AdamW) in one graph: `sparkc.graphed`, with the
        # benchmark's optimizer made capturable (its step count on the device).
        from sparkc.runtime.train_graph import graphed as graphed_step

        if "step" not in graphed:
            capturable = torch.optim.AdamW(
                net.parameters(), lr=opt.defaults["lr"], fused=True, capturable=True
            )
            graphed["step"] = graphed_step(
                net, capturable, loss_fn=lambda out: _objective(out, torch)
            )
        whole = graphed["step"]

        def replay_step():
            inputs = sets[k[0] % len(sets)]
            k[0] += 1
            return whole(**inputs)

        return replay_step
    if "fn" not in graphed:
        graphed["fn"] = torch.cuda.make_graphed_callables(
            net, tuple(static), allow_unused_input=True
        )
    fn = graphed["fn"]

    def train():
        inputs = sets[k[0] % len(sets)]
        k[0] += 1
        net.zero_grad(set_to_none=True)
        _objective(fn(*[inputs[n] for n in names]), torch).backward()
        if mode == "step":
            opt.step()

    return train


def format_table(report: dict[str, Any]) -> str:
    shape = ",".join(f"{k}={v}" for k, v in report["shape"].items())
    triton = f", triton {report['triton']}" if "triton" in report else ""
    title = f"{report['model']} [{shape}] {report['dtype']} on {report['device']} "
    title += f"(torch {report['torch']}{triton})"
    counted = f"counted: {report['cost']['flops_fwd'] / 1e9:.2f} GFLOP fwd, "
    counted += f"{report['cost']['flops_fwd_bwd'] / 1e9:.2f} GFLOP fwd+bwd; "
    counted += f"compile/load {report['load_s']:.2f} s"
    head = [title, counted]
    if "ceilings" in report:
        c = report["ceilings"]
        head.append(
            f"ceilings measured now: copy {c['copy_GBps']:.0f} GB/s, "
            f"bf16 matmul {c['matmul_bf16_TFLOPs']:.0f} TFLOP/s"
        )
    cols = ["variant", "mode", "ms", "TFLOP/s", "GB/s", "floor %", "peak MiB", "first call s"]
    rows = [cols]
    for r in report["rows"]:
        rows.append(
            [
                r["variant"],
                r["mode"],
                f"{r['ms']:.3f}",
                f"{r['TFLOPs']:.1f}",
                f"{r['GBps']:.0f}",
                f"{100 * r['of_floor']:.0f}" if "of_floor" in r else "-",
                "-" if r["peak_MiB"] != r["peak_MiB"] else f"{r['peak_MiB']:.0f}",
                f"{r['first_call_s']:.2f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(head + [""] + lines)


__all__ = ["BenchOptions", "SparkError", "format_table", "op_program", "parse_shape", "run"]
