"""The string machine of `sparkc.runtime.tape` (SPEC §5.1), the tape encoders, and agreement
between the string machine and the tensor machine (reference `opcode_tape`)."""

from __future__ import annotations

import pytest
import torch
from _opharness import random_program
from sparkc.runtime.reference import REFERENCE, RefContext
from sparkc.runtime.tape import OPCODES, encode_tape, encode_tapes, opcode_number, run_tape

DIM = 3
WORDS = ["alpha", "beta", "gamma", "delta", "eps"]


def _vectors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    vec = {w: torch.randn(DIM, generator=g, dtype=torch.float64) for w in WORDS}
    vec[""] = torch.zeros(DIM, dtype=torch.float64)  # a missing text: "" on strings, 0 on tensors
    return vec


def _tensor_machine(programs, vec, branch, budget, capacity, length=None):
    ops, args, has = encode_tapes(programs, vec.__getitem__, DIM, length, dtype=torch.float64)
    return REFERENCE["opcode_tape"](
        {"ops": ops, "args": args, "has_arg": has},
        {"branch": branch},
        {"budget": budget, "capacity": capacity},
        RefContext(),
    )


def test_spec_example():
    run = run_tape([("PLAN", "factor problem"), ("CHECK", "result")])
    assert run.log == ["PLAN: factor problem", "CHECK: factor problem"]
    assert (run.status, run.steps, run.depth) == (0, 2, 0)
    assert run.checks == [None, "factor problem"]


def test_every_log_line_format():
    program = [
        ("PLAN", None),
        ("PLAN", "p"),
        ("RETR", "r"),
        ("ASSUME", "a"),
        ("EXEC", None),
        ("LEMMA", "l"),
        ("BRANCH", "b"),
        ("MERGE", None),
        ("CITE", "c"),
        ("CHECK", None),
        ("CHECK", "x"),
        ("RETR", None),
        ("EXEC", None),
    ]
    run = run_tape(program, budget=12)
    assert run.log == [
        "PLAN: no-op",
        "PLAN: p",
        "RETRIEVE: r",
        "ASSUME: a",
        "EXEC: popped",
        "LEMMA: l",
        "BRANCH",
        "MERGE: p, r, l, branch::b",
        "CITE: c",
        "CHECK: p, r, l, branch::b",
        "CHECK: x",
        "RETRIEVE: ",
        "Budget exceeded",
    ]
    assert (run.status, run.steps, run.depth) == (2, 12, 1)
    assert run.trace == [0, 0, 1, 2, 3, 4, 6, 7, 8, 5, 5, 1, -1]


def test_errors_stop_without_a_log_line_and_keep_the_stack():
    run = run_tape([("RETR", "a"), ("EXEC", None), ("EXEC", None), ("RETR", "b")])
    assert run.log == ["RETRIEVE: a", "EXEC: popped"]
    assert (run.status, run.steps, run.depth, run.trace) == (1, 2, 0, [1, 3, -1, -1])
    run = run_tape([("CHECK", None)])
    assert (run.status, run.steps, run.log) == (1, 0, [])
    run = run_tape([("RETR", "a"), ("LEMMA", "b"), ("BRANCH", "c"), ("CITE", "d")], capacity=2)
    assert (run.status, run.steps, run.stack, run.log) == (
        3,
        2,
        ["a", "b"],
        ["RETRIEVE: a", "LEMMA: b"],
    )
    run = run_tape([("MERGE", None), ("END", None), ("RETR", "x")])
    assert (run.status, run.stack, run.log) == (0, [""], ["MERGE: "])


def test_budget_boundary():
    exact = [("CITE", "x")] * 3
    assert run_tape(exact, budget=3).status == 0
    assert run_tape(exact + [(-1, None)], budget=3).status == 0
    over = run_tape(exact + [("CITE", "y")], budget=3)
    assert (over.status, over.steps, over.log[-1]) == (2, 3, "Budget exceeded")


def test_opcode_names_and_errors():
    assert [opcode_number(n) for n in OPCODES] == list(range(9))
    assert opcode_number("retrieve") == 1 and opcode_number("end") == -1 and opcode_number(7) == 7
    with pytest.raises(ValueError, match="did you mean 'MERGE'"):
        opcode_number("MERGR")
    with pytest.raises(ValueError, match="outside -1..8"):
        opcode_number(9)
    with pytest.raises(ValueError, match="outside -1..8"):
        run_tape([(12, None)])


