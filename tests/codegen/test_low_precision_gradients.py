"""Gradient accuracy of the Triton path in low precision, per example model and op family.

For each case: one set of weights and inputs rounded to the test dtype; gradients of a generic
scalar (the module's loss, or its aux loss, plus every float output against a fixed random
cotangent) with respect to every parameter and every float input, computed three ways:
- the float64 oracle: the reference path in float64 on the rounded weights and inputs;
- eager PyTorch in the test dtype: the reference path run in that dtype;
- the generated Triton path in that dtype.
Each generated gradient's relative error (‖g − g64‖ / ‖g64‖) must be at most twice eager's,
plus a small floor (about two units of the dtype's last place): the kernels may round
differently from PyTorch, but not worse (SPEC §0: states, cotangents and partial sums in at
least float32).

The bfloat16 variant is the point (on a GPU, `@pytest.mark.gpu`); the float32 variant runs the
same plumbing under the Triton interpreter on the CPU at tiny sizes, so CI tests it, and a
float16 variant of the op families is a low-precision check the CPU can run. Errors are the
root mean square over three draws where noted (a single bias gradient is one sum whose rounding
noise varies from draw to draw). Every failing gradient of a case is reported at once, with
eager's error beside it.

Eager's error is one sample of how far an implementation that rounds each op's result to the
dtype lands from float64, and for an ill-conditioned gradient one sample says little (spark_k's
last `vs.head2.bias` in bf16: 0.007 to 0.27 over equally valid roundings of one draw). In float16
and bfloat16, eager is therefore also rerun `ROUNDING_RUNS` times with other valid roundings of
its forward results (`_RoundingFlips`: each computed result recomputed in float32, and an element
more than a quarter unit from its rounded value sent to the other neighbour with probability one
half), and its error is the root mean square over all its runs. For well-conditioned gradients
that stays near eager's own error (median 1.13x, 90th percentile 1.40x over spark_k's gradients
and three draws, bf16, CPU); for ill-conditioned ones it is their spread.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import sparkc

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Tiny hyperparameters for the interpreter; None: the example's own (GPU).
_CPU_EXAMPLE = {
    "tiny_gpt": {"vocab": 16, "d": 16, "heads": 2, "layers": 1, "max_len": 16},
    "spark_k": {
        "vocab": 16,
        "d": 16,
        "heads": 2,
        "layers": 1,
        "max_len": 16,
        "hops": 2,
        "stack": 4,
    },
    "hspmn": {"vocab": 16, "d": 16, "heads": 2, "kv_heads": 1, "layers": 1},
    "splatflow": {
        "vocab": 16,
        "d": 16,
        "heads": 2,
        "splats": 4,
        "window": 3,
        "layers": 1,
        "max_len": 16,
    },
    "procedural": {
        "vocab": 16,
        "d": 16,
        "heads": 2,
        "layers": 1,
        "max_len": 16,
        "hidden": 32,
        "groups": 4,
        "codewords": 8,
    },
}

# Op families in isolation (the kernels named in issue 15, item 6).
FAMILIES = {
    "verifier_stack_mean": """
model VerifierMean(d = 16, stack = 6) {
  input h: float[B, N, d]
  r, s, p, _ = verifier_stack(h, stack=stack, read=mean)
  output r
  output s
  output p
}
""",
    "verifier_stack_top": """
model VerifierTop(d = 16, stack = 6) {
  input h: float[B, N, d]
  r, s, p, _ = verifier_stack(h, stack=stack, read=top)
  output r
  output s
  output p
}
""",
    "spd_router": """
model Spd(d = 16) {
  input x: float[B, N, d]
  y, xs, xp, _ = spd_router(x)
  output y
  output xs
  output xp
}
""",
    "token_router": """
model Router(d = 16, sparsity = 0.2) {
  input x: float[B, N, d]
  _, gate, _ = token_router(x, sparsity=sparsity, mode=threshold)
  ctx = sqdk_attention(x, gate, heads=2, kv_heads=1, rope=true)
  y = x + ctx
  output y
  output gate
}
""",
    "attention_offset": """
model AttnOffset(d = 16) {
  input x: float[B, N, d]
  y = attention(x * 0.1 + 2.0, heads=2, causal=true)
  output y
}
""",
    "token_router_topk": """
