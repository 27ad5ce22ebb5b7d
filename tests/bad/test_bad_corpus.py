"""The bad-input corpus: malformed programs beside the diagnostics a user sees for them.

Consumes `tests/bad/NNN_name.spark` (text, or raw bytes for the encoding cases) and produces,
for each, the text the CLI prints on stderr: `SparkError.render({path: source})` with the path
written relative to the repository root (the runner calls `sparkc.cli.main(["check", path,
...])` in-process from the root and captures stderr). That text must equal `NNN_name.expected`;
`pytest --update-goldens` rewrites the expected files (review the diff by eye: each one must be a
message we are happy to show a user).

A first line `# args: -D name=value ...` gives extra command-line options of a case (overrides
are part of what is being checked, e.g. an undefined `-D`).

Inputs too big to commit (a 10 MB file, 5000 nested parentheses) are generated at run time and
checked for a diagnostic (or clean acceptance) within a time bound, not against a golden.
"""

from __future__ import annotations

import io
import os
import shlex
import time
from pathlib import Path

import pytest

from sparkc import cli
from sparkc.diagnostics import SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse_bytes

CORPUS = Path(__file__).resolve().parent
ROOT = CORPUS.parents[1]
CASES = sorted(CORPUS.glob("*.spark"))


def _update(request: pytest.FixtureRequest) -> bool:
    # The `update_goldens` fixture lives in tests/conftest.py; read the option directly so this
    # runner also works where that conftest is absent.
    try:
        return bool(request.getfixturevalue("update_goldens"))
    except pytest.FixtureLookupError:
        return bool(request.config.getoption("--update-goldens", default=False))


def command_line(data: bytes) -> list[str]:
    """The extra command-line options of a case, from its `# args:` first line."""
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.startswith("# args:"):
        return []
    return shlex.split(first[len("# args:"):])


def run_cli(rel: str, options: list[str]) -> tuple[int, str, str]:
    """`sparkc check REL OPTIONS...` in this process, from the repository root."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = cli.main(["check", rel, *options], stdout=out, stderr=err)
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


def diagnose(data: bytes, path: str) -> str | None:
    """Parse and check `data` as file `path`; the rendered diagnostics, or None if accepted."""
    try:
        check(parse_bytes(data, path), {})
    except SparkError as err:
        return err.render({path: data.decode("utf-8", errors="replace")})
    return None


def _assert_wellformed(rendered: str, path: str, source: bytes = b"x") -> None:
    assert "error[E" in rendered, rendered
    assert f"{path}:" in rendered, f"no file:line:col in:\n{rendered}"
    # An empty file has no source line to put a caret under.
    if source.strip():
        assert "^" in rendered, f"no caret line in:\n{rendered}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_program(case: Path, request: pytest.FixtureRequest) -> None:
    data = case.read_bytes()
    rel = case.relative_to(ROOT).as_posix()
    code, stdout, rendered = run_cli(rel, command_line(data))
    assert code == 1, f"exit {code} for {rel}, expected 1 (a user error)\n{stdout}{rendered}"
    assert stdout == ""
    expected = case.with_suffix(".expected")
    if _update(request):
        expected.write_text(rendered, encoding="utf-8")
    assert expected.exists(), f"missing {expected.name}; run pytest --update-goldens"
    assert rendered == expected.read_text(encoding="utf-8")
    _assert_wellformed(rendered, rel, data)


def test_corpus_is_complete() -> None:
    """Every program has a golden and every golden a program; names are NNN_snake_case."""
    stems = {c.stem for c in CASES}
    goldens = {e.stem for e in CORPUS.glob("*.expected")}
    assert stems == goldens
    assert len(stems) >= 45
    numbers = [s.split("_", 1)[0] for s in sorted(stems)]
    assert len(set(numbers)) == len(numbers), "two cases share a number"
    assert all(n.isdigit() and len(n) == 3 for n in numbers)


_HEAD = (
    "model M(vocab = 64, d = 64) {\n"
    "  input tokens: i64[B, N]\n"
    "  x = embed(tokens, vocab=vocab, dim=d)\n"
)


def _timed(data: bytes, path: str) -> tuple[str | None, float]:
    start = time.perf_counter()
    rendered = diagnose(data, path)
    return rendered, time.perf_counter() - start


def test_ten_megabyte_file(tmp_path: Path) -> None:
    # 10 MB of statements that rebind one name: whatever the front end does with so much input
    # (a size limit or a full parse), it must answer with a diagnostic within a few seconds.
    line = b"  h = rmsnorm(x)\n"
    body = line * (10 * 1024 * 1024 // len(line) + 1)
    data = _HEAD.encode() + body + b"  output h\n}\n"
    assert len(data) >= 10 * 1024 * 1024
    path = tmp_path / "huge.spark"
    path.write_bytes(data)
    rendered, seconds = _timed(path.read_bytes(), "huge.spark")
    assert rendered is not None, "a 10 MB program that rebinds 'h' was accepted"
    _assert_wellformed(rendered, "huge.spark")
    assert seconds < 10.0, f"took {seconds:.1f} s"


@pytest.mark.parametrize("closed", [True, False], ids=["balanced", "unbalanced"])
def test_deeply_nested_parentheses(closed: bool) -> None:
    depth = 5000
    expr = "(" * depth + "x" + (")" * depth if closed else ")" * (depth - 1))
    data = (_HEAD + f"  h = {expr}\n  output h\n}}\n").encode()
    rendered, seconds = _timed(data, "nested.spark")
    assert seconds < 10.0, f"took {seconds:.1f} s"
    if not closed:
        assert rendered is not None, "unbalanced parentheses were accepted"
    if rendered is not None:
        # A depth limit is a fine answer for a balanced program too, as long as it is a
        # diagnostic and not a RecursionError.
        _assert_wellformed(rendered, "nested.spark")
