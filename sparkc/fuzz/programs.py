"""Fuzz inputs: seed programs, their tokens, mutations, and grammar-based generation.

Consumes the seed programs (`examples/*.spark`, `tests/bad/*.spark` of a checkout), the grammar's
literal tokens (grammar/spark.lark) and the op table (names, hyperparameters, choices); produces
program bytes from a `random.Random`, so a hypothesis `st.randoms()` drives (and shrinks) every
choice. `mutate(src, rng)` applies 1-3 token- or character-level mutations and returns the new
bytes with the names of the mutations; `generate(rng)` writes a program from the grammar that is
meant to be valid (random blocks, repeats, nested calls, losses), so the checker's deeper rules and
code generation are reached.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Byte-level tokens of the language (comments and whitespace are not tokens).
_TOKEN = re.compile(
    rb"[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+"
    rb'|"[^"\n]*"|//|[-+*/=(){}\[\],:.]'
)
_COMMENT = re.compile(rb"#[^\n]*")
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(rb"[0-9.]")

EDGE_NUMBERS = (
    b"0", b"1", b"2", b"3", b"7", b"-1", b"0.5", b"1.5", b"100000", b"2147483648", b"1e9",
    b"1e309", b"1e-400", b"0e0", b"1_000", b"9" * 40, b"0.0", b"65536", b"4096",
)  # fmt: skip
ODD_TOKENS = (b"@", b";", b"$", b"`", b"\\", b'"', b"'", b"#", b"...", b"0x10", b"[]", b"{}", b"()")
ODD_CHARS = (
    "\x00", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\ufeff", "\u202e",
    "é", "ﬁ", "١", "\U0001f600", "\\", '"', "#", "\n", " ", "(", ")", "{", "}", ",", "=", ":",
)  # fmt: skip


def seed_files(root: Path = ROOT) -> dict[str, bytes]:
    """The seed programs of a checkout: examples and the diagnostic corpus (name → bytes)."""
    paths = sorted((root / "examples").glob("*.spark")) + sorted(
        (root / "tests/bad").glob("*.spark")
    )
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in paths}


def tokens(src: bytes) -> list[tuple[int, int]]:
    """Byte spans of the tokens of `src`, skipping comments."""
    masked = _COMMENT.sub(lambda m: b" " * len(m.group()), src)
    return [m.span() for m in _TOKEN.finditer(masked)]


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[bytes, ...]:
    """The grammar's literal tokens, the op table's names and choices, and odd tokens."""
    from ..frontend.parser import grammar_text
    from ..ir.ops import OPS

    rules = "\n".join(ln.split("#")[0] for ln in grammar_text().splitlines())
    words = set(re.findall(r'"([^"\s]+)"', rules))
    for name, spec in OPS.items():
        words.add(name)
        for h in spec.hypers:
            words.add(h.name)
            words.update(h.choices)
    out = sorted(w.encode() for w in words)
    return tuple(out) + EDGE_NUMBERS + ODD_TOKENS


# ------------------------------------------------------------------------------------------------
# Mutations: (src, token spans, rng) -> bytes


def _pick(rng: random.Random, toks: list[tuple[int, int]]) -> tuple[int, int]:
    return toks[rng.randrange(len(toks))]


def _t_delete(src, toks, rng):
    s, e = _pick(rng, toks)
    return src[:s] + src[e:]


def _t_duplicate(src, toks, rng):
    s, e = _pick(rng, toks)
    return src[:e] + b" " + src[s:e] + src[e:]


def _t_swap(src, toks, rng):
    j = rng.randrange(max(1, len(toks) - 1))
    if j + 1 >= len(toks):
        return src
    (s1, e1), (s2, e2) = toks[j], toks[j + 1]
    return src[:s1] + src[s2:e2] + src[e1:s2] + src[s1:e1] + src[e2:]


def _t_replace(src, toks, rng):
    s, e = _pick(rng, toks)
    return src[:s] + rng.choice(vocabulary()) + src[e:]


def _t_insert(src, toks, rng):
    s, _ = _pick(rng, toks)
    return src[:s] + rng.choice(vocabulary()) + b" " + src[s:]


def _t_rename(src, toks, rng):
    """Replace a name by another name of the same program (an op, a binding, a choice...)."""
    names = [t for t in toks if _NAME.match(src[t[0] : t[1]])]
    if not names:
        return src
    s, e = rng.choice(names)
    os_, oe = rng.choice(names)
    return src[:s] + src[os_:oe] + src[e:]


def _t_renumber(src, toks, rng):
    numbers = [t for t in toks if _NUMBER.match(src[t[0] : t[0] + 1])]
    if not numbers:
        return src
    s, e = rng.choice(numbers)
    return src[:s] + rng.choice(EDGE_NUMBERS) + src[e:]


def _t_move(src, toks, rng):
    s, e = _pick(rng, toks)
    cut = src[:s] + src[e:]
    at = rng.randrange(len(cut) + 1)
    return cut[:at] + b" " + src[s:e] + b" " + cut[at:]


def _c_insert(src, rng):
    at = rng.randrange(len(src) + 1)
    return src[:at] + rng.choice(ODD_CHARS).encode() + src[at:]


def _c_delete(src, rng):
    if not src:
        return src
    at = rng.randrange(len(src))
    return src[:at] + src[at + 1 :]


def _c_byte(src, rng):
    if not src:
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(src))
    return src[:at] + bytes([rng.randrange(256)]) + src[at + 1 :]


def _c_truncate(src, rng):
    return src[: rng.randrange(len(src) + 1)]


def _c_lines(src, rng):
    lines = src.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    what = rng.randrange(3)
    if what == 0:
        del lines[i]
    elif what == 1:
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


TOKEN_MUTATIONS = {
    "delete": _t_delete,
    "duplicate": _t_duplicate,
    "swap": _t_swap,
    "replace": _t_replace,
    "insert": _t_insert,
    "rename": _t_rename,
    "renumber": _t_renumber,
    "move": _t_move,
}
CHAR_MUTATIONS = {
    "char-insert": _c_insert,
    "char-delete": _c_delete,
    "byte": _c_byte,
    "truncate": _c_truncate,
    "lines": _c_lines,
}


def mutate(src: bytes, rng: random.Random, level: str = "token") -> tuple[bytes, list[str]]:
    """1-3 mutations of one level ('token' or 'char'); the result and the mutations' names."""
    applied = []
    for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
        if level == "token":
            toks = tokens(src)
            if not toks:
                break
            name = rng.choice(sorted(TOKEN_MUTATIONS))
            src = TOKEN_MUTATIONS[name](src, toks, rng)
        else:
            name = rng.choice(sorted(CHAR_MUTATIONS))
            src = CHAR_MUTATIONS[name](src, rng)
        applied.append(name)
    return src, applied


