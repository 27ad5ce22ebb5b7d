"""Ablation probe for the spark_k bf16 gradient case of tests/codegen/test_low_precision_gradients.py.

Consumes: the spark_k example at its own sizes (GPU, bf16, B=2, N=48, the test's draws) and a list
of variants, each replacing some generated kernels of the compiled package by eager PyTorch ops
that round exactly as the reference path does (bf16 GEMMs, float32 sigmoid, float32 stack scan).
Produces: per variant and draw, the generated/eager relative error of the gradients that fail the
test's bar (2x eager + floor), the named gradient's row, and a JSON file of every error. The kernel
that, replaced alone, brings the failing gradient back under the bar is the one adding rounding.

    python3 -P bench/probe_lowp_spark_k.py [--grad h.1.vs.head2.bias] [--json out.json]
    python3 -P bench/probe_lowp_spark_k.py --eager-gate-once     (CPU, about a minute)
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "codegen"))
import test_low_precision_gradients as lp


def _eager_linear(act: str | None):
    def fn(x, w, bias, *operands):
        assert not operands, "probe: GEMMs with operands are not replaced"
        z = F.linear(x, w, bias)
        if act == "relu":
            return torch.relu(z)
        if act == "sigmoid":
            return torch.sigmoid(z.float()).to(z.dtype)
        if act == "sigmoid_once":  # what the fused kernel should compute: one rounding
            zf = F.linear(x.float(), w.float(), None if bias is None else bias.float())
            return torch.sigmoid(zf).to(x.dtype)
        return z

    return fn


def _eager_norm_residual(x, r, weight, bias, eps):
    s = x + r
    return F.layer_norm(s, (s.shape[-1],), weight, bias, eps), s


def _eager_stack(logits, e, stack, penalty, noisy=False):
    from sparkc.runtime.reference.spark_k import _stack_scan

    assert not noisy
    pi = torch.softmax(torch.log_softmax(logits.float(), dim=-1), dim=-1)
    push, pop = pi[..., 0], pi[..., 1]
    ef = e.float()
    mem = ef.new_zeros(e.shape[0], int(stack), e.shape[-1])
    ptr = ef.new_zeros(e.shape[0])
    read, pointer, p_prev, _, _ = _stack_scan(push, pop, ef, int(stack), "top", mem, ptr)
    under = (pop * torch.relu(1 - p_prev)).mean()
    over = (push * torch.relu(p_prev - (int(stack) - 2))).mean()
    loss = float(penalty) * (under + over)
    return read.to(e.dtype), pointer.to(e.dtype), loss.to(e.dtype)


class _GenFwdEagerBwd(torch.autograd.Function):
    """The generated forward; the backward as eager's: sigma' from the rounded output y."""

    @staticmethod
    def forward(ctx, x, w, bias, fwd):
        with torch.no_grad():
            y = fwd(x, w, bias)
        ctx.save_for_backward(x, w, y)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, y = ctx.saved_tensors
        yf = y.float()
        dz = (dy.float() * yf * (1 - yf)).to(x.dtype)
        return dz @ w, dz.t() @ x, dz.float().sum(0).to(x.dtype), None


class _EagerFwdGenBwd(torch.autograd.Function):
    """Eager's forward (z rounded, sigmoid in float32); the generated kernels' backward:
    sigma' in float32 from the rounded z, the bias sum over float32 dz."""

    @staticmethod
    def forward(ctx, x, w, bias):
        z = F.linear(x, w, bias)
        ctx.save_for_backward(x, w, z)
        return torch.sigmoid(z.float()).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, w, z = ctx.saved_tensors
        s = torch.sigmoid(z.float())
        g = dy.float() * s * (1 - s)
        dz = g.to(x.dtype)
        return dz @ w, dz.t() @ x, g.sum(0).to(x.dtype)


