"""Launch helpers shared by every generated kernel fragment and module.

Consumes: tensors and shapes at run time. Produces: block sizes and warp counts (`next_pow2`,
`cdiv`, `row_tile`, `num_warps_for`), the interpreter switch (`interpreting`), device identity
(`device_key`, `sm_count`), tuned choices through the on-disk cache of `sparkc.runtime.tuning`
(`pick`), Triton's cache location (`configure_triton_cache`), clean dependency errors
(`require_triton`, `require_cuda`) and an ahead-of-time compile helper (`compile_for_target`) used
by the compile-only tests and checks.

triton is imported lazily: this module must import (and `require_triton` must raise its helpful
error) on a machine without triton. torch is imported with it (`apply`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from . import tuning

INSTALL_HINT = "pip install 'sparkc[gpu]'  (or: pip install triton)"


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """The broadcast of `shapes` (numpy rules), in plain Python.

    `torch.broadcast_shapes` costs a few hundred microseconds per call on the host, more than a
    memory-bound kernel over 64 MB takes on an H100; every generated launch calls this instead.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, n in enumerate(shape):
            cur = out[offset + i]
            if n != cur and n != 1:
                if cur != 1:
                    raise RuntimeError(
                        "shapes cannot be broadcast together: "
                        + ", ".join(str(list(s)) for s in shapes)
                    )
                out[offset + i] = n
    return tuple(out)


class _NoGradCtx:
    """The `ctx` a generated autograd.Function's forward gets when no gradient can flow: it saves
    nothing and reports that no input needs a gradient (so forwards skip what only the backward
    reads, e.g. saved pre-activations)."""

    def __init__(self, n_inputs: int) -> None:
        self.needs_input_grad = (False,) * n_inputs

    def save_for_backward(self, *tensors: Any) -> None:
        pass

    def mark_non_differentiable(self, *tensors: Any) -> None:
        pass

    def mark_dirty(self, *tensors: Any) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        pass


def _apply_eager(function: Any, *args: Any) -> Any:
    """`function.apply(*args)` for a generated torch.autograd.Function, or, when autograd would
    record nothing (grad mode off, or no tensor argument requires a gradient), its forward called
    directly: `Function.apply` costs ~10 µs of host time per call even then (measured on the H200
    machine: 11.2 µs), a sizeable share of a small model's per-call host time. The outputs have
    the same values either way and do not require gradients."""
    import torch

    if torch.is_grad_enabled():
        for a in args:
            if isinstance(a, torch.Tensor) and a.requires_grad:
                return function.apply(*args)
    return function.forward(_NoGradCtx(len(args)), *args)


def _opaque_to_dynamo(fn: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    return torch.compiler.disable(fn, recursive=True)


# Under `torch.compile` every generated Function runs as one opaque call (a graph break), exactly
# as it runs eagerly; dynamo traces only the glue between such calls. Tracing into the Functions
# is not safe: dynamo wraps each Triton launch in a higher-order op whose written tensors it
# infers from the kernel's IR, and on the H200 (torch 2.11, Triton 3.6) the traced backward of
# tiny_gpt returned a token-embedding gradient of zeros. The wrapper costs ~0.25 µs per call
# eagerly (docs/architecture.md, "torch.compile").
apply = _opaque_to_dynamo(_apply_eager)


# The bytes dictionary behind `os.environ` on POSIX (kept in step by os.environ's setters,
# putenv included): generated code asks `interpreting()` and the switches below ~180 times per
# tiny_gpt training step, and `os.environ.get` plus the parsing cost 0.67 µs a call against
# 0.14 µs for a lookup here and a cached parse (bench/host_time_cpu.py). Elsewhere: os.environ.
_ENV_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ENV_KEYS = {
    k: k.encode()
    for k in (
        "TRITON_INTERPRET",
        "SPARKC_TUNE",
        "SPARKC_EXTERN_GEMM",
        "SPARKC_GEMM_TMA",
        "SPARKC_TMA_DEVICE",
        "SPARKC_TUNE_HOST",
        "SPARKC_FAST_LAUNCH",
    )
}


_FLAGS: dict[tuple[bytes | str | None, bool], bool] = {}


def _flag(raw: bytes | str | None, default: bool) -> bool:
    # A dict memo, not functools.lru_cache: `torch.compile` traces through this (generated host
    # glue asks the switches) and warns about every lru_cache it meets.
    hit = _FLAGS.get((raw, default))
    if hit is None:
        text = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw or "").strip()
        hit = default if not text else text.lower() not in ("0", "false", "no", "off")
        if len(_FLAGS) < 256:
            _FLAGS[(raw, default)] = hit
    return hit