model RouterTopk(d = 16, sparsity = 0.2) {
  input x: float[B, N, d]
  _, gate, _ = token_router(x, sparsity=sparsity, mode=topk)
  y = x + sqdk_attention(x, gate, heads=2, kv_heads=1, rope=true)
  output y
}
""",
}

FAMILIES["routed_mlp_hash"] = """
model RoutedHash(d = 16) {
  input x: float[B, N, d]
  input tokens: i64[B, N]
  y = routed_mlp(x, tokens=tokens, hidden=32, groups=4, active=2, route=hash)
  output y
}
"""
FAMILIES["fk_attention"] = """
model FK(d = 16) {
  input x: float[B, N, d]
  # Rows of nearly equal values (a large common offset): dS = A (dA - Δ) is then a difference
  # of nearly equal numbers, which amplifies any rounding of the hop states.
  y = fk_attention(x * 0.1 + 2.0, heads=2, hops=4, beta=0.5, causal=true)
  output y
}
"""

FAMILIES["splat_attention"] = """
model Splat(d = 16) {
  input x: float[B, N, d]
  y = splat_attention(x, splats=5, heads=2, causal=true, normalize=true)
  output y
}
"""
# spd_router at d = 128: its separation loss is a mean over B·N·d = 12,288 elements, so the
# cotangent of each element, 0.1 / 12288, is subnormal in float16. With the squared difference
# kept in the input dtype the mean's backward rounded that one factor for all elements (pred1 and
# pred2 gradients 0.0039-0.0041 against eager's 0.0004-0.0011, 2026-12-07); in float32, as the
# reference computes it, every element's gradient is rounded once.
WIDE = {
    "spd_router_wide": """
model SpdWide(d = 128) {
  input x: float[B, N, d]
  y, xs, xp, _ = spd_router(x)
  output y
}
"""
}


# Relative-error floor per dtype: three unit roundoffs (u = eps / 2); float32 a little more,
# for summation-order noise under cancellation.
FLOOR = {torch.bfloat16: 1.2e-2, torch.float16: 1.5e-3, torch.float32: 1e-5}


def _load(case: str, small: bool):
    if case in FAMILIES or case in WIDE:
        return sparkc.load_source({**FAMILIES, **WIDE}[case], f"{case}.spark")
    path = ROOT / "examples" / f"{case}.spark"
    return sparkc.load(path, **(_CPU_EXAMPLE[case] if small else {}))


def _inputs(module, b: int, n: int, dtype, g: torch.Generator) -> list:
    """Random inputs from the declarations; integer ranges from the module's RULES table."""
    ranges = {r["input"]: (r["low"], r["high"]) for r in module.RULES if r["kind"] == "range"}
    out = []
    for spec in module.INPUTS:
        shape = [b if d == "B" else n if isinstance(d, str) else d for d in spec.shape]
        if spec.dtype in ("float", "f32", "f16", "bf16", "f64"):
            out.append(torch.randn(shape, generator=g, dtype=torch.float64).to(dtype))
        elif spec.dtype == "bool":
            out.append(torch.rand(shape, generator=g) < 0.7)
        else:
            low, high = ranges.get(spec.name, (0, 8))
            high = 9 if high is None else high
            dt = torch.int32 if spec.dtype == "i32" else torch.int64
            out.append(torch.randint(max(low, 0), high, shape, generator=g, dtype=dt))
    return out


def _gradients(module, impl, state, inputs, cotangents, dtype) -> dict[str, torch.Tensor]:
    net = module.Model(impl=impl).to(device=DEVICE, dtype=dtype).eval()
    net.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    leaves = []
    for x in inputs:
        x = x.to(DEVICE).clone()  # a fresh leaf per run (no gradient accumulates across runs)
        if x.is_floating_point():
            x = x.to(dtype).requires_grad_(True)
        leaves.append(x)
    out = net(*leaves)
    total = out["aux_loss"].double() if out.get("loss") is None else out["loss"].double()
    for name, y in out.items():
        if name in cotangents:
            total = total + (y.double() * cotangents[name].to(DEVICE)).sum()
    total.backward()
    grads = {f"param {k}": p.grad for k, p in net.named_parameters()}
    for spec, x in zip(module.INPUTS, leaves):
        if x.is_floating_point():
            grads[f"input {spec.name}"] = x.grad
    return {
        k: (torch.zeros(1) if g is None else g.detach().double().cpu()) for k, g in grads.items()
    }


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).norm() / ref.norm().clamp_min(1e-30))


