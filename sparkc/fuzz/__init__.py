"""A fuzz campaign over the whole compiler: `python -m sparkc.fuzz --programs N --seconds S`.

Consumes the seed programs of a checkout (examples/*.spark, tests/bad/*.spark) and a seed;
produces a `Report` (a table of outcome kinds by input source, findings with reduced
reproducers; `--json PATH` writes it). Inputs, in turn: token-level mutants of the seeds,
character-level mutants, programs generated from the grammar (as they are and mutated). Each is
checked in-process by the CLI under a per-program time limit; every `compile_every`-th accepted
one is also compiled and imported. Then the injection attempts (hostile file names and program
texts, `attacks.py`) and the determinism check across two processes for a sample of accepted
programs. `tests/property/test_fuzz.py` runs a short budget in the normal suite and a long one
under `pytest -m fuzz`.
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .attacks import determinism, injection_cases, run_injection
from .campaign import GOOD, Outcome, Report, check_program, compile_and_import, reduce
from .programs import generate, mutate, seed_files

__all__ = ["GOOD", "Outcome", "Report", "check_program", "generate", "mutate", "run_campaign"]

SOURCES = ("token", "char", "generated", "gen+token")


def next_program(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """(source kind, program) for the next step of the campaign."""
    source = SOURCES[rng.randrange(len(SOURCES))] if seeds else "generated"
    if source == "generated":
        return source, generate(rng)
    if source == "gen+token":
        return source, mutate(generate(rng), rng, "token")[0]
    base = seeds[rng.choice(sorted(seeds))]
    return source, mutate(base, rng, source)[0]


def _reduce_findings(report: Report, scratch: Path, limit_s: float, budget_s: float) -> None:
    path = scratch / "reduce.spark"
    for f in report.bad():
        if f.source in ("injection", "determinism", "compile") or f.reduced is not None:
            continue

        def same(data: bytes, sig: str = f.signature) -> bool:
            return check_program(data, path, limit_s).signature == sig

        f.reduced = reduce(f.example, same, budget_s)


@contextmanager
def fast_cli() -> Iterator[None]:
    """Speed-ups of the harness that change no outcome: the CLI's argparse parser built once
    (it is rebuilt per call otherwise, ~3 ms), and lark's terminal-collision check skipped (with
    `interegular` installed, a dev dependency, every lexer lark builds runs it: ~0.2 s per
    syntax error, because the syntax-error explainer lexes with a fresh lexer each time)."""
    import lark.lexer

    from .. import cli

    build, check = cli.build_parser, lark.lexer.has_interegular
    cli.build_parser = functools.lru_cache(maxsize=1)(build)  # type: ignore[method-assign]
    lark.lexer.has_interegular = False
    try:
        yield
    finally:
        cli.build_parser, lark.lexer.has_interegular = build, check


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def run_campaign(
    programs: int = 0,
    seconds: float = 10.0,
    seed: int = 0,
    limit_s: float = 5.0,
    compile_every: int = 200,
    injections: int = -1,
    determinism_sample: int = 8,
    reduce_s: float = 30.0,
    log: Callable[[str], None] = lambda s: None,
) -> Report:
    """Run until `programs` check-level programs (0: no count limit) or `seconds` have passed,
    then the injections (-1: all of them) and the determinism sample; reduce the findings."""
    rng = random.Random(seed)
    seeds = seed_files()
    report = Report()
    accepted: list[tuple[str, str]] = []
    with fast_cli(), tempfile.TemporaryDirectory(prefix="sparkc-fuzz-", dir=_scratch_root()) as tmp:
        scratch = Path(tmp)
        path = scratch / "fuzz.spark"
        start = time.monotonic()
        last_log = start
        next_compile = compile_every
        while (not programs or report.programs < programs) and time.monotonic() - start < seconds:
            source, data = next_program(rng, seeds)
            outcome = check_program(data, path, limit_s)
            report.programs += 1
            report.add(source, outcome, data, path.name)
            if outcome.kind == "success":
                if len(accepted) < determinism_sample and data.isascii():
                    accepted.append(("fuzz.spark", data.decode()))
                if compile_every and report.programs >= next_compile:
                    next_compile = report.programs + compile_every
                    result, _ = compile_and_import(data, path, scratch / "out", 10 * limit_s)
                    report.add("compile", result, data, path.name)
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log(f"{report.programs} programs, {len(report.bad())} findings")
        report.seconds = time.monotonic() - start
        cases = list(injection_cases())
        if injections >= 0:
            cases = random.Random(seed).sample(cases, min(injections, len(cases)))
        for i, (label, name, text) in enumerate(cases):
            outcome = run_injection(name, text, scratch / f"inject{i}")
            report.add("injection", outcome, text.encode(), name)
        if determinism_sample:
            for name, text in seeds.items():
                if name.startswith("examples/") and len(accepted) < 2 * determinism_sample:
                    accepted.append((Path(name).name, text.decode()))
            for (name, text), outcome in zip(accepted, determinism(accepted)):
                report.add("determinism", outcome, text.encode(), name)
        report.notes.append(
            f"{len(cases)} injection attempts; determinism across two processes for "
            f"{len(accepted) if determinism_sample else 0} programs"
        )
        _reduce_findings(report, scratch, limit_s, reduce_s)
    return report