def _env_flag(name: str, default: bool) -> bool:
    """Environment variable `name` as a boolean: unset or empty is `default`, 0/false/no/off
    False, anything else True."""
    if isinstance(_ENV_BYTES, dict):
        return _flag(_ENV_BYTES.get(_ENV_KEYS.get(name) or name.encode()), default)
    return _flag(os.environ.get(name), default)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return _env_flag("TRITON_INTERPRET", False)


def require_triton() -> Any:
    try:
        import triton
    except ImportError as e:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(
            f"sparkc's generated kernels need Triton, which is not installed: {INSTALL_HINT}"
        ) from e
    return triton


def require_cuda(tensor: Any) -> None:
    """Triton kernels run on CUDA tensors, or on CPU tensors under the interpreter."""
    if tensor.device.type == "cuda" or (interpreting() and tensor.device.type == "cpu"):
        return
    raise RuntimeError(
        f"sparkc Triton kernels need CUDA tensors, got a tensor on {tensor.device}; move the "
        "module and its inputs with .cuda(), use the module's reference path "
        "(backend='reference'), or set TRITON_INTERPRET=1 to run kernels on the CPU (slow)"
    )


@functools.cache
def _cuda_identity(index: int) -> tuple[str, int, int, int]:
    import torch

    props = torch.cuda.get_device_properties(index)
    return props.name, props.major, props.minor, props.multi_processor_count


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "none"
    return str(triton.__version__)


def device_key(tensor: Any) -> str:
    """Identifies the hardware and compiler a tuning result is valid for."""
    if tensor.device.type == "cuda" and not interpreting():
        name, major, minor, _ = _cuda_identity(tensor.device.index or 0)
        mode = "" if charge_host() else "|gpu-only"
        return f"{name}|sm{major}{minor}|triton-{_triton_version()}{mode}"
    return f"{tensor.device.type}-interpreter|triton-{_triton_version()}"


def charge_host() -> bool:
    """Whether tuning charges each candidate its host time as well as its GPU time
    (`bench_ms`). `$SPARKC_TUNE_HOST=0`: GPU time alone, for programs replayed from CUDA graphs,
    where launches cost no host time; its choices are stored apart (`device_key`)."""
    return not _switched_off("SPARKC_TUNE_HOST")


def capturing(tensor: Any) -> bool:
    """True while the current CUDA stream is being captured into a CUDA graph (work that
    synchronises with the host, such as validating ids, must be skipped then)."""
    if tensor.device.type != "cuda":
        return False
    import torch

    return torch.cuda.is_current_stream_capturing()


def _validate_ids(tokens: Any, rows: int) -> None:
    if tokens.numel() == 0 or capturing(tokens):
        return
    bad = (tokens < 0) | (tokens >= rows)
    if bool(bad.any()):
        first = int(tokens[bad].reshape(-1)[0])
        raise IndexError(f"token id {first} is out of range for an embedding of {rows} rows")


# Raise IndexError when an id of `tokens` is outside [0, rows), on the host (one synchronisation),
# except while a CUDA graph is being captured (a capture cannot synchronise). Opaque to
# `torch.compile`, like `apply`: a graph break there, not a data-dependent branch in its graph.
validate_ids = _opaque_to_dynamo(_validate_ids)


def sm_count(tensor: Any) -> int:
    """Streaming multiprocessors of the tensor's GPU (a small number under the interpreter, where
    every program runs one after another)."""
    if tensor.device.type == "cuda" and not interpreting():
        return _cuda_identity(tensor.device.index or 0)[3]
    return 2