def _draw(module, dtype, b, n, seed, cotangents=True):
    """One draw: (state, inputs, cotangents), weights and inputs rounded to `dtype` once, so
    every run sees exactly the same values; cotangents None unless asked for."""
    torch.manual_seed(seed)
    state = module.Model(impl="reference").state_dict()
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    g = torch.Generator().manual_seed(seed + 1)
    inputs = _inputs(module, b, n, dtype, g)
    if not cotangents:
        return state, inputs, None
    probe = module.Model(impl="reference").to(dtype).eval()
    probe.load_state_dict(state)
    out = probe(*inputs)
    cot = {
        k: torch.randn(y.shape, generator=g, dtype=torch.float64)
        for k, y in out.items()
        if y is not None and y.dim() > 0 and y.is_floating_point()
    }
    return state, inputs, cot


# Functions that only move or select values (their result is exact): never perturbed.
_EXACT = {
    "view",
    "reshape",
    "__getitem__",
    "cat",
    "stack",
    "expand",
    "expand_as",
    "contiguous",
    "clone",
    "permute",
    "transpose",
    "t",
    "flatten",
    "unflatten",
    "unsqueeze",
    "squeeze",
    "split",
    "chunk",
    "unbind",
    "narrow",
    "index_select",
    "gather",
    "embedding",
    "select",
    "movedim",
    "repeat",
    "detach",
    "zeros",
    "zeros_like",
    "new_zeros",
    "ones",
    "ones_like",
    "full",
    "arange",
    "empty",
    "tril",
    "triu",
    "where",
    "masked_fill",
    "clamp",
    "clamp_min",
    "clamp_max",
    "relu",
    "maximum",
    "minimum",
    "abs",
    "neg",
    "__neg__",
}
# Eager reruns under `_RoundingFlips` per low-precision draw.
ROUNDING_RUNS = 8


def _widen(x, dtype):
    """`x` with every low-precision tensor as float32 and the dtype `dtype` itself replaced by
    float32 (so a cast to it becomes a cast to float32): an op's arguments for its exact value."""
    if isinstance(x, torch.Tensor) and x.dtype == dtype:
        return x.detach().float()
    if x is dtype:
        return torch.float32
    if isinstance(x, (list, tuple)):
        return type(x)(_widen(v, dtype) for v in x)
    if isinstance(x, dict):
        return {k: _widen(v, dtype) for k, v in x.items()}
    return x


class _RoundingFlips(TorchFunctionMode):
    """Over one forward: another valid rounding of every computed low-precision result (not
    views, copies or selections, `_EXACT`). Each result is recomputed in float32; an element
    whose float32 value lies more than a quarter unit of the last place from its rounded value
    goes, with probability one half, to the other neighbour, so it stays within 0.75 units of
    the float32 value, as a kernel that rounds in another place may land. Seeded by `gen`."""

    def __init__(self, dtype, gen: torch.Generator):
        super().__init__()
        self.dtype, self.gen = dtype, gen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if (
            name in _EXACT
            or name.endswith("_")
            or not isinstance(out, torch.Tensor)
            or out.dtype != self.dtype
            or out.dim() == 0
        ):
            return out
        with torch.no_grad():
            try:
                exact = func(*_widen(args, self.dtype), **_widen(kwargs, self.dtype))
            except (RuntimeError, TypeError, ValueError):  # no float32 form: keep the rounding
                return out
            if not isinstance(exact, torch.Tensor) or exact.shape != out.shape:
                return out
            near = out.detach().float()
            above = exact > near  # the other neighbour is above
            bits = out.detach().contiguous().view(torch.int16)
            magnitude_up = (near >= 0) == above  # moving away from 0 raises the bit pattern
            step = torch.where(magnitude_up, 1, -1).to(torch.int16)
            other = (bits + step).view(out.dtype).float()
            far = (exact - near).abs() > 0.25 * (other - near).abs()
            coin = (torch.rand(out.shape, generator=self.gen) < 0.5).to(out.device)
            pick = far & coin & torch.isfinite(near) & (near != 0) & (exact != near)
            moved = torch.where(pick, bits + step, bits).view(out.dtype)
        return out + (moved - out.detach()) if out.requires_grad else moved


