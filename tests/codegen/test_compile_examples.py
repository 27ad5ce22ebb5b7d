"""Compile-only: every Triton kernel that each example's generated module launches (forward and
backward, float32 and bfloat16) is compiled to PTX for sm_90 on this CPU machine, with the
argument types and constexprs the module really uses. The interpreter accepts code the real
compiler rejects; this catches it without a GPU.

The examples are loaded with one layer (`layers=1`): every layer of `repeat(layers)` launches
the same kernels with the same arguments. The launches are recorded without running them: the
interpreted passes, not the compiles, were the test's cost (spark_k 48 of 58 s, 94 s over the
five examples), and no example's host code reads a kernel's result to decide what to launch
next. `test_recording_without_running_sees_every_launch` checks that on hspmn, whose routing is
the most data-dependent: running its kernels launches exactly the recorded set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from launch_record import compile_records, distinct, recording

from sparkc import api

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.spark"))


def _inputs(module, b: int = 1, n: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    vocab = int(module.HYPER.get("vocab", 8))
    out = {}
    for spec in module.INPUTS:
        shape = [b if d == "B" else n if isinstance(d, str) else d for d in spec.shape]
        if spec.dtype in ("i64", "int", "i32"):
            high = 9 if spec.name == "ops" else vocab
            t = torch.randint(0, high, shape, generator=g)
            out[spec.name] = t.to(torch.int32) if spec.dtype == "i32" else t
        elif spec.dtype == "bool":
            out[spec.name] = torch.rand(shape, generator=g) > 0.5
        else:
            out[spec.name] = torch.randn(shape, generator=g)
    return out


def _launches(path, run_kernels: bool) -> list[dict]:
    """The launches of one forward + backward in float32 and in bfloat16."""
    module = api.load(path, layers=1)
    torch.manual_seed(0)
    net = module.Model(impl="triton").train()
    records: list[dict] = []
    with recording(records, run_kernels=run_kernels):
        for dtype in (torch.float32, torch.bfloat16):
            net.to(dtype)
            out = net(**_inputs(module))
            loss = (
                out["loss"]
                if out.get("loss") is not None
                else sum(
                    v.float().sum()
                    for v in out.values()
                    if isinstance(v, torch.Tensor) and v.is_floating_point()
                )
            )
            loss.backward()
    return records


def test_recording_without_running_sees_every_launch():
    path = ROOT / "examples" / "hspmn.spark"
    assert distinct(_launches(path, False)) == distinct(_launches(path, True))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_launched_kernel_compiles_for_sm90(path, tmp_path):
    records = _launches(path, run_kernels=False)
    assert records, "the Triton path launched no kernel"
    compiled = compile_records(records, tmp_path)
    assert len(compiled) == len(distinct(records))
