"""Mutation fuzzing of the front end: broken programs give a diagnostic, never a crash.

Consumes the example programs (`examples/*.spark`), mutates them at the token or byte level
(delete a token, duplicate one, swap two neighbours, insert random bytes, truncate; and,
syntax-preserving, replace a name by another of the program or a number by an edge value) and runs the
result through `parse_bytes` + `check` (+ `lower` when the program is accepted). Each stage must
either succeed or raise `SparkError` whose rendering carries an `error[E....]` code; any other
exception (including `CompilerBug`) fails the test. A second test feeds raw random bytes.

Hypothesis runs derandomized with a bounded number of examples, so CI is deterministic and fast.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkc.diagnostics import SparkError
from sparkc.frontend.check import check
from sparkc.frontend.parser import parse_bytes
from sparkc.lower import lower

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.spark"))
SOURCES = {p.name: p.read_bytes() for p in EXAMPLES}

# Tokens of the language at the byte level (comments and whitespace are not tokens): good enough
# to cut programs at token boundaries, which is where mutations produce interesting errors.
_TOKEN = re.compile(
    rb"[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+"
    rb'|"[^"\n]*"|//|[-+*/=(){}\[\],:.]'
)
_COMMENT = re.compile(rb"#[^\n]*")


def tokens(src: bytes) -> list[tuple[int, int]]:
    """Byte spans of the tokens of `src`, skipping comments."""
    spans: list[tuple[int, int]] = []
    masked = _COMMENT.sub(lambda m: b" " * len(m.group()), src)
    for m in _TOKEN.finditer(masked):
        spans.append(m.span())
    return spans


def _delete(src: bytes, toks: list[tuple[int, int]], i: int, _: bytes) -> bytes:
    s, e = toks[i % len(toks)]
    return src[:s] + src[e:]


def _duplicate(src: bytes, toks: list[tuple[int, int]], i: int, _: bytes) -> bytes:
    s, e = toks[i % len(toks)]
    return src[:e] + b" " + src[s:e] + src[e:]


def _swap(src: bytes, toks: list[tuple[int, int]], i: int, _: bytes) -> bytes:
    j = i % (len(toks) - 1)
    (s1, e1), (s2, e2) = toks[j], toks[j + 1]
    return src[:s1] + src[s2:e2] + src[e1:s2] + src[s1:e1] + src[e2:]


def _insert(src: bytes, toks: list[tuple[int, int]], i: int, junk: bytes) -> bytes:
    at = i % (len(src) + 1)
    return src[:at] + junk + src[at:]


def _truncate(src: bytes, toks: list[tuple[int, int]], i: int, _: bytes) -> bytes:
    return src[: i % (len(src) + 1)]


# Syntax-preserving mutations reach the checker's deeper rules (shapes, ranges, scoping).
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(rb"[0-9.]")
_ODD_NUMBERS = (b"0", b"1", b"2", b"3", b"7", b"0.5", b"1.5", b"100000", b"2147483648", b"1e9")


def _rename(src: bytes, toks: list[tuple[int, int]], i: int, junk: bytes) -> bytes:
    """Replace one name by another name of the same program (an op, a binding, a choice...)."""
    names = [t for t in toks if _NAME.match(src[t[0] : t[1]])]
    s, e = names[i % len(names)]
    other_s, other_e = names[(i // len(names) + junk[0]) % len(names)]
    return src[:s] + src[other_s:other_e] + src[e:]


def _renumber(src: bytes, toks: list[tuple[int, int]], i: int, junk: bytes) -> bytes:
    """Replace one number by an edge value (zero, odd, fractional, huge)."""
    numbers = [t for t in toks if _NUMBER.match(src[t[0] : t[0] + 1])]
    s, e = numbers[i % len(numbers)]
    return src[:s] + _ODD_NUMBERS[junk[0] % len(_ODD_NUMBERS)] + src[e:]


MUTATIONS = {
    "delete": _delete,
    "duplicate": _duplicate,
    "swap": _swap,
    "insert": _insert,
    "truncate": _truncate,
    "rename": _rename,
    "renumber": _renumber,
}


def compile_front(data: bytes, path: str) -> str | None:
    """Run parse, check and lower; the rendered diagnostic on a user error, None on success.

    Any exception other than SparkError propagates and fails the test."""
    try:
        module = parse_bytes(data, path)
        program = check(module, {})
        lower(program)
    except SparkError as err:
        rendered = err.render({path: data.decode("utf-8", errors="replace")})
        assert "error[E" in rendered, rendered
        return rendered
    return None


def test_examples_compile_unmutated() -> None:
    # The mutation test is only meaningful if the originals are accepted.
    assert len(EXAMPLES) >= 5
    for name, data in SOURCES.items():
        assert compile_front(data, name) is None, name


@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    example=st.sampled_from(sorted(SOURCES)),
    mutation=st.sampled_from(sorted(MUTATIONS)),
    index=st.integers(min_value=0, max_value=1 << 16),
    junk=st.binary(min_size=1, max_size=6),
)
def test_mutated_example_gives_diagnostic_or_compiles(
    example: str, mutation: str, index: int, junk: bytes
) -> None:
    src = SOURCES[example]
    mutated = MUTATIONS[mutation](src, tokens(src), index, junk)
    compile_front(mutated, example)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.binary(max_size=256))
def test_random_bytes_give_diagnostic_or_parse(data: bytes) -> None:
    try:
        parse_bytes(data, "random.spark")
    except SparkError as err:
        assert "error[E" in err.render({"random.spark": data.decode("utf-8", errors="replace")})