def _floor_errors(module, state, inputs, cot, dtype, ref, eager, seed) -> dict[str, float]:
    """Per gradient: the root mean square of eager's relative error and those of
    `ROUNDING_RUNS` eager runs under `_RoundingFlips` (seeded by the draw)."""
    errors = {k: [_rel(eager[k], g64)] for k, g64 in ref.items()}
    gen = torch.Generator().manual_seed(1000 + seed)
    for _ in range(ROUNDING_RUNS):
        with _RoundingFlips(dtype, gen):
            run = _gradients(module, "reference", state, inputs, cot, dtype)
        for k, g64 in ref.items():
            errors[k].append(_rel(run[k], g64))
    return {k: (sum(e * e for e in es) / len(es)) ** 0.5 for k, es in errors.items()}


def case_errors(case, dtype, small, b, n, seed) -> dict[str, tuple[float, float]]:
    """{gradient name: (eager's error, the generated path's)} relative to float64 for one draw
    of weights and inputs; in a low-precision dtype eager's error is the RMS over its own run and
    runs with other valid roundings (`_floor_errors`)."""
    module = _load(case, small)
    state, inputs, cot = _draw(module, dtype, b, n, seed)
    ref = _gradients(module, "reference", state, inputs, cot, torch.float64)
    eager = _gradients(module, "reference", state, inputs, cot, dtype)
    gen = _gradients(module, "triton", state, inputs, cot, dtype)
    assert ref.keys() == eager.keys() == gen.keys()
    if dtype in (torch.float16, torch.bfloat16):
        floor = _floor_errors(module, state, inputs, cot, dtype, ref, eager, seed)
    else:
        floor = {k: _rel(eager[k], g64) for k, g64 in ref.items()}
    return {k: (floor[k], _rel(gen[k], g64)) for k, g64 in ref.items()}


_KINKS = {
    torch.relu: (0.0,),
    torch.nn.functional.relu: (0.0,),
    torch.Tensor.relu: (0.0,),
}
_CLAMPS = {torch.clamp, torch.Tensor.clamp, torch.clamp_min, torch.Tensor.clamp_min}


class _KinkMargin(TorchFunctionMode):
    """Over one forward: the smallest distance of any ReLU or clamp argument from its kink (the
    clamp's bounds), relative to the root mean square of that argument. The gradient jumps at a
    kink, so where this is within the forward's rounding, either low-precision path may take the
    other branch than float64."""

    def __init__(self):
        super().__init__()
        self.margin = math.inf

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _KINKS:
            self._note(args[0], _KINKS[func])
        elif func in _CLAMPS:
            bounds = [*args[1:], *kwargs.values()]
            self._note(args[0], [v for v in bounds if isinstance(v, (int, float))])
        return func(*args, **kwargs)

    def _note(self, x, kinks) -> None:
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() and kinks):
            return
        x = x.detach().double()
        dist = torch.stack([(x - k).abs() for k in kinks]).amin(0)
        scale = x.square().mean().sqrt().clamp_min(1e-30)
        self.margin = min(self.margin, float(dist.min() / scale))


def kink_margin(case, dtype, small, b, n, seed) -> float:
    """The float64 forward's kink margin (`_KinkMargin`) on one draw of `case_errors`."""
    module = _load(case, small)
    state, inputs, _ = _draw(module, dtype, b, n, seed, cotangents=False)
    net = module.Model(impl="reference").double().eval()
    net.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    inputs = [x.double() if x.is_floating_point() else x for x in inputs]
    with torch.no_grad(), _KinkMargin() as mode:
        net(*inputs)
    return mode.margin


def check_case(case, dtype, small, b, n, seeds=(0,)) -> list[str]:
    """The gradients whose error (root mean square over `seeds`) exceeds 2x eager's + FLOOR."""
    runs = [case_errors(case, dtype, small, b, n, seed) for seed in seeds]
    failures = []
    for name in runs[0]:
        e_eager = (sum(r[name][0] ** 2 for r in runs) / len(runs)) ** 0.5
        e_gen = (sum(r[name][1] ** 2 for r in runs) / len(runs)) ** 0.5
        if e_gen > 2 * e_eager + FLOOR[dtype]:
            # Per draw too: one draw far above the others is a single event (a ReLU that one
            # path's rounding flips), a defect of the kernels shows in every draw.
            draws = ", ".join(f"{r[name][1]:.3g}/{r[name][0]:.3g}" for r in runs)
            failures.append(
                f"{case}: {name}: generated {e_gen:.3g}, eager {e_eager:.3g}"
                f" (per draw, generated/eager: {draws})"
            )
    return failures