# ------------------------------------------------------------------------------------------------
# Grammar-based generation of (meant to be) valid programs


def _expr(rng: random.Random, values: list[str], blocks: list[str], depth: int = 0) -> str:
    a = rng.choice(values)
    if depth < 2 and rng.random() < 0.25:
        a = _expr(rng, values, blocks, depth + 1)
    kind = rng.randrange(14)
    if kind == 0:
        return f"{rng.choice(['relu', 'gelu', 'silu', 'sigmoid', 'tanh', 'softmax'])}({a})"
    if kind == 1:
        norm = rng.choice(["rmsnorm", "layernorm"])
        return f"{norm}({a}" + (
            f", eps={rng.choice(['1e-5', '0.001'])})" if rng.random() < 0.3 else ")"
        )
    if kind == 2:
        return f"{a} {rng.choice('+-*')} {rng.choice(values)}"
    if kind == 3:
        return f"{a} {rng.choice(['*', '/', '+', '-'])} {rng.choice(['0.5', '2', '1.5', '3.0'])}"
    if kind == 4:
        return f"linear({a}, out=d, bias={rng.choice(['true', 'false'])})"
    if kind == 5:
        act = rng.choice(["relu", "gelu", "silu"])
        return f"{a} + mlp({a}, hidden={rng.choice(['2 * d', 'hidden', '16'])}, act={act})"
    if kind == 6:
        return f"swiglu({a}, hidden={rng.choice(['2 * d', 'hidden'])})"
    if kind == 7:
        return f"conv1d({a}, kernel={rng.randrange(1, 5)}, causal={rng.choice(['true', 'false'])})"
    if kind == 8:
        rope = rng.choice(["true", "false"])
        return f"{a} + attention(rmsnorm({a}), heads=heads, causal=true, rope={rope})"
    if kind == 9:
        return f"fk_attention({a}, heads=heads, hops={rng.randrange(1, 4)}, beta=0.5)"
    if kind == 10:
        return f"trajectory({a}, window={rng.randrange(2, 7)})"
    if kind == 11:
        return f"splat_attention({a}, splats={rng.choice([2, 4])}, heads=heads)"
    if kind == 12 and blocks:
        b = rng.choice(blocks)
        rep = f"repeat({rng.randrange(1, 3)}) " if rng.random() < 0.4 else ""
        return f"{rep}{b}({a}, d=d, heads=heads)"
    return f"demopack_linear({a}, out=d, codewords=16, per_row=2)"


def _body(rng: random.Random, values: list[str], blocks: list[str], n: int) -> list[str]:
    lines = []
    for i in range(n):
        lines.append(f"  v{i} = {_expr(rng, values, blocks)}")
        values.append(f"v{i}")
    return lines


def generate(rng: random.Random) -> bytes:
    """A random program of blocks and a model over float[B, N, d] (or tokens), mostly valid."""
    d = rng.choice([8, 16, 32])
    heads = rng.choice([1, 2, 4])
    out: list[str] = []
    blocks: list[str] = []
    for b in range(rng.randrange(0, 3)):
        name = f"Layer{b}"
        out += [f"block {name}(d, heads, hidden = 2 * d) {{", "  input x: float[B, N, d]"]
        values = ["x"]
        out += _body(rng, values, blocks, rng.randrange(1, 4))
        out += [f"  return {values[-1]}", "}", ""]
        blocks.append(name)
    tokens_in = rng.random() < 0.4
    hyper = f"d = {d}, heads = {heads}, hidden = {rng.choice([2, 4])} * d"
    if tokens_in:
        out += [f"model M({hyper}, vocab = 32, max_len = 64) {{", "  input tokens: i64[B, N]"]
        out += ["  input targets: i64[B, N]"] if rng.random() < 0.5 else []
        out += ["  x = pos_embed(embed(tokens, vocab=vocab, dim=d), max_len=max_len)"]
    else:
        out += [f"model M({hyper}) {{", "  input x: float[B, N, d]"]
    values = ["x"]
    out += _body(rng, values, blocks, rng.randrange(1, 6))
    if tokens_in and "  input targets: i64[B, N]" in out:
        out += [f"  logits = linear(rmsnorm({values[-1]}), out=vocab)", "  output logits"]
        out += ["  loss ce = cross_entropy(logits, targets)"]
    else:
        out += [f"  output {values[-1]}"]
    out += ["}", ""]
    return "\n".join(out).encode()
