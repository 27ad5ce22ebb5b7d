"""The fuzz target (sparkc/fuzz): hypothesis-driven mutants and generated programs give a located
diagnostic with help or compile; hostile texts and file names never run; generation is the same
in two processes; and the classifier itself sees hangs, escaped exceptions and internal errors.

The normal suite runs a short budget (a few seconds). `pytest -m fuzz` runs the campaign for
SPARKC_FUZZ_SECONDS (default 300) and many more hypothesis examples (SPARKC_FUZZ_EXAMPLES);
`python -m sparkc.fuzz --seconds S --json PATH` is the same campaign from the command line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkc import fuzz
from sparkc.fuzz import attacks, campaign
from sparkc.fuzz.programs import generate, mutate, seed_files

SEEDS = seed_files()
LONG = int(os.environ.get("SPARKC_FUZZ_EXAMPLES", "3000"))
_settings = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzz.spark"


def _mutant_is_handled(rng, seed: str, level: str, path: Path) -> None:
    data, applied = mutate(SEEDS[seed], rng, level)
    with fuzz.fast_cli():
        outcome = fuzz.check_program(data, path)
    assert outcome.kind in fuzz.GOOD, (applied, outcome.detail, data.decode(errors="replace"))


def test_the_seeds_are_there() -> None:
    names = sorted(SEEDS)
    assert sum(n.startswith("examples/") for n in names) >= 5
    assert sum(n.startswith("bad/") for n in names) >= 50


@settings(max_examples=60, derandomize=True, **_settings)
@given(
    rng=st.randoms(use_true_random=False),
    seed=st.sampled_from(sorted(SEEDS)),
    level=st.sampled_from(["token", "char"]),
)
def test_mutants_get_a_located_diagnostic_or_compile(rng, seed, level, scratch) -> None:
    _mutant_is_handled(rng, seed, level, scratch)


@settings(max_examples=25, derandomize=True, **_settings)
@given(rng=st.randoms(use_true_random=False))
def test_generated_programs_are_valid(rng, scratch) -> None:
    data = generate(rng)
    with fuzz.fast_cli():
        outcome = fuzz.check_program(data, scratch)
    # The generator means to write valid programs; the one known way it misses is a
    # non-causal conv1d with an even kernel (E0304), which is still a proper diagnostic.
    assert outcome.kind == "success" or outcome.detail == "E0304", (outcome, data.decode())


def test_a_short_campaign_finds_nothing() -> None:
    report = fuzz.run_campaign(
        programs=300, seconds=3, seed=1, compile_every=60, injections=0, determinism_sample=0
    )
    assert report.programs >= 50 and report.counts["diagnostic"] and report.counts["success"]
    assert report.counts["success"].get("compile"), "no compiled sample"
    assert not report.bad(), report.table() + "\n" + repr([f.signature for f in report.bad()])


def test_hostile_program_texts_do_not_run(tmp_path: Path) -> None:
    cases = [c for c in attacks.injection_cases() if c[0].startswith("text ")]
    assert len(cases) >= 50
    cases = cases[::3]  # all of them in the campaign (`-m fuzz`)
    with fuzz.fast_cli():
        outcomes = [
            attacks.run_injection(n, t, tmp_path / str(i)) for i, (_, n, t) in enumerate(cases)
        ]
    bad = [(c[0], o.kind, o.detail) for c, o in zip(cases, outcomes) if o.kind not in fuzz.GOOD]
    assert not bad
    assert sum(o.kind == "success" for o in outcomes) >= 5  # the payloads reached code generation


def test_hostile_file_names_do_not_reach_generated_code(tmp_path: Path) -> None:
    cases = [c for c in attacks.injection_cases() if c[0].startswith("name ")]
    assert len(cases) >= 20
    with fuzz.fast_cli():
        outcomes = [
            attacks.run_injection(n, t, tmp_path / str(i)) for i, (_, n, t) in enumerate(cases)
        ]
    bad = [(c[1], o.kind, o.detail) for c, o in zip(cases, outcomes) if o.kind not in fuzz.GOOD]
    assert not bad, bad


def test_generation_is_the_same_in_two_processes() -> None:
    programs = [(Path(n).name, d.decode()) for n, d in SEEDS.items() if "tiny_gpt" in n]
    programs.append(("gen.spark", generate(__import__("random").Random(3)).decode()))
    outcomes = attacks.determinism(programs)
    assert [o.kind for o in outcomes] == ["success", "success"], outcomes


# ------------------------------------------------------------------------------------------------
# The classifier can see each kind of failure


def test_the_classifier_sees_every_failure_kind(scratch: Path, monkeypatch) -> None:
    from sparkc import cli

    def hang(argv, stdout=None, stderr=None):  # busy: the CPU-time limit
        while True:
            pass

    def wait(argv, stdout=None, stderr=None):  # asleep: the wall-clock limit
        while True:
            time.sleep(0.01)

    def escape(argv, stdout=None, stderr=None):
        raise SystemExit("boom")

    def internal(argv, stdout=None, stderr=None):
        stderr.write("sparkc: internal compiler error: KeyError: 'x'\n")
        return 3

    def unhelpful(argv, stdout=None, stderr=None):
        stderr.write(f"{argv[1]}:1:1: error[E0101]: bad\n  |\n1 | model\n  | ^ here\n")
        return 1

    def unlocated(argv, stdout=None, stderr=None):
        stderr.write("error[E0101]: bad\n  |\n  = help: fix it\n")
        return 1

    expected = {hang: "hang", wait: "hang", escape: "traceback", internal: "internal"}
    expected[unhelpful] = "incomplete"
    expected[unlocated] = "incomplete"
    for fake, kind in expected.items():
        monkeypatch.setattr(cli, "main", fake)
        assert fuzz.check_program(b"model M() {}\n", scratch, limit_s=0.2).kind == kind, kind


def test_reduce_keeps_the_signature() -> None:
    data = b"model M(d = 8) {\n  input x: float[B, N, d]\n  y = relu(x) @ 3\n  output y\n}\n"
    small = campaign.reduce(data, lambda d: b"@" in d and b"relu" in d, budget_s=5)
    assert small == b"relu@"


@pytest.mark.fuzz
def test_fuzz_campaign() -> None:
    seconds = float(os.environ.get("SPARKC_FUZZ_SECONDS", "300"))
    report = fuzz.run_campaign(seconds=seconds, seed=int(os.environ.get("SPARKC_FUZZ_SEED", "0")))
    print(report.table())
    if os.environ.get("SPARKC_FUZZ_JSON"):
        import json

        Path(os.environ["SPARKC_FUZZ_JSON"]).write_text(json.dumps(report.to_json(), indent=1))
    assert not report.bad(), [f.signature for f in report.bad()]


@pytest.mark.fuzz
@settings(max_examples=LONG, **_settings)
@given(
    rng=st.randoms(use_true_random=False),
    seed=st.sampled_from(sorted(SEEDS)),
    level=st.sampled_from(["token", "char"]),
)
def test_many_mutants_get_a_located_diagnostic_or_compile(rng, seed, level, scratch) -> None:
    _mutant_is_handled(rng, seed, level, scratch)
