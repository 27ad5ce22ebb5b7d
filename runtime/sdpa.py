"""torch's `scaled_dot_product_attention` (cuDNN, FlashAttention) beside the generated attention
kernels, as the GEMM path keeps torch's GEMM beside its own.

Consumes: q, k, v of an attention op without score modification (no basis bias) in the
family's layout ('bnhd' [B, N, heads, d] or 'bhnd'), its causal flag, kv group and position
offsets; `env` (switch `$SPARKC_EXTERN_ATTENTION`, default on), `autotune` (`pick`,
`bench_ms`). Produces:
- `extern_attention_ok(q, q_offset, k_offset, causal)`: whether torch's attention may be offered;
- `extern_attention(q, k, v, causal, group, layout)`: the op through torch's attention (its
  own backward), restricted to the fused backends (cuDNN, FlashAttention, memory-efficient): a
  shape none of them takes raises instead of falling back to the N×N math path;
- `attention_impl(...)`: "triton" or "sdpa" for this shape class, the faster of the two timed
  once on the GPU (forward, or forward + backward when gradients are wanted) and kept by the
  tuner's disk cache; "triton" (the first candidate) under the interpreter, off GPU, with
  tuning off, or when torch's attention fails on the shape.

torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import autotune, env
from .tiles import next_pow2

IMPLS = ("triton", "sdpa")


def extern_attention_ok(q: Any, q_offset: int, k_offset: int, causal: bool) -> bool:
    """CUDA 16-bit operands (float32 stays on the template's IEEE/TF32 choice); for a causal op,
    query and key positions aligned (torch's causal mask is j ≤ i: a decoding step's offset
    query rows cannot use it); not with `$SPARKC_EXTERN_ATTENTION=0` (Triton kernels only)."""
    import torch

    if env.switched_off("SPARKC_EXTERN_ATTENTION") or env.interpreting():
        return False
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    return not causal or int(q_offset) == int(k_offset)


def extern_attention(q: Any, k: Any, v: Any, causal: bool, group: int, layout: str) -> Any:
    """softmax(q kᵀ/√d, causal) v through torch's fused attention, in `layout` like q; query head
    h reads key/value head h // group."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if layout == "bnhd":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    fused = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    with sdpa_kernel(fused):
        o = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal, scale=1.0 / math.sqrt(q.shape[-1]), enable_gqa=group > 1
        )
    return (o.transpose(1, 2) if layout == "bnhd" else o).contiguous()


def attention_impl(
    source: Any,
    q: Any,
    k: Any,
    v: Any,
    causal: bool,
    group: int,
    layout: str,
    grad: bool,
    runs: dict[str, Callable[[Any, Any, Any], Any]],
) -> str:
    """The faster of `runs["triton"]` and `runs["sdpa"]` (each `(q, k, v) -> o`) on this shape
    class, timed on copies of q, k, v (with their backward when `grad`); the choice is stored
    keyed by `source`'s hash (the family's forward kernel), the GPU and the shape class."""
    import torch

    seq, heads = (1, 2) if layout == "bnhd" else (2, 1)
    shape_class = [
        min(next_pow2(max(q.shape[seq], 16)), 1 << 16),
        min(next_pow2(max(k.shape[seq], 16)), 1 << 16),
        next_pow2(q.shape[0] * q.shape[heads]),
        q.shape[-1],
        group,
        str(q.dtype),
        bool(causal),
        bool(grad),
    ]

    def bench(impl: str) -> float:
        ins = [t.detach().clone().requires_grad_(grad) for t in (q, k, v)]
        out_grad = None

        def step() -> Any:
            o = runs[impl](*ins)
            if grad:
                for t in ins:
                    t.grad = None
                o.backward(out_grad)
            return o

        try:
            with torch.enable_grad() if grad else torch.no_grad():
                out = runs[impl](*ins)
                if grad:
                    out_grad = torch.randn_like(out)
                return autotune.bench_ms(step)
        except RuntimeError:  # no fused backend takes this shape: never choose it
            if impl == IMPLS[0]:
                raise
            return math.inf

    return autotune.pick("attention_impl", shape_class, list(IMPLS), bench, source=source, like=q)
