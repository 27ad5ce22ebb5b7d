"""The bad-input corpus: malformed programs beside the diagnostics a user sees for them.

Consumes `tests/bad/NNN_name.spark` (text, or raw bytes for the encoding cases) and produces,
for each, the text the CLI prints on stderr: `SparkError.render({path: source})` with the path
written relative to the repository root. That text must equal `NNN_name.expected`;
`pytest --update-goldens` rewrites the expected files (review the diff by eye: each one must be a
message we are happy to show a user).

A first line `# args: -D name=value ... [--model NAME]` gives the command-line options of a case
(overrides are part of what is being checked, e.g. an undefined `-D`).

Inputs too big to commit (a 10 MB file, 5000 nested parentheses) are generated at run time and
checked for a diagnostic (or clean acceptance) within a time bound, not against a golden.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

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


def command_line(data: bytes) -> tuple[dict[str, str], str | None]:
    """The `-D` overrides and `--model` of a case, from its `# args:` first line."""
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.startswith("# args:"):
        return {}, None
    words = shlex.split(first[len("# args:"):])
    overrides: dict[str, str] = {}
    model = None
    it = iter(words)
    for w in it:
        if w == "-D":
            key, _, value = next(it).partition("=")
            overrides[key] = value
        elif w == "--model":
            model = next(it)
        else:
            raise AssertionError(f"unsupported option in '# args:' line: {w}")
    return overrides, model


def diagnose(data: bytes, path: str, overrides: dict[str, str] | None = None,
             model: str | None = None) -> str | None:
    """Parse and check `data` as file `path`; the rendered diagnostics, or None if accepted."""
    try:
        module = parse_bytes(data, path)
        check(module, overrides or {}, model=model)
    except SparkError as err:
        return err.render({path: data.decode("utf-8", errors="replace")})
    return None


def _assert_wellformed(rendered: str, path: str) -> None:
    assert "error[E" in rendered, rendered
    assert f"{path}:" in rendered, f"no file:line:col in:\n{rendered}"
    assert "^" in rendered, f"no caret line in:\n{rendered}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_program(case: Path, request: pytest.FixtureRequest) -> None:
    data = case.read_bytes()
    rel = case.relative_to(ROOT).as_posix()
    overrides, model = command_line(data)
    rendered = diagnose(data, rel, overrides, model)
    assert rendered is not None, f"{rel} was accepted, but it is a bad program"
    rendered += "\n"
    expected = case.with_suffix(".expected")
    if _update(request):
        expected.write_text(rendered, encoding="utf-8")
    assert expected.exists(), f"missing {expected.name}; run pytest --update-goldens"
    assert rendered == expected.read_text(encoding="utf-8")
    _assert_wellformed(rendered, rel)


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