def test_encode_tape_and_batch_padding():
    vec = _vectors()
    ops, args, has = encode_tape(
        [("PLAN", "alpha"), ("EXEC", None)], vec.__getitem__, DIM, length=4
    )
    assert ops.dtype == torch.int32 and ops.tolist() == [0, 3, -1, -1]
    assert has.tolist() == [True, False, False, False]
    assert torch.equal(args[0], vec["alpha"].float()) and (args[1:] == 0).all()
    with pytest.raises(ValueError, match="more than length=1"):
        encode_tape([("PLAN", "a"), ("PLAN", "b")], vec.__getitem__, DIM, length=1)
    with pytest.raises(ValueError, match="expected dim=3"):
        encode_tape([("PLAN", "a")], lambda s: [1.0, 2.0], DIM)
    ops, args, has = encode_tapes(
        [[("RETR", "beta")], [("CITE", "x"), ("MERGE", None)]], lambda s: [float(len(s))] * DIM, DIM
    )
    assert ops.tolist() == [[1, -1], [8, 7]] and args.shape == (2, 2, DIM)
    assert has.tolist() == [[True, False], [True, False]]


def _random_tape(g: torch.Generator, t_len: int, merge: bool):
    ops = random_program(t_len, g)
    prog = []
    for op in ops:
        if op == 7 and not merge:
            op = 8
        text = (
            None
            if torch.rand((), generator=g) < 0.25
            else WORDS[int(torch.randint(0, 5, (), generator=g))]
        )
        prog.append((op, text))
    return prog


def _string_value(s: str, vec, branch) -> torch.Tensor:
    return vec[s[len("branch::") :]] + branch if s.startswith("branch::") else vec[s]


@pytest.mark.parametrize("seed", range(6))
def test_string_and_tensor_machines_agree_on_random_tapes(seed):
    g = torch.Generator().manual_seed(seed)
    vec = _vectors(seed)
    branch = torch.randn(DIM, generator=g, dtype=torch.float64)
    budget, capacity = [(8, 4), (30, 3), (5, 30), (12, 2), (20, 6), (3, 1)][seed]
    merge = seed % 2 == 0
    programs = [
        _random_tape(g, int(torch.randint(0, 14, (), generator=g)), merge) for _ in range(24)
    ]
    top, depth, status, steps, checks, trace = _tensor_machine(
        programs, vec, branch, budget, capacity, length=14
    )
    for b, prog in enumerate(programs):
        run = run_tape(prog, budget, capacity)
        assert (int(status[b]), int(steps[b]), int(depth[b])) == (
            run.status,
            run.steps,
            run.depth,
        ), prog
        assert trace[b].tolist() == run.trace + [-1] * (14 - len(prog))
        if merge:
            continue  # merged strings do not map back to vectors; values are checked below
        expected_top = (
            _string_value(run.top, vec, branch)
            if run.top is not None
            else torch.zeros(DIM, dtype=torch.float64)
        )
        torch.testing.assert_close(top[b], expected_top)
        for i, c in enumerate(run.checks):
            want = (
                torch.zeros(DIM, dtype=torch.float64)
                if c is None
                else _string_value(c, vec, branch)
            )
            torch.testing.assert_close(checks[b, i], want)


def test_merge_values_and_gradients():
    vec = _vectors(1)
    prog = [
        ("RETR", "alpha"),
        ("LEMMA", None),
        ("BRANCH", "beta"),
        ("MERGE", None),
        ("CHECK", None),
        ("PLAN", "gamma"),
    ]
    run = run_tape(prog)
    assert run.log[3] == "MERGE: alpha, , branch::beta" and run.checks[4] == "alpha, , branch::beta"
    branch = torch.randn(DIM, dtype=torch.float64, requires_grad=True)
    top, depth, _status, steps, checks, _trace = _tensor_machine([prog], vec, branch, 32, 32)
    merged = (vec["alpha"] + 0 + vec["beta"] + branch) / 3
    torch.testing.assert_close(checks[0, 4], merged)
    torch.testing.assert_close(top[0], vec["gamma"])
    assert (int(depth[0]), int(steps[0])) == (run.depth, run.steps) == (1, 6)


def test_tensor_machine_is_differentiable_in_args_and_branch():
    prog = [
        ("RETR", "alpha"),
        ("BRANCH", "beta"),
        ("ASSUME", None),
        ("MERGE", None),
        ("PLAN", "gamma"),
        ("CHECK", None),
        ("CHECK", "delta"),
    ]
    ops, args, has = encode_tapes(
        [prog, prog[1:]], _vectors().__getitem__, DIM, dtype=torch.float64
    )
    args.requires_grad_(True)
    branch = torch.randn(DIM, dtype=torch.float64, requires_grad=True)

    def f(a, br):
        out = REFERENCE["opcode_tape"](
            {"ops": ops, "args": a, "has_arg": has},
            {"branch": br},
            {"budget": 32, "capacity": 4},
            RefContext(),
        )
        return out[0], out[4]

    assert torch.autograd.gradcheck(f, (args, branch))