@pytest.mark.parametrize("case", [*_CPU_EXAMPLE, *FAMILIES])
def test_float32_gradients_within_twice_eager(case):
    """The plumbing on the CPU: float32 under the interpreter against float32 eager."""
    failures = check_case(case, torch.float32, small=True, b=2, n=5)
    assert not failures, "\n".join(failures)


# Known defects (issue 15, item 6, still open; measured numbers in docs/kernels/bounds.md,
# "Low-precision gradients"). Each is a strict xfail where it fails reliably, so a fix shows up as
# an unexpected pass that must remove its entry.
# - attention, fk_attention: the probabilities (fk: the hop states P_k, G_k) are rounded to the
#   input dtype for the tensor-core products, while the backward's row term Δ (attention:
#   <dO, O> from the rounded output; fk: sum_k <G_k, P_k>) is compared with dA from A recomputed
#   in float32; with nearly equal value rows dS = A (dA - Δ) cancels and amplifies that rounding.
#   fk_attention with float32 states was tried (2026-12-06, H100): wq/wk 0.20 vs eager 0.063
#   (still over 2x) at 4.6x the forward and 3.2x the forward+backward time, so it was not kept.
#   fk_attention now forms Δ_i = sum_j A_ij dA_ij in the dQ kernel from the recomputed A and dA
#   (float16, CPU: wq/wk 0.123/0.141 -> 0.011/0.011, eager 0.0092/0.0095); in bf16 on the H100
#   its strict xfail turned into an unexpected pass, so the entry is gone.
# - spd_router: pred1.bias's gradient (one sum over every row) 0.016 vs eager's 0.0017 in bf16.
KNOWN_F16: dict[str, tuple[str, bool]] = {}
KNOWN_BF16 = {
    # The last layer's `vs.head2.bias` (H100, 2026-12-07, per draw generated/eager 0.246/0.054,
    # 0.0018/0.0029, 0.0182/0.0022) is ill-conditioned: on draw 0 eager's own error spreads over
    # 0.007-0.27 under other valid roundings (`test_ill_conditioned_gradient_floor`). Under the
    # rounding-spread floor (0.102 / 0.0035 / 0.0065) it fails on draws 0 and 2 (tenth session).
    # The eleventh session's probe (bench/probe_lowp_spark_k.py): the spd_router gates computed
    # by torch exactly as the fused kernel computes them (float32 GEMM, sigmoid, one rounding)
    # give the same 0.246 / 0.0018 / 0.0182, and with the tuner's tiles instead of the
    # heuristic's (other summation orders upstream, nothing else) the same program gives
    # 0.0848 / 0.0018 / 0.0075, under the bar. The kernels add no rounding; the gradient swings
    # 3x with the summation order. Non-strict: which side of the bar it lands on depends on tiles.
    "spark_k": ("spark_k: h.1.vs.head2.bias, ill-conditioned (3x swing with GEMM tiles)", False),
}


def _cases(cases, known):
    return [
        pytest.param(c, marks=pytest.mark.xfail(strict=known[c][1], reason=known[c][0]))
        if c in known
        else c
        for c in cases
    ]


F16_CASES = _cases(FAMILIES, KNOWN_F16)


@pytest.mark.parametrize("case", F16_CASES)
def test_float16_gradients_within_twice_eager(case):
    """A low-precision run on the CPU: float16 under the interpreter (its dots accumulate in
    float32, like the GPU's; the interpreter has no bfloat16), op families at small sizes."""
    failures = check_case(case, torch.float16, small=True, b=2, n=12, seeds=(0, 1, 2))
    assert not failures, "\n".join(failures)