def num_warps_for(block_elems: int) -> int:
    """Warps for a tile of `block_elems` elements: about 256 elements (8 per thread) per warp."""
    return max(1, min(16, next_pow2(block_elems) // 256))


def row_tile(d: int, max_block_d: int = 16384, target: int = 4096) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_D) for kernels that reduce along rows of width `d`.

    The whole row fits one tile up to `max_block_d`; narrow rows are stacked so a program still
    moves about `target` elements (bandwidth). Under the interpreter two rows per tile: grids run
    one program at a time, and a partial last row block exercises the row masks.
    """
    if interpreting():
        return 2, min(next_pow2(d), max_block_d)
    block_d = min(next_pow2(d), max_block_d)
    return max(1, min(64, target // block_d)), block_d


def _switched_off(variable: str) -> bool:
    """Whether environment switch `variable` (default on) is set to 0/false/no/off."""
    return not _env_flag(variable, True)


def tuning_enabled() -> bool:
    """False when `$SPARKC_TUNE` is 0/false/no/off: every kernel then launches its template's
    heuristic configuration without timing candidates (quick first calls, e.g. in test runs that
    compile hundreds of shapes once each)."""
    return not _switched_off("SPARKC_TUNE")


def pick(
    name: str,
    shape_class: Any,
    candidates: Sequence[Any] | Callable[[], Sequence[Any]],
    bench_fn: Callable[[Any], float],
    *,
    source: Any,
    like: Any,
) -> Any:
    """Choose among `candidates` for kernel `name` on the device of tensor `like`.

    `bench_fn(candidate)` returns a time in milliseconds. The choice is cached on disk, keyed by
    the hash of `source` (the kernel's source text or JITFunction), the shape class, the GPU and
    the Triton version. Under the interpreter, off GPU, or with `$SPARKC_TUNE=0` the first
    candidate (the template's heuristic) is returned untimed; inside a CUDA graph capture, where
    timing cannot run, the choice on disk if there is one, else the heuristic, not remembered.
    `candidates` may be a function returning the list, called only when the choice is not
    already known in this process (the lookup runs on every launch).
    """
    if interpreting() or like.device.type != "cuda" or not tuning_enabled():
        return (candidates() if callable(candidates) else candidates)[0]
    # In-process memo in front of the disk cache: hashing the source and serialising the key
    # would cost more host time than a small kernel runs. Everything that changes the candidate
    # list must be part of the shape class.
    key = tuple(shape_class) if isinstance(shape_class, list) else shape_class
    memo_key = (name, id(source), key, like.device.index, charge_host())
    hit = _PICKED.get(memo_key)
    if hit is None:
        cands = candidates() if callable(candidates) else candidates
        cache, src = tuning.default_cache(), tuning.source_hash(source)
        if capturing(like):
            # Timing synchronises, which a CUDA graph capture forbids: a choice stored on disk,
            # else the heuristic for this call, remembered by nobody (callers memoising their
            # choices check `capturing` too), so the first call outside a capture tunes.
            stored = cache.lookup(name, tuning.entry_key(src, shape_class, device_key(like)), cands)
            return cands[0] if stored is None else stored
        hit = cache.choose(name, src, shape_class, device_key(like), cands, bench_fn)
        _PICKED[memo_key] = hit
    return hit


# pick()'s memo: (kernel, id of its source object, shape class, device) -> choice. Sources are
# module-level JIT functions that live as long as the process, so ids are stable.
_PICKED: dict[tuple, Any] = {}


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
    `kernel`. Never the untimed default: with tuning off the heuristic's tiles run.
    """
    if interpreting() or like.device.type != "cuda":
        return heuristic(M, N, K, like.dtype, like, dual=dual)
    m_class = "skinny" if M <= 64 else min(next_pow2(M), 1 << 16)
    offer_extern = extern is not None
    persistent = bool(tma and persistent and M > 64)
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
        charge_host(),
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
        return out + [EXTERN] if offer_extern else out

    def bench(cand: Any) -> float:
        if cand == EXTERN:
            return bench_ms(extern)
        return bench_ms(lambda: run(_gemm_cfg(keys, cand)))

    shape_class = [m_class, N, K, str(like.dtype), bool(dual)] + (["tma"] if tma else [])
    shape_class += ["persistent"] if persistent else []
    shape_class += ["extern"] if offer_extern else []
    name = getattr(getattr(kernel, "fn", kernel), "__name__", "gemm")
    cfg = _gemm_cfg(keys, pick(name, shape_class, candidates, bench, source=kernel, like=like))
    if not capturing(like):  # inside a capture pick() may answer provisionally
        _GEMM_CHOICE[memo_key] = cfg
    return cfg


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

    if _switched_off("SPARKC_EXTERN_GEMM"):
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


def _column_blocks(tensors: Sequence[Any], widths: Sequence[int]) -> tuple[int, int] | None:
    """(rows, row stride) when `tensors`, read as [rows, widths[i]] matrices, are the adjacent
    column blocks, in order, of one row-major [rows, sum(widths)] buffer; else None."""
    first = tensors[0]
    total = sum(widths)
    offset = first.storage_offset()
    rows = None
    for t, w in zip(tensors, widths):
        if t.dtype != first.dtype or t.device != first.device or w <= 0 or t.numel() % w:
            return None
        if t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
            return None
        try:
            m = t.view(-1, w)
        except RuntimeError:
            return None
        if rows is None:
            rows = m.shape[0]
        if m.shape[0] != rows or m.stride(1) != 1 or (rows > 1 and m.stride(0) != total):
            return None
        if t.storage_offset() != offset:
            return None
        offset += w
    return rows, total


def adjacent_columns(mats: Sequence[Any], widths: Sequence[int]) -> Any:
    """The [rows, sum(widths)] matrix whose column blocks are `mats` (each [rows, widths[i]]):
    a view of their buffer when they already are its adjacent blocks (no copy), else their
    concatenation."""
    import torch

    found = _column_blocks(mats, widths)
    if found is not None:
        rows, total = found
        return mats[0].as_strided((rows, total), (total, 1))
    return torch.cat([m.reshape(-1, w) for m, w in zip(mats, widths)], 1)


# Stacked weights of horizontally fused projections kept between calls (`stacked_rows`) inside
# `frozen_weights()`: key the weights' ids, value (weak references to them, their version
# stamps, the stacked tensor).
_STACKED: dict[tuple[int, ...], tuple[tuple, tuple, Any]] = {}
_STACKED_MAX = 256
_FROZEN = [0]  # depth of nested frozen_weights() blocks


@contextlib.contextmanager
def frozen_weights() -> Any:
    """Inside this block the horizontally fused projections (attention's q/k/v) keep their
    stacked weights between calls instead of copying them on every call: for decoding and
    inference, where the copy is three times the projection's own weight traffic and one launch.

    A kept copy is used again only while the same weight tensors have the same version counters,
    data pointers, shapes and strides, so tracked in-place updates (optimizer steps,
    `load_state_dict`, `copy_` under `torch.no_grad()`) are seen. Writes through `.data`
    (`w.data.copy_(...)`, as some EMA code does) bump no version counter and are NOT seen:
    update weights that way only outside the block. Leaving the outermost block frees the
    kept copies. Calls that need the weights' gradients never use them."""
    _FROZEN[0] += 1
    try:
        yield
    finally:
        _FROZEN[0] -= 1
        if not _FROZEN[0]:
            _STACKED.clear()


def stacked_rows(ws: Sequence[Any], keep: bool) -> Any:
    """`torch.cat(ws, 0)`, the weights of a horizontally fused projection stacked. Inside
    `frozen_weights()` and with `keep` (no gradient flows to the weights) the stacked tensor is
    kept and returned again while the same weights are unchanged (see `frozen_weights`: the same
    tensor objects, through weak references, with the same version counters, data pointers,
    shapes and strides). Never kept while a CUDA graph is being captured (a replay would keep
    reading the copy after the weights change). An entry goes when any of its weights is freed,
    when they are stacked again with gradients flowing, or when the block ends."""
    import torch

    if not keep or not _FROZEN[0]:
        if _STACKED:  # training again after decoding: the kept copy would only hold memory
            _STACKED.pop(tuple(id(w) for w in ws), None)
        return torch.cat(ws, 0)
    if capturing(ws[0]):
        return torch.cat(ws, 0)
    try:
        stamp = tuple((w._version, w.data_ptr(), w.shape, w.stride()) for w in ws)
    except RuntimeError:  # inference-mode tensors carry no version counter
        return torch.cat(ws, 0)
    key = tuple(id(w) for w in ws)
    hit = _STACKED.get(key)
    if hit is not None:
        refs, old, stacked = hit
        if old == stamp and all(r() is w for r, w in zip(refs, ws)):
            return stacked
    # A normal tensor even under torch.inference_mode(): a later call that saves it for the
    # backward (frozen weights, an input that needs its gradient) could not save an inference
    # tensor.
    with torch.inference_mode(False):
        stacked = torch.cat(ws, 0)
    if len(_STACKED) >= _STACKED_MAX:
        _STACKED.pop(next(iter(_STACKED)))

    def forget(_ref: Any, key: tuple = key) -> None:
        _STACKED.pop(key, None)

    _STACKED[key] = (tuple(weakref.ref(w, forget) for w in ws), stamp, stacked)
    return stacked


def grads_like(*tensors: Any) -> list[Any]:
    """Empty gradient buffers shaped like `tensors` (each read as [rows, its last two dims]).
    When the tensors are adjacent column blocks of one buffer (the views a horizontally fused
    projection returns), the gradients are the same blocks of one new buffer, so the fused
    projection's backward reads them as one matrix without stacking them."""
    import torch

    widths = [t.shape[-1] * t.shape[-2] if t.dim() > 1 else t.shape[-1] for t in tensors]
    found = _column_blocks(tensors, widths) if tensors[0].numel() else None
    if found is None:
        return [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
    rows, total = found
    buf = torch.empty((rows, total), dtype=tensors[0].dtype, device=tensors[0].device)
    out, start = [], 0
    for t, w in zip(tensors, widths):
        out.append(buf[:, start : start + w].view(t.shape))
        start += w
    return out


def tma_ok(*tensors: Any) -> bool:
    """Whether every tensor can be read through a host tensor descriptor (the Hopper tensor
    memory accelerator): 2-D, 16-bit, unit last stride, 16-byte aligned base and row stride,
    on a GPU (or the interpreter), with a Triton that has `TensorDescriptor`; never with
    `$SPARKC_GEMM_TMA=0` (pointer main loops only, for side-by-side measurements)."""
    if _tensor_descriptor_class() is None or _switched_off("SPARKC_GEMM_TMA"):
        return False
    import torch

    for t in tensors:
        if t.dim() != 2 or t.dtype not in (torch.float16, torch.bfloat16) or min(t.shape) == 0:
            return False
        if t.device.type != "cuda" and not interpreting():
            return False
        if t.stride(1) != 1 or (t.stride(0) * t.element_size()) % 16 or t.data_ptr() % 16:
            return False
    return True


def tma_on_device() -> bool:
    """Whether the descriptor main loops build their tensor descriptors inside the kernel
    (`tl.make_tensor_descriptor`) instead of taking host descriptors, whose encoding costs a
    driver call per descriptor and launch on the host. `$SPARKC_TMA_DEVICE=0`: host descriptors
    (for side-by-side measurements)."""
    return not _switched_off("SPARKC_TMA_DEVICE")


# Triton releases whose launch layout (the arguments of a CompiledKernel's `run`, which the cached
# launcher calls as Triton's own `JITFunction.run` does) was verified on a GPU: the 207 GPU tests
# that ran in the call's limit passed with the cached launcher on (H200, Triton 3.6.0,
# 2026-12-02). Elsewhere it is opt-in.
FAST_LAUNCH_VERIFIED = ("3.6.",)
_fast_default: list[bool] = []


def fast_launch() -> bool:
    """Whether generated kernels launch through sparkc's cached launcher (`runtime/launcher.py`)
    instead of Triton's `JITFunction.run` after their first call: `$SPARKC_FAST_LAUNCH` (1 on,
    0 off); unset, on for the Triton releases in `FAST_LAUNCH_VERIFIED`. Never under the
    interpreter."""
    if interpreting():
        return False
    if not _fast_default:
        _fast_default.append(require_triton().__version__.startswith(FAST_LAUNCH_VERIFIED))
    return _env_flag("SPARKC_FAST_LAUNCH", _fast_default[0])


def wrap_kernels(namespace: dict) -> None:
    """Route a generated kernels.py's launched kernels through sparkc's launcher
    (`runtime/launcher.py`); called on its globals by its last line."""
    from .launcher import wrap_kernels as wrap

    wrap(namespace)


def ensure_scratch_allocator() -> None:
    """Give Triton a global-scratch allocator unless this thread has one: kernels that build
    tensor descriptors on the device keep them in global scratch (128 bytes per descriptor and
    program), which Triton allocates at launch through the allocator of `triton.set_allocator`.
    Triton keeps it in a context variable, which the autograd engine's worker threads do not
    inherit, so this runs before such launches. A user's own allocator is left alone."""
    if interpreting():
        return
    from triton.runtime import _allocation

    if isinstance(_allocation._allocator.get(), _allocation.NullAllocator):
        _allocation._allocator.set(_scratch)


def _scratch(size: int, alignment: int, stream: Any) -> Any:
    import torch

    # The caching allocator's blocks are 512-byte aligned; Triton asks for 128.
    return torch.empty(size, dtype=torch.int8, device="cuda")


def tma_descriptor(t: Any, block_shape: Sequence[int]) -> Any:
    """A host tensor descriptor of 2-D `t` read in `block_shape` tiles (zero padding)."""
    return _tensor_descriptor_class()(t, list(t.shape), list(t.stride()), list(block_shape))


@functools.cache
def _tensor_descriptor_class() -> Any:
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:  # Triton before 3.4
        return None
    return TensorDescriptor


# tuned_gemm()'s memo, checked before anything else on every launch: (kernel id, M class, N, K,
# dtype, dual, tma, device) -> configuration (callers never modify it).
_GEMM_CHOICE: dict[tuple, dict] = {}


def bench_ms(fn: Callable[[], Any]) -> float:
    """The tuner's cost of one call of `fn()`, in milliseconds: its GPU time (do_bench median,
    L2 flushed) plus the host time it takes to issue (`issue_ms`).

    The serial model of a program whose host and GPU time are comparable. A call is never
    timed alone in a model: when the whole program is host-bound (a training step of ~70
    launches at 80-140 µs of host each on the lent machine) every µs of host time counts, and
    in isolation a GPU-bound kernel hides its host time behind its own run. Measured
    2026-12-02: the tensor-descriptor main loops won their GEMMs in isolation and made the
    tiny_gpt step 15% slower (9.40 against 8.15 ms without them; 7.62 replayed from CUDA
    graphs). A candidate now wins only when it saves more GPU time than it adds host time.
    With `$SPARKC_TUNE_HOST=0` (`charge_host`): the GPU time alone."""
    import triton.testing

    flushed = float(triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median"))
    return flushed + issue_ms(fn) if charge_host() else flushed


def issue_ms(fn: Callable[[], Any], calls: int = 10) -> float:
    """Host milliseconds per call to issue `calls` calls of `fn()` back to back (after one
    untimed call and a synchronisation, so the queue starts empty)."""
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - t0) * 1e3 / calls
    torch.cuda.synchronize()
    return host


def configure_triton_cache() -> str:
    """Point Triton's kernel cache at a sparkc-owned folder unless the user chose one."""
    current = os.environ.get("TRITON_CACHE_DIR")
    if current:
        return current
    path = tuning.cache_root() / "triton"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TRITON_CACHE_DIR"] = str(path)
    return str(path)


def compile_for_target(
    fn: Any,
    signature: dict[str, str],
    constexprs: dict[str, Any],
    *,
    arch: int = 90,
    num_warps: int = 4,
) -> dict[str, Any]:
    """Compile a `@triton.jit` function ahead of time for CUDA `sm_<arch>` (no GPU needed) and
    return its assembly by stage (`ttir`, `ttgir`, `llir`, `ptx`, ...).

    `signature` maps every argument name to a Triton type string (`*fp32`, `*bf16`, `i32`, `fp32`,
    ...); constexpr arguments may be left out of it. Works with Triton 3.2+ (constexpr keys are
    passed as `(index,)` tuples, the form every 3.x version accepts).
    """
    triton = require_triton()
    from triton.backends.compiler import GPUTarget

    fn = getattr(fn, "jit", fn)  # a generated module's launcher (runtime/launcher.py)

    sig = {}
    for arg in fn.arg_names:
        if arg in constexprs:
            sig[arg] = "constexpr"
        elif arg in signature:
            sig[arg] = signature[arg]
        else:
            raise KeyError(f"{fn.__name__}: no type for argument {arg!r}")
    consts = {(fn.arg_names.index(k),): v for k, v in constexprs.items()}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts)
    compiled = triton.compile(
        src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps}
    )
    return dict(compiled.asm)


def collapse_dims(
    shape: Sequence[int], strides: Sequence[Sequence[int]], max_dims: int = 4
) -> tuple[list[int], list[list[int]]] | None:
    """Merge dimensions of a contiguous output `shape` that every operand walks contiguously.

    `strides[k]` are operand k's strides over `shape` (0 on broadcast dimensions). Size-1
    dimensions are dropped and a dimension merges into the next inner one when, for every operand,
    `stride_outer == stride_inner * size_inner`. Returns `(sizes, strides)` left-padded to
    `max_dims` (size 1, stride 0), or None when more than `max_dims` dimensions remain.
    The common case, same-shape contiguous operands, collapses to one dimension of stride 1.
    """
    dims = [(int(s), [int(st[i]) for st in strides]) for i, s in enumerate(shape) if s != 1]
    merged: list[tuple[int, list[int]]] = []
    for size, sts in dims:
        if merged:
            outer_size, outer_sts = merged[-1]
            if all(o == i * size for o, i in zip(outer_sts, sts)):
                merged[-1] = (outer_size * size, sts)
                continue
        merged.append((size, sts))
    if len(merged) > max_dims:
        return None
    pad = max_dims - len(merged)
    sizes = [1] * pad + [s for s, _ in merged]
    out_strides = [[0] * pad + [sts[k] for _, sts in merged] for k in range(len(strides))]
    return sizes, out_strides
