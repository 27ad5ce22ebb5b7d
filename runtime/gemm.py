"""GEMM tiles: the tuning candidates of every generated GEMM kernel and torch's GEMM beside them.

Consumes: a GEMM's sizes (M, N, K), its operands' dtype and device, the template's heuristic
and a function that launches the kernel with a configuration; `env`, `tiles`, `device` and
`autotune` (`pick`, `bench_ms`). Produces: the tile configuration to launch (`tuned_gemm`, a dict
of `GEMM_KEYS`, plus USE_TMA/PERSISTENT for kernels with a descriptor main loop), or
`EXTERN_CFG` when torch's own GEMM (cuBLAS, `extern_gemm`) timed fastest; candidates fitted to
shared memory (`fit_gemm`); the extern fallback's guard and call (`extern_gemm_ok`,
`extern_call`, `extern_gemm`); a bias-only epilogue's bias gradient folded into the
weight-gradient GEMM where dy is large (`fold_bias_ok`, `fold_bias_dw`). Choices are memoised in
process (`_GEMM_CHOICE`).

torch and triton are imported inside the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from . import autotune, device, env
from .tiles import next_pow2

# GEMM tuning candidates (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages) for Hopper,
# shared by every generated GEMM kernel (`tuned_gemm`). BLOCK_K is halved for float32 operands and
# stages are dropped to fit shared memory (`fit_gemm`).
GEMM_CANDIDATES = (
    (128, 256, 64, 8, 8, 3),
    (256, 128, 64, 8, 8, 3),
    (128, 128, 64, 8, 8, 3),
    (128, 128, 64, 8, 4, 4),
    (128, 256, 64, 8, 8, 4),
    (64, 128, 64, 8, 4, 4),
)
# Skinny outputs (M <= 64 rows: decoding, small batches).
GEMM_SKINNY_CANDIDATES = (
    (64, 64, 128, 1, 4, 4),
    (64, 128, 64, 1, 4, 4),
    (64, 64, 64, 1, 4, 3),
    (64, 256, 64, 1, 8, 3),
)
GEMM_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")
# Shared memory the operand pipeline may use (the H100/H200 have 227 KB per block).
GEMM_SMEM_BUDGET = 200 * 1024


def fit_gemm(cand: Sequence[int], element_size: int, dual: bool = False) -> tuple[int, ...]:
    """A candidate adjusted to its operands: BLOCK_K halved for 4-byte elements, pipeline stages
    dropped until `stages x (BLOCK_M + BLOCK_N) x BLOCK_K` elements (twice that when two operand
    pairs share a stage, `dual`) fit in GEMM_SMEM_BUDGET."""
    bm, bn, bk, group, warps, stages = cand
    if element_size >= 4 and bk > 16:
        bk //= 2
    pairs = 2 if dual else 1
    while stages > 2 and stages * pairs * (bm + bn) * bk * element_size > GEMM_SMEM_BUDGET:
        stages -= 1
    return (bm, bn, bk, group, warps, stages)


# tuned_gemm()'s memo, checked before anything else on every launch: (kernel id, M class, N, K,
# dtype, dual, tma, device) -> configuration (callers never modify it).
_GEMM_CHOICE: dict[tuple, dict] = {}


def tuned_gemm(
    kernel: Any,
    heuristic: Callable[..., dict],
    M: int,
    N: int,
    K: int,
    like: Any,
    run: Callable[[dict], Any],
    dual: bool = False,
    tma: bool = False,
    extern: Callable[[], Any] | None = None,
    persistent: bool = False,
    tag: str = "",
) -> dict:
    """Tile configuration of a GEMM kernel producing [M, N] with reduction length K.

    `heuristic(M, N, K, dtype, like, dual=dual)` is the template's own choice, used as is under
    the interpreter and off GPU. On a GPU every fitted candidate (the heuristic's first) is timed
    once per shape class by `run(cfg)`, which launches `kernel` with that configuration, and the
    fastest is remembered (`pick`). `tma`: the kernel also has a tensor-descriptor main loop
    (constexpr USE_TMA) and its operands allow one (`tma_ok`): every candidate is offered both
    ways, the configurations carrying "USE_TMA" and "PERSISTENT" (False unless `persistent`: the
    kernel also has the constexpr PERSISTENT, and the 8-warp tiles are offered a third way, the
    descriptor loop in a persistent grid of about one program per SM walking the tiles, which
    the caller sizes). `extern`: the GEMM has no epilogue, and
    `extern()` computes the same product with torch's own GEMM (cuBLAS, `extern_gemm`): it is
    timed as one more candidate (TorchInductor's `extern_kernels.mm` choice), and when it wins
    the configuration is `EXTERN_CFG` (`{"EXTERN": True}`), which the caller runs instead of
    `kernel`. Never the untimed default: with tuning off the heuristic's tiles run. `tag`: one
    kernel launched in ways the shape does not tell apart (other operand strides, an extra
    store) is tuned once per tag (part of the shape class).
    """
    if env.interpreting() or like.device.type != "cuda":
        return heuristic(M, N, K, like.dtype, like, dual=dual)
    m_class = "skinny" if M <= 64 else min(next_pow2(M), 1 << 16)
    offer_extern = extern is not None
    persistent = bool(tma and persistent and M > 64)
    prune = env.env_flag("SPARKC_TUNE_PRUNE", True) and like.element_size() == 2 and M > 64
    memo_key = (
        id(kernel),
        m_class,
        N,
        K,
        like.dtype,
        dual,
        bool(tma),
        persistent,
        offer_extern,
        like.device.index,
        env.charge_host(),
        prune,
        tag,
    )
    cfg = _GEMM_CHOICE.get(memo_key)
    if cfg is not None:
        return cfg
    keys = GEMM_KEYS + ("USE_TMA", "PERSISTENT") if tma else GEMM_KEYS

    def candidates() -> list[tuple[int, ...]]:
        base = heuristic(M, N, K, like.dtype, like, dual=dual)
        tiles = [tuple(base[k] for k in GEMM_KEYS)]
        for cand in GEMM_SKINNY_CANDIDATES if M <= 64 else GEMM_CANDIDATES:
            cand = fit_gemm(cand, like.element_size(), dual)
            if cand not in tiles:
                tiles.append(cand)
        out: list[Any] = tiles
        if tma:
            out = [(*t, 0, 0) for t in tiles] + [(*t, 1, 0) for t in tiles]
            # Persistent grids pay off with one large program per SM: 8-warp tiles only.
            out += [(*t, 1, 1) for t in tiles if persistent and t[4] == 8]
        out = out + [EXTERN] if offer_extern else out
        return pruned(out, min(M, N, K), offer_extern and not tma) if prune else out

    def bench(cand: Any) -> float:
        if cand == EXTERN:
            return autotune.bench_ms(extern)
        return autotune.bench_ms(lambda: run(_gemm_cfg(keys, cand)))

    shape_class = [m_class, N, K, str(like.dtype), bool(dual)] + (["tma"] if tma else [])
    shape_class += ["persistent"] if persistent else []
    shape_class += ["extern"] if offer_extern else []
    shape_class += [tag] if tag else []
    # A pruned list keeps the key of the full one: a choice timed over the full list (a local
    # cache from before, or a shipped one) still answers when it is among the pruned candidates.
    # The full list (pruning off) has its own key, so it is timed in full once.
    shape_class += [] if prune or M <= 64 or like.element_size() != 2 else ["full"]
    name = getattr(getattr(kernel, "fn", kernel), "__name__", "gemm")
    cfg = _gemm_cfg(
        keys, autotune.pick(name, shape_class, candidates, bench, source=kernel, like=like)
    )
    if not device.capturing(like):  # inside a capture pick() may answer provisionally
        _GEMM_CHOICE[memo_key] = cfg
    return cfg


# The tiles kept by `pruned` beside the heuristic's: (BLOCK_M, BLOCK_N).
PRUNE_KEEP_TILE = (128, 256)
# A plain GEMM (no epilogue) this large on every side times only cuBLAS and the heuristic.
PRUNE_EXTERN_MIN = 256


def pruned(cands: Sequence[Any], smallest: int, plain_extern: bool) -> list[Any]:
    """The candidates of a 16-bit GEMM with M > 64 worth timing, from the full list of
    `tuned_gemm` (the heuristic's tile first): the heuristic's tile in every main-loop form, the
    128x256 tiles in their descriptor forms (or plain where the kernel has none), torch's GEMM;
    for a GEMM without an epilogue whose M, N and K are all at least `PRUNE_EXTERN_MIN`
    (`plain_extern`, `smallest` = min(M, N, K)) only the heuristic's tile and torch's GEMM.

    Measured, not modelled: over the 65 GEMM shape classes the H100 tuned on 2026-12-07 (bf16,
    Triton 3.6; every candidate timed, 652 in all; the two skinny classes are not pruned), this
    keeps 250 candidates, and the best kept one is the best of all in 61 classes; the
    geometric-mean loss is 0.17%, the largest 6.3% (a GEMM with K = 1), in the tuner's own cost
    (GPU plus host time; `bench/replay_gemm_pruning.py`). `$SPARKC_TUNE_PRUNE=0` times the full
    list (docs/kernels/matmul.md)."""
    heuristic = tuple(cands[0][:6])

    def keep(c: Any) -> bool:
        if c == EXTERN or tuple(c[:6]) == heuristic:
            return True
        if plain_extern and smallest >= PRUNE_EXTERN_MIN:
            return False
        return tuple(c[:2]) == PRUNE_KEEP_TILE and (len(c) == 6 or c[6] == 1)

    return [c for c in cands if keep(c)]


def _gemm_cfg(keys: Sequence[str], cand: Any) -> dict:
    if cand == EXTERN:
        return EXTERN_CFG
    cfg = dict(zip(keys, cand))
    for flag in ("USE_TMA", "PERSISTENT"):
        if flag in cfg:
            cfg[flag] = bool(cfg[flag])
    return cfg


# The extern GEMM candidate of `tuned_gemm` (a JSON string in the tuning cache) and the
# configuration it stands for.
EXTERN = "extern"
EXTERN_CFG: dict = {"EXTERN": True}


def extern_gemm_ok(a: Any, b: Any, out: Any, acc: Any = None) -> bool:
    """Whether `extern_gemm(a, b, out, acc)` may be offered as a tuning candidate: CUDA operands
    of one 16-bit dtype (float32 operands stay on the template's IEEE/TF32 choice, which torch's
    global TF32 flag would override), `out` of that dtype or float32, and `acc`, if any, float32
    (a 16-bit accumulator would round once per chunk); not with `$SPARKC_EXTERN_GEMM=0` (Triton
    kernels only)."""
    import torch

    if env.switched_off("SPARKC_EXTERN_GEMM"):
        return False
    half = (torch.float16, torch.bfloat16)
    if a.device.type != "cuda" or a.dtype not in half or b.dtype != a.dtype:
        return False
    if acc is not None and acc.dtype != torch.float32:
        return False
    return out.dtype in (a.dtype, torch.float32)


def extern_call(a: Any, b: Any, out: Any, acc: Any = None) -> Callable[[], Any] | None:
    """`extern_gemm(a, b, out, acc)` as a no-argument call for `tuned_gemm(extern=...)`, or None
    where `extern_gemm_ok` says it may not be offered."""
    if not extern_gemm_ok(a, b, out, acc):
        return None
    return functools.partial(extern_gemm, a, b, out, acc)


def extern_gemm(a: Any, b: Any, out: Any, acc: Any = None) -> Any:
    """out = a @ b (+ acc) through torch's GEMM (cuBLAS), for 16-bit a [M, K], b [K, N] of any
    strides; float32 accumulation throughout. A float32 `out` (or `acc`) takes the product
    without a 16-bit rounding (`out_dtype`); with `acc` the sum is formed in `acc`, which is
    overwritten, then copied to `out` when `out` is another tensor."""
    import torch

    if acc is None:
        if out.dtype == a.dtype:
            return torch.mm(a, b, out=out)
        return torch.mm(a, b, out_dtype=out.dtype, out=out)
    if acc.dtype == a.dtype:
        torch.addmm(acc, a, b, out=acc)
    else:
        torch.addmm(acc, a, b, out_dtype=acc.dtype, out=acc)
    if out is not acc:
        out.copy_(acc)
    return out


# A bias-only GEMM epilogue's bias gradient is the column sum of dy: a pass over all of dy of its
# own (an LM head's [8192, 32000] bf16 dy took 203 us on an H100, 2026-12-07). The weight
# gradient's GEMM reads dy anyway; with X widened by a column of ones (and seven zeros, keeping
# rows 16-byte aligned) it yields the bias gradient as one more output column, for 8 more columns
# of that GEMM, a copy of X and (where the gradient is stored) one of dW. Taken from this many
# elements of dy up.
FOLD_BIAS_MIN_ELEMENTS = 1 << 26


def fold_bias_ok(dy: Any) -> bool:
    """Whether a bias-only epilogue's backward takes the bias gradient from the weight-gradient
    GEMM (`fold_bias_dw`) instead of a column-sum pass over `dy`."""
    return dy.numel() >= FOLD_BIAS_MIN_ELEMENTS


def fold_bias_dw(mm: Callable, dz: Any, x: Any, w_dtype: Any, bias_dtype: Any) -> tuple:
    """(dW, d_bias) of y = x Wᵀ + b from one GEMM `mm(a, b, out)` (out = a @ b): dzᵀ [x | 1 0…]
    into [N, K + 8]; columns :K are dW (a strided view), column K the bias gradient, summed in
    the GEMM's float32 accumulator and rounded once."""
    import torch

    M, K = x.shape
    N = dz.shape[1]
    pad = x.new_zeros((M, 8))
    pad[:, 0] = 1
    wide = torch.empty((N, K + 8), device=x.device, dtype=w_dtype)
    out = mm(dz.t(), torch.cat([x, pad], dim=1), wide)
    return out[:, :K], out[:, K].to(bias_dtype).contiguous()
