"""sparkc's launcher for the kernels of a generated module: `Kernel` wraps each launched
`@triton.jit` kernel, and `wrap_kernels` wraps them all at the end of a generated kernels.py.

Consumes: a generated kernels.py's globals, the launch arguments of each call and the switch
`$SPARKC_FAST_LAUNCH` (through `env`). Produces: the launches, and Triton's `CompiledKernel` of
each; owns its switch (`fast_launch`, `FAST_LAUNCH_VERIFIED`). Imports triton and torch.

Why: Triton's `JITFunction.run` redoes, on every launch, per-call binding that gives the same
answer on every call of a given kernel with the same argument kinds: reading knobs, the current
device and stream through the driver, specialising every argument, hashing the specialisation,
looking the compiled kernel up, building launch metadata. Inductor's generated launchers skip it
the same way. On the lent H200 the host-bound tiny_gpt forward + backward (66 launches) took a
median 6.23 ms per call this way against 7.11 ms through Triton's launch (docs/performance.md,
"Session 2026-12-02, fifth").

When `fast_launch()` is on (by default with the Triton releases it was verified on,
`FAST_LAUNCH_VERIFIED`; `$SPARKC_FAST_LAUNCH=1`/`0` to choose) a `Kernel` launches
through Triton's normal path the first time it meets a specialisation key, keeps the
`CompiledKernel` that path returns, and afterwards calls that compiled kernel's launcher
directly, with the arguments Triton's own `JITFunction.run` passes it (a private interface,
hence the list of verified releases). The key is at least as fine as Triton's
specialisation: the current device, the launch options (num_warps, num_stages, ...), every
constexpr value, and for the other arguments their kind: a tensor's dtype and whether its data
pointer is 16-byte aligned; an int's width class, whether it equals 1 and whether 16 divides it;
bool, float and None as such. Any other argument (a host tensor descriptor, say), a callable
grid or a launch hook set (a profiler) takes the normal path. Always off under the interpreter.
Inside the tuner's `device.compile_only()` (its parallel compile pass) a launch compiles the
kernel for its arguments through Triton's `warmup` and runs nothing.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from triton import knobs

from . import device, env

_MISS = object()
_I32 = 2**31

# Triton releases whose launch layout (the arguments of a CompiledKernel's `run`, which the cached
# launcher calls as Triton's own `JITFunction.run` does) was verified on a GPU: the 207 GPU tests
# that ran in the call's limit passed with the cached launcher on (H200, Triton 3.6.0,
# 2026-12-02). Elsewhere it is opt-in.
FAST_LAUNCH_VERIFIED = ("3.6.",)
_fast_default: list[bool] = []


def fast_launch() -> bool:
    """Whether generated kernels launch through sparkc's cached launcher (`Kernel`)
    instead of Triton's `JITFunction.run` after their first call: `$SPARKC_FAST_LAUNCH` (1 on,
    0 off); unset, on for the Triton releases in `FAST_LAUNCH_VERIFIED`. Never under the
    interpreter."""
    if env.interpreting():
        return False
    if not _fast_default:
        _fast_default.append(env.require_triton().__version__.startswith(FAST_LAUNCH_VERIFIED))
    return env.env_flag("SPARKC_FAST_LAUNCH", _fast_default[0])


def _arg_kind(value: Any, tensor_type: type) -> Any:
    """What Triton specialises a runtime argument on (or `_MISS`: not handled here). Ints in
    [0, 2**31), the common case, get one small int: 1 (equals 1), 16 (16 divides it) or 0."""
    kind = type(value)
    if kind is int:
        if 0 <= value < _I32:
            return 1 if value == 1 else (0 if value % 16 else 16)
        return ("i", value % 16 == 0, -_I32 <= value, value >= 2**63)
    if isinstance(value, tensor_type):
        return (value.dtype, value.data_ptr() % 16 == 0)
    if kind is bool:
        return "b"
    if kind is float:
        return "f"
    if value is None:
        return None
    return _MISS


def _hooked(hook: Any) -> bool:
    """Whether a launch hook is set (Triton 3.6: a function or None; 3.9: a HookChain whose
    `calls` may be empty)."""
    return hook is not None and bool(getattr(hook, "calls", True))


class Kernel:
    """A launched `@triton.jit` kernel of a generated module. `kernel[grid](*args, **kwargs)`
    as with the JIT function itself; any other attribute is the JIT function's."""

    __slots__ = ("_compiled", "_constexpr", "_defaults", "_names", "_runtime", "jit")

    def __init__(self, jit: Any) -> None:
        self.jit = jit
        params = list(inspect.signature(jit.fn).parameters.values())
        self._names = tuple(p.name for p in params)
        # As Triton's KernelParam.is_constexpr (the interpreter's functions have no params).
        self._constexpr = tuple("constexpr" in str(p.annotation) for p in params)
        # Parameters whose kind, not value, goes into the key when passed by keyword.
        self._runtime = frozenset(n for n, c in zip(self._names, self._constexpr) if not c)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self._compiled: dict[tuple, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.jit, name)

    def __repr__(self) -> str:
        return f"<sparkc launcher for {self.jit!r}>"

    def __getitem__(self, grid: Any) -> Any:
        if device.compiling_only():  # the tuner's parallel compile pass: compile, run nothing
            return functools.partial(self._warmup, grid)
        if not fast_launch():
            return self.jit[grid]
        return functools.partial(self.run, grid)

    def _warmup(self, grid: Any, *args: Any, **kwargs: Any) -> None:
        self.jit.warmup(*args, grid=grid, **kwargs)

    def arguments(self, args: tuple, kwargs: dict) -> tuple | None:
        """Every argument in signature order, defaults filled in (as Triton's binder orders
        them), or None when some argument is missing."""
        names = self._names
        if len(args) >= len(names):
            return args
        tail = []
        for name in names[len(args) :]:
            value = kwargs.get(name, _MISS)
            if value is _MISS:
                value = self._defaults.get(name, _MISS)
                if value is _MISS:
                    return None
            tail.append(value)
        return args + tuple(tail)

    def key(self, device: int, args: tuple, kwargs: dict, tensor_type: type) -> tuple | None:
        """The specialisation key of one launch (`args` the positional arguments), or None when
        it is not one handled here. Keyword arguments enter in the order given (a call site
        passes them the same way every time): constexprs and launch options by value, runtime
        arguments by kind; defaulted parameters are the same on every launch. A tensor enters
        as its dtype followed by its alignment (only tensors put a dtype in a runtime slot, so
        the flat key stays unambiguous). Runs on every launch: the common cases are inline."""
        if self._runtime.isdisjoint(kwargs):
            key: list[Any] = [device, tuple(kwargs.items()), len(args)]
        else:
            key = [device, len(args)]
            for name, value in kwargs.items():
                if name in self._runtime:
                    value = _arg_kind(value, tensor_type)
                    if value is _MISS:
                        return None
                key.append(name)
                key.append(value)
        append = key.append
        for value, constexpr in zip(args, self._constexpr):
            if constexpr:
                append(value)
                continue
            if type(value) is int and 0 <= value < _I32:
                append(1 if value == 1 else (0 if value % 16 else 16))
            elif isinstance(value, tensor_type):
                append(value.dtype)
                append(value.data_ptr() % 16 == 0)
            else:
                value = _arg_kind(value, tensor_type)
                if value is _MISS:
                    return None
                append(value)
        return tuple(key)

    def run(self, grid: Any, *args: Any, **kwargs: Any) -> Any:
        full = self.arguments(args, kwargs)
        if full is None or callable(grid) or _hooked(knobs.runtime.launch_enter_hook):
            return self.jit[grid](*args, **kwargs)
        device = torch.cuda.current_device()
        key = self.key(device, args, kwargs, torch.Tensor)
        if key is None:
            return self.jit[grid](*args, **kwargs)
        try:
            compiled = self._compiled.get(key)
        except TypeError:  # an unhashable constexpr or option: Triton's path
            return self.jit[grid](*args, **kwargs)
        if compiled is None:
            compiled = self.jit[grid](*args, **kwargs)
            if compiled is not None:
                self._compiled[key] = compiled
            return compiled
        n = len(grid)
        stream = torch._C._cuda_getCurrentRawStream(device)
        compiled.run(
            grid[0],
            grid[1] if n > 1 else 1,
            grid[2] if n > 2 else 1,
            stream,
            compiled.function,
            compiled.packed_metadata,
            None,
            None,
            None,
            *full,
        )
        return compiled


def wrap_kernels(namespace: dict) -> None:
    """Replace every launched JIT kernel of a generated kernels.py (a global whose name ends in
    `_kernel`) by a `Kernel`. Device functions the kernels call stay JIT functions: Triton
    resolves those by name when it compiles the caller."""
    for name, value in list(namespace.items()):
        if name.endswith("_kernel") and hasattr(value, "arg_names") and hasattr(value, "fn"):
            namespace[name] = Kernel(value)
