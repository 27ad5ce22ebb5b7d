"""Record the Triton kernel launches of a generated module under the interpreter, then compile
each distinct launch to PTX for sm_90 in a subprocess without TRITON_INTERPRET.

The interpreter accepts code that the real compiler rejects, so every kernel a generated module
actually launches (with the argument types and constexpr values it really uses) is compiled for
the H100's architecture on this CPU machine.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import subprocess
import sys

import torch

_PTR = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.float64: "*fp64",
    torch.int64: "*i64",
    torch.int32: "*i32",
    torch.int8: "*i8",
    torch.uint8: "*u8",
    torch.bool: "*i1",
}


def _arg_type(value):
    if isinstance(value, torch.Tensor):
        return _PTR[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument {type(value).__name__}")


@contextlib.contextmanager
def recording(records: list[dict], run_kernels: bool = True):
    """Within the block, every interpreted kernel launch appends a record to `records`.
    `run_kernels=False` records without running the kernel (its outputs keep whatever their
    allocation held): for counting launches of code whose host-side control flow does not read
    kernel results."""
    from triton.runtime.interpreter import InterpretedFunction

    original = InterpretedFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        sig = inspect.signature(self.fn)
        names = list(sig.parameters)
        options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
        bound = dict(zip(names, args))
        bound.update(kwargs)
        signature, constexprs = {}, {}
        for name in names:
            param = sig.parameters[name]
            value = bound.get(name, param.default)
            is_const = "constexpr" in str(param.annotation)
            if is_const or value is None:
                constexprs[name] = value
            else:
                signature[name] = _arg_type(value)
        records.append(
            {
                "module": inspect.getsourcefile(self.fn),
                "kernel": self.fn.__name__,
                "signature": signature,
                "constexprs": constexprs,
                "num_warps": int(options.get("num_warps", 4)),
            }
        )
        if not run_kernels:
            return None
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run
    try:
        yield records
    finally:
        InterpretedFunction.run = original


def distinct(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = json.dumps(r, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


_SCRIPT = r"""
import importlib.util, json, sys
from sparkc.runtime import launch
records = json.load(open(sys.argv[1]))
modules, done = {}, []
for r in records:
    path = r["module"]
    if path not in modules:
        spec = importlib.util.spec_from_file_location(f"compile_only_{len(modules)}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        modules[path] = mod
    fn = getattr(modules[path], r["kernel"])
    asm = launch.compile_for_target(fn, r["signature"], r["constexprs"], arch=90,
                                    num_warps=r["num_warps"])
    assert ".target sm_90" in asm["ptx"], r["kernel"]
    done.append(r["kernel"])
print(json.dumps(done))
"""


def compile_records(records: list[dict], tmp_path) -> list[str]:
    """Compile every record for sm_90 in a clean subprocess; returns the kernel names compiled."""
    path = tmp_path / "records.json"
    path.write_text(json.dumps(distinct(records)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"compile-only failed:\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
