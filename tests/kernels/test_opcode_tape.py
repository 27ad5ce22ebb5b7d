"""Numerics of the opcode tape kernels (codegen_templates/procedural_opcode_tape.py.jinja, SPEC §5.1).

Without CUDA the kernels run under the Triton interpreter in float32 (tiny shapes: lengths that
are not multiples of the 8-instruction chunk, D = 130 for two D-tiles with a masked tail, T = 0,
B = 0, D = 1) and are compared with the runtime's float64 reference rule `ref_opcode_tape`:
top and checks to rounding, depth/status/steps/trace exactly, and the gradients of args and
branch under a random cotangent on top and checks. A designed batch makes every status occur
(ok, underflow on EXEC and on an argument-less CHECK, budget, capacity, an empty tape, CHECK
with an argument on an empty stack, MERGE of an empty stack). A hypothesis test runs generated
tapes through the string machine (`sparkc.runtime.tape.run_tape`) and the kernels: they agree
on status, steps, depth and trace. GPU tests (float32 and bfloat16, 256 tapes × 64 × D=256, and
determinism) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sparkc.runtime.loader import load_source
from sparkc.runtime.reference import REFERENCE, RefContext
from sparkc.runtime.tape import encode_tapes, run_tape

from sparkc.codegen.render import render

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_program(t_len: int, g: torch.Generator, end_prob: float = 0.1) -> list[int]:
    """Random opcodes, biased towards pushes so that stacks grow and MERGE/CHECK see values."""
    weights = torch.tensor([2, 2, 1, 1.5, 1, 1.5, 1, 1, 0.5, end_prob * 10])
    draws = torch.multinomial(weights, max(t_len, 1), replacement=True, generator=g)[:t_len]
    return [-1 if int(k) == 9 else int(k) for k in draws]


@functools.cache
def build():
    prelude = render("prelude.py.jinja", version="test", source_name="test_opcode_tape")
    text = prelude + "\n\n" + render("procedural_opcode_tape.py.jinja", name="tape_t")
    return load_source("tape_t", text).tape_t


def reference(ops, args, has, branch, budget, capacity):
    return REFERENCE["opcode_tape"](
        {"ops": ops, "args": args, "has_arg": has},
        {"branch": branch},
        {"budget": budget, "capacity": capacity},
        RefContext(),
    )


# name → (opcodes, has_arg) of one tape; run with budget 6, capacity 3 (tapes of length ≤ 9).
DESIGNED = {
    "every opcode, over budget": ([0, 1, 6, 5, 2, 7, 4, 3, 8], [1, 1, 1, 0, 1, 0, 1, 0, 1]),
    "underflow on EXEC": ([1, 3, 3, 1], [1, 0, 0, 1]),
    "underflow on CHECK": ([8, 5, 1], [1, 0, 1]),
    "budget": ([1, 8, 8, 3, 1, 0, 1, 1], [1, 1, 1, 0, 1, 1, 1, 1]),
    "capacity": ([1, 4, 6, 2, 1], [1, 1, 1, 1, 1]),
    "empty tape": ([-1, -1, -1], [1, 1, 1]),
    "CHECK arg, MERGE empty": ([5, 7, 5, 7, 0, 6, -1, 1], [1, 0, 0, 0, 0, 1, 1, 1]),
    "PLAN without arg, end": ([0, 0, 1, -1, 1, 1], [0, 1, 0, 0, 1, 1]),
}
STATUS_OF = {
    "every opcode, over budget": 2,  # 9 instructions, budget 6
    "underflow on EXEC": 1,
    "underflow on CHECK": 1,
    "budget": 2,
    "capacity": 3,
    "empty tape": 0,
    "CHECK arg, MERGE empty": 0,
    "PLAN without arg, end": 0,
}


def designed_batch(t_len: int, extra: int, g: torch.Generator):
    rows, flags = [], []
    for ops, has in DESIGNED.values():
        rows.append((ops + [-1] * t_len)[:t_len])
        flags.append((has + [0] * t_len)[:t_len])
    for _ in range(extra):
        rows.append(random_program(t_len, g))
        flags.append((torch.rand(t_len, generator=g) < 0.7).long().tolist())
    return torch.tensor(rows, dtype=torch.int32), torch.tensor(flags, dtype=torch.bool)


def check_against_reference(ops, has, d, budget, capacity, seed, dtype=torch.float32, tol=2e-6):
    """Forward and backward of the kernels vs the float64 reference; returns the statuses."""
    g = torch.Generator().manual_seed(seed)
    b, t_len = ops.shape
    args = torch.randn(b, t_len, d, generator=g, dtype=torch.float64)
    branch = torch.randn(d, generator=g, dtype=torch.float64)
    wt = torch.randn(b, d, generator=g, dtype=torch.float64)
    wc = torch.randn(b, t_len, d, generator=g, dtype=torch.float64)
    ar, br = args.clone().requires_grad_(True), branch.clone().requires_grad_(True)
    ref = reference(ops, ar, has, br, budget, capacity)
    loss = (ref[0] * wt).sum() + (ref[4] * wc).sum()
    if loss.requires_grad:
        loss.backward()
    else:  # T = 0: the reference's outputs are constants
        ar.grad, br.grad = torch.zeros_like(args), torch.zeros_like(branch)
    dev = {"device": DEVICE, "dtype": dtype}
    ak = args.to(**dev).requires_grad_(True)
    bk = branch.to(**dev).requires_grad_(True)
    out = build()(ops.to(DEVICE), ak, has.to(DEVICE), bk, budget, capacity)
    assert [o.dtype for o in out] == [
        dtype,
        torch.int32,
        torch.int32,
        torch.int32,
        dtype,
        torch.int32,
    ]
    for i in (1, 2, 3, 5):
        assert torch.equal(out[i].cpu(), ref[i]), (i, out[i], ref[i])
    for i in (0, 4):
        torch.testing.assert_close(out[i].double().cpu(), ref[i].detach(), rtol=tol, atol=tol)
    ((out[0].double() * wt.to(DEVICE)).sum() + (out[4].double() * wc.to(DEVICE)).sum()).backward()
    assert ak.grad.dtype == dtype and bk.grad.dtype == dtype
    torch.testing.assert_close(ak.grad.double().cpu(), ar.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(bk.grad.double().cpu(), br.grad, rtol=tol * 10, atol=tol * 10)
    return ref[2].tolist()


def test_every_status_forward_and_backward():
    ops, has = designed_batch(9, 3, torch.Generator().manual_seed(1))
    statuses = check_against_reference(ops, has, d=5, budget=6, capacity=3, seed=0)
    assert statuses[: len(DESIGNED)] == list(STATUS_OF.values())
    assert set(statuses) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("b", "t_len", "d", "budget", "capacity"),
    [(5, 13, 130, 32, 32), (6, 11, 7, 5, 2), (2, 17, 3, 16, 1)],
)
def test_random_tapes_odd_sizes(b, t_len, d, budget, capacity):
    g = torch.Generator().manual_seed(b * 100 + t_len)
    ops = torch.tensor([random_program(t_len, g) for _ in range(b)], dtype=torch.int32)
    has = torch.rand(b, t_len, generator=g) < 0.7
    check_against_reference(ops, has, d, budget, capacity, seed=t_len)


def test_every_backward_tile_candidate(monkeypatch):
    """The backward's tuner may pick any of its candidate tiles on a GPU: each D-tile width it
    offers (narrower than the forward's, so a tape's backward spans several programs, with a
    masked tail at D = 130) gives the reference's gradients."""
    entry = build()
    tiles = entry.__globals__["tape_t_bwd_tiles"](130, 32, (128, 4))
    widths = sorted({bd for bd, _ in tiles})
    assert tiles[0] == (128, 4) and widths == [16, 32, 64, 128]
    assert all(1 <= 32 * bd // (32 * w) <= 64 for bd, w in tiles)
    g = torch.Generator().manual_seed(11)
    ops = torch.tensor([random_program(13, g) for _ in range(3)], dtype=torch.int32)
    has = torch.rand(3, 13, generator=g) < 0.7
    for width in widths:
        picked = []

        def config(b, t_len, d, cap_pad, first, run, like, width=width, picked=picked):
            picked.append(width)
            return width, 1

        monkeypatch.setitem(entry.__globals__, "tape_t_bwd_config", config)
        check_against_reference(ops, has, d=130, budget=32, capacity=32, seed=width)
        assert picked == [width]


@pytest.mark.parametrize(("b", "t_len", "d"), [(1, 1, 1), (2, 0, 3), (0, 4, 3)])
def test_tiny_shapes(b, t_len, d):
    g = torch.Generator().manual_seed(3)
    ops = torch.randint(0, 9, (b, t_len), generator=g, dtype=torch.int32)
    has = torch.ones(b, t_len, dtype=torch.bool)
    check_against_reference(ops, has, d, budget=4, capacity=2, seed=4)


def test_no_grad_call_and_int64_opcodes():
    """Inference goes through the forward alone (no autograd record); int64 opcodes and a
    has_arg given as bytes are accepted like int32 and bool."""
    ops, has = designed_batch(9, 0, torch.Generator().manual_seed(2))
    args = torch.randn(ops.shape[0], 9, 4, dtype=torch.float64)
    want = reference(ops, args, has, torch.zeros(4, dtype=torch.float64), 6, 3)
    with torch.no_grad():
        got = build()(ops.long(), args.float(), has.to(torch.uint8), torch.zeros(4), 6, 3)
    assert not got[0].requires_grad
    for w, o in zip(want, got):
        if w.is_floating_point():
            torch.testing.assert_close(o.double(), w, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(o, w)


WORDS = ("", "a", "bb", "ccc")
OPCODE = st.integers(-1, 8) | st.sampled_from(["PLAN", "retrieve", "CHECK", "MERGE", "END"])
INSTRUCTION = st.tuples(OPCODE, st.none() | st.sampled_from(WORDS))


@settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    programs=st.lists(st.lists(INSTRUCTION, max_size=9), min_size=1, max_size=6),
    budget=st.integers(1, 10),
    capacity=st.integers(1, 5),
)
def test_string_machine_and_kernels_agree(programs, budget, capacity):
    """For every generated tape the string machine and the tensor machine on kernels give the
    same status, steps, depth and trace."""
    ops, args, has = encode_tapes(programs, lambda s: [float(len(s)), 1.0], 2)
    with torch.no_grad():
        _top, depth, status, steps, _checks, trace = build()(
            ops.to(DEVICE),
            args.to(DEVICE),
            has.to(DEVICE),
            torch.zeros(2, device=DEVICE),
            budget,
            capacity,
        )
    for b, prog in enumerate(programs):
        run = run_tape(prog, budget, capacity)
        got = (int(status[b]), int(steps[b]), int(depth[b]))
        assert got == (run.status, run.steps, run.depth), prog
        pad = ops.shape[1] - len(prog)
        assert trace[b].tolist() == run.trace + [-1] * pad, prog


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_benchmark_shape(dtype):
    g = torch.Generator().manual_seed(7)
    b, t_len = 256, 64
    ops = torch.tensor([random_program(t_len, g, 0.02) for _ in range(b)], dtype=torch.int32)
    has = torch.rand(b, t_len, generator=g) < 0.8
    tol = 2e-6 if dtype == torch.float32 else 2e-2
    statuses = check_against_reference(ops, has, 256, 32, 32, seed=5, dtype=dtype, tol=tol)
    assert len(set(statuses)) >= 3


@pytest.mark.gpu
def test_gpu_deterministic_and_deep_stack():
    """Two calls are bitwise equal (forward and gradients); a stack deeper than 64 (CAP_PAD
    128, the narrower tile) matches the reference."""
    g = torch.Generator().manual_seed(8)
    b, t_len, d = 64, 200, 96
    ops = torch.randint(0, 9, (b, t_len), generator=g, dtype=torch.int32)
    ops[:, :150] = 1  # pushes: depth reaches 128
    has = torch.ones(b, t_len, dtype=torch.bool)
    check_against_reference(ops, has, d, 200, 128, seed=9)
    args = torch.randn(b, t_len, d, device=DEVICE, requires_grad=True)
    branch = torch.randn(d, device=DEVICE, requires_grad=True)
    runs = []
    for _ in range(2):
        out = build()(ops.to(DEVICE), args, has.to(DEVICE), branch, 200, 128)
        ga, gb = torch.autograd.grad((out[0].sum() + out[4].square().sum()), (args, branch))
        runs.append((*out, ga, gb))
    for x, y in zip(*runs):
        assert torch.equal(x, y)


def test_benchmark_script_dry_run(tmp_path):
    """bench/procedural_tape.py (run by the lead on a GPU) works end to end on the interpreter:
    every implementation timed at one batch size, the JSON written."""
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "procedural_tape.py"
    main = runpy.run_path(str(script))["main"]
    out = tmp_path / "tape.json"
    assert main(["--dry-run", "--tapes", "3", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["impl"] for r in rows] == ["sparkc", "kernels", "eager"]
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and sum(r["statuses"]) == 2 for r in rows)