def _replacements(kernels) -> dict[str, dict[str, object]]:
    """Kernel-group name -> {attribute of the kernels module: eager replacement}."""
    groups: dict[str, dict[str, object]] = {
        "gemm_sigmoid": {},
        "gemm_relu": {},
        "gemm_plain": {},
        "mul": {},
        "norm_residual": {},
        "stack": {},
    }
    for name in dir(kernels):
        fn = getattr(kernels, name)
        doc = getattr(fn, "__doc__", None) or ""
        if re.fullmatch(r"mm\d+", name):
            if doc.strip().endswith("epilogue: bias, act:sigmoid."):
                groups["gemm_sigmoid"][name] = _eager_linear("sigmoid")
            elif doc.strip().endswith("epilogue: bias, act:relu."):
                groups["gemm_relu"][name] = _eager_linear("relu")
            elif doc.strip().endswith("epilogue: bias."):
                groups["gemm_plain"][name] = _eager_linear(None)
        elif re.fullmatch(r"norm\d+", name) and "s = x + r" in doc:
            groups["norm_residual"][name] = _eager_norm_residual
        elif re.fullmatch(r"stack\d+", name):
            groups["stack"][name] = _eager_stack
    # Sigmoid GEMMs split by width (signals = 1 wide: the verifier's head2; wider: the gates)
    # and by direction (the generated forward or backward alone).
    split = ("sigmoid_n1_only", "sigmoid_wide_only", "sigmoid_gen_fwd_eager_bwd")
    for g in (*split, "sigmoid_eager_fwd_gen_bwd", "sigmoid_once"):
        groups[g] = {}
    for name, eager in groups["gemm_sigmoid"].items():
        gen = getattr(kernels, name)

        def pick(narrow, wide):
            return lambda x, w, b: (narrow if w.shape[0] == 1 else wide)(x, w, b)

        groups["sigmoid_n1_only"][name] = pick(eager, gen)
        groups["sigmoid_wide_only"][name] = pick(gen, eager)
        groups["sigmoid_gen_fwd_eager_bwd"][name] = lambda x, w, b, gen=gen: _GenFwdEagerBwd.apply(
            x, w, b, gen
        )
        groups["sigmoid_eager_fwd_gen_bwd"][name] = _EagerFwdGenBwd.apply
        # Eager float32 GEMM + sigmoid rounded once: the generated kernel's arithmetic done by
        # torch. Near the base row: the kernel computes what it should, and this gradient's
        # error comes from the one rounding itself; near eager: the kernel rounds elsewhere.
        groups["sigmoid_once"][name] = _eager_linear("sigmoid_once")
    # The gate product linear(read) * signals: the two-input pointwise program `a0 * a1`.
    src = Path(kernels.__file__).read_text()
    for chunk in src.split("@triton.jit"):
        m = re.match(r"\ndef (pw\d+)_f_kernel\(", chunk)
        if m and "\n    t0 = a0 * a1\n" in chunk and "a2_ptr" not in chunk and "t1 =" not in chunk:
            groups["mul"][m.group(1)] = lambda a, b: a * b
    return groups