def kink_clear_seeds(case, dtype, small, b, n, count, margin, limit=64) -> tuple[int, ...]:
    """The first `count` seeds (of `limit`) whose float64 forward keeps every ReLU and clamp
    argument at least `margin` (relative to its RMS) away from its kink, so that the comparison
    measures rounding rather than which path's rounding happens to flip a ReLU or clamp decision
    (unlikely, not impossible, beyond the margin). The choice depends only on the float64
    forward, never on either path's result."""
    seeds: list[int] = []
    for seed in range(limit):
        if kink_margin(case, dtype, small, b, n, seed) >= margin:
            seeds.append(seed)
            if len(seeds) == count:
                return tuple(seeds)
    raise AssertionError(f"{case}: only {len(seeds)} kink-clear draws in {limit}")


# A composed example in float16 on the CPU. Its many ReLUs (and the verifier's pointer clamp) make
# the gradient jump where an argument crosses its kink: the spark_k example's seeds 0, 1, 2 fail
# (layer-0 mlp.fc1, norm and spd_router gradients at 3-4x eager's error) only because in seed 2
# one mlp.fc1 pre-activation is 1.6e-5 in float64 (0.05 units of the last place of its RMS) and
# the generated forward, with no larger error there than eager's, lands on the other side of 0
# (docs/kernels/bounds.md, "Low-precision gradients"). Draws whose float64 forward keeps every
# kink argument two units of the last place (relative to its RMS) away are kept: about one draw
# in eight. That makes a flipped decision unlikely, not impossible: eager's forward error on a
# kink argument is 0.54 units at the median, under 2.5 for 99%, 13.5 at most (one pointer).
EXAMPLE_F16_MARGIN = 2 * 2.0**-11


def test_kink_margin_sees_the_relu_that_flips():
    """spark_k's seed 2 (its mlp.fc1 pre-activation 1.6e-5 in float64, 0.05 units of the last
    place of its RMS, flips in the generated forward) is not kink-clear; seed 0 is."""
    u = 2.0**-11
    assert kink_margin("spark_k", torch.float16, True, 2, 12, 2) < 0.1 * u
    assert kink_margin("spark_k", torch.float16, True, 2, 12, 0) >= EXAMPLE_F16_MARGIN


@pytest.mark.parametrize("case", ["spark_k"])
def test_float16_example_gradients_within_twice_eager(case):
    """The spark_k example, float16 under the interpreter at tiny sizes, on kink-clear draws."""
    dtype = torch.float16
    seeds = kink_clear_seeds(case, dtype, True, 2, 12, count=3, margin=EXAMPLE_F16_MARGIN)
    failures = check_case(case, dtype, small=True, b=2, n=12, seeds=seeds)
    assert not failures, "\n".join(failures)


GPU_CASES = _cases([*_CPU_EXAMPLE, *FAMILIES], KNOWN_BF16)


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES)
def test_bfloat16_gradients_within_twice_eager(case, monkeypatch):
    monkeypatch.setenv("SPARKC_TUNE", "0")  # heuristic launches: quick, and tuning-independent
    failures = check_case(case, torch.bfloat16, small=False, b=2, n=48, seeds=(0, 1, 2))
    assert not failures, "\n".join(failures)


def test_ill_conditioned_gradient_floor():
    """spark_k in bf16 (eager on the CPU, the GPU test's sizes, draw 0): the last layer's
    `vs.head2.bias` gradient's error spreads far beyond eager's own sample under other valid
    roundings; most gradients' floors stay near eager's error."""
    dtype = torch.bfloat16
    module = _load("spark_k", small=False)
    state, inputs, cot = _draw(module, dtype, 2, 48, 0)
    ref = _gradients(module, "reference", state, inputs, cot, torch.float64)
    eager = _gradients(module, "reference", state, inputs, cot, dtype)
    floor = _floor_errors(module, state, inputs, cot, dtype, ref, eager, 0)
    name = "param h.1.vs.head2.bias"
    assert floor[name] > 4 * _rel(eager[name], ref[name])
    ratios = sorted(floor[k] / max(_rel(eager[k], ref[k]), 1e-30) for k in ref)
    assert ratios[len(ratios) // 2] < 1.3, ratios[len(ratios) // 2]


def test_float16_loss_mean_cotangent_rounded_once():
    """spd_router at d = 128 in float16 under the interpreter (see `WIDE`)."""
    failures = check_case("spd_router_wide", torch.float16, small=True, b=2, n=48)
    assert not failures, "\n".join(failures)