def eager_gate_once(seeds, grad: str) -> None:
    """CPU, bf16, the GPU test's sizes: eager (the reference path) against eager with
    spd_router's gate logits kept in float32, so each gate is rounded once as the fused sigmoid
    GEMM rounds it; `grad`'s error per draw and both variants' rounding spread (the test's floor:
    RMS over the run and its reroundings)."""
    import sparkc.runtime.reference.spark_k as sk

    linear, gate = sk.linear, sk._gate

    def fp32_logits(x, params, prefix, bias=True):
        if prefix not in ("gate_s2", "gate_p2"):
            return linear(x, params, prefix, bias)
        b = params[f"{prefix}.bias"].float() if bias else None
        return F.linear(x.float(), params[f"{prefix}.weight"].float(), b)

    def once(logits, mode, noisy, ctx):
        g = gate(logits, mode, noisy, ctx)  # float32 logits: up() keeps them, sigmoid in float32
        return g.to(torch.bfloat16) if g.dtype == torch.float32 else g

    dtype = torch.bfloat16
    for seed in seeds:
        module = lp._load("spark_k", small=False)
        state, inputs, cot = lp._draw(module, dtype, 2, 48, seed)
        ref = lp._gradients(module, "reference", state, inputs, cot, torch.float64)
        eager = lp._gradients(module, "reference", state, inputs, cot, dtype)
        floor = lp._floor_errors(module, state, inputs, cot, dtype, ref, eager, seed)
        sk.linear, sk._gate = fp32_logits, once
        try:
            single = lp._gradients(module, "reference", state, inputs, cot, dtype)
            floor_single = lp._floor_errors(module, state, inputs, cot, dtype, ref, single, seed)
        finally:
            sk.linear, sk._gate = linear, gate
        print(
            f"draw {seed}: {grad} eager {lp._rel(eager[grad], ref[grad]):.3g}"
            f" (floor {floor[grad]:.3g}), gate rounded once {lp._rel(single[grad], ref[grad]):.3g}"
            f" (floor {floor_single[grad]:.3g})"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grad", default=None, help="default: the last layer's head2.bias")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", nargs="*", default=None, help="variant names")
    ap.add_argument("--cpu-check", action="store_true", help="float32, tiny sizes (interpreter)")
    ap.add_argument("--dtype", default="bfloat16", help="the test dtype at the GPU test's sizes")
    ap.add_argument(
        "--eager-gate-once",
        action="store_true",
        help="CPU: eager bf16 with the gates rounded once, against eager (no generated kernels)",
    )
    args = ap.parse_args()
    if args.eager_gate_once:
        eager_gate_once(args.seeds, args.grad or "param h.1.vs.head2.bias")
        return
    dtype = torch.float32 if args.cpu_check else getattr(torch, args.dtype)
    small, b, n = (True, 2, 5) if args.cpu_check else (False, 2, 48)
    module = lp._load("spark_k", small=small)
    args.grad = args.grad or f"param h.{0 if small else 1}.vs.head2.bias"
    kernels = importlib.import_module(module.__name__ + ".kernels")
    groups = _replacements(kernels)
    for g, fns in groups.items():
        print(f"group {g}: {sorted(fns)}")
    variants = [("base", [])] + [(g, [g]) for g in groups if groups[g]]
    variants.append(("all", [g for g in groups if groups[g] and not g.startswith("sigmoid_")]))
    if args.only:
        variants = [v for v in variants if v[0] in args.only]
    results = {}
    for label, names in variants:
        saved = {}
        for g in names:
            for attr, fn in groups[g].items():
                saved[attr] = getattr(kernels, attr)
                setattr(kernels, attr, fn)
        try:
            runs = [lp.case_errors("spark_k", dtype, small, b, n, s) for s in args.seeds]
        finally:
            for attr, fn in saved.items():
                setattr(kernels, attr, fn)
        results[label] = runs
        bad = []
        for name in runs[0]:
            e_eager = (sum(r[name][0] ** 2 for r in runs) / len(runs)) ** 0.5
            e_gen = (sum(r[name][1] ** 2 for r in runs) / len(runs)) ** 0.5
            if e_gen > 2 * e_eager + lp.FLOOR[dtype]:
                bad.append((e_gen / max(e_eager, 1e-30), name, e_gen, e_eager))
        row = " ".join(f"{r[args.grad][1]:.3g}/{r[args.grad][0]:.3g}" for r in runs)
        print(f"== {label}: {args.grad} gen/eager per draw {row}; over the bar: {len(bad)}")
        for ratio, name, e_gen, e_eager in sorted(bad, reverse=True)[:6]:
            print(f"   {name}: generated {e_gen:.3g} eager {e_eager:.3g} ({ratio:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
