"""Hostile file names and program text reach generated code only as inert literals (issue 15.1).

Each case compiles a small program under a hostile file name (PEP 263 encoding declarations,
quotes that end a docstring, newlines, backslash escapes, Jinja syntax, line/paragraph
separators, bidi controls, other control characters, very long and non-ASCII names), with a
payload that would create a marker file if it ever ran as code. The packages are imported and
run in a fresh interpreter (plain import, `sparkc.load`, and a hyperparameter variant): no
marker may appear, every model must work, and `SOURCE_NAME`/`SOURCE` must hold the exact text.
Every generated file is ASCII and starts with the same two fixed lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparkc import api
from sparkc.codegen.names import header_lines

PROGRAM = """# {comment}
model M(d = 8, note = "{note}") {{
  input x: float[B, N, d]
  output y = rmsnorm(x)
}}
"""


def _touch(marker: str) -> str:
    return f"import pathlib; pathlib.Path('{marker}').touch()"


def _utf7(text: str) -> str:
    """`text` as one UTF-7 shifted sequence (every character base64-encoded, newlines too):
    plain ASCII to a UTF-8 reader, code to a reader that honours `coding: utf-7`."""
    import base64

    return "+" + base64.b64encode(text.encode("utf-16-be")).decode().rstrip("=") + "-"


def _cases() -> list[tuple[str, str, str]]:
    """(file name, comment, string hyperparameter) per case; `{P}` is that case's payload."""
    return [
        # A PEP 263 declaration in the name, a UTF-7 encoded payload in the program.
        ("x -*- coding: utf-7 -*-.spark", "{utf7_0}", "n"),
        ("x -*- coding: utf-7 -*-.spark", "{utf7_1}", "n"),
        ("coding=latin-1 {P}.spark", "plain", "n"),
        ("# vim: set fileencoding=utf-16 :.spark", "plain", "n"),
        # Breaking out of a comment, a docstring or a string literal.
        ("x\n{P}\n#.spark", '"""{P}', "n"),
        ("x\r{P}\r#.spark", "\r{P}\r", "\r{P}\r"),
        ('x"""\n{P}\n"""x.spark', '"""); {P}; ("""', "'''; {P}; '''"),
        ("x'''\n{P}\n'''x.spark", "'''{P}", "'); {P}; ('"),
        ("x\\\n{P}.spark", "\\", "n"),
        # Backslash escapes (were an internal error: \N, \x, \u12 in a non-raw literal).
        ("a\\x.spark", "\\N{P}", "n"),
        ("a\\N.spark", "\\u12 \\x", "n"),
        ("a\\u12\\U0001.spark", "\\", "n"),
        # Jinja syntax is data, never re-rendered.
        ("{{ 7 * 7 }}{% raw %}.spark", "{{ {P} }} {% include 'x' %}", "{{ x }}{% if 1 %}"),
        ("{% if true %}{P}{% endif %}{# c #}.spark", "{% endraw %}", "{# x"),
        # Separators Python or editors may treat as line ends, bidi controls, other controls.
        ("a\u2028{P}\u2029.spark", "\u2028{P}\u2029\x85", "\u2028{P}"),
        ("a\u202e{P}\u2066b\u2069.spark", "\u202e{P}\u202c", "\u202e{P}"),
        ("a\x0b\x0c\x1b\x7f\x01b.spark", "\x0c{P}", "\x0b\x1b{P}"),
        # Long, non-ASCII and byte-order-mark names.
        ("n" * 3000 + ".spark", "x" * 3000, "y" * 3000),
        ("\ufeffмодель_名é\U0001f600.spark", "é名", "名"),
        # A file name that is not valid UTF-8 on disk (os.fsdecode's surrogate escapes).
        ("a\udcff\udc80{P}.spark", "plain", "n"),
    ]


def _materialise(tmp: Path) -> list[dict]:
    cases = []
    for i, (name, comment, note) in enumerate(_cases()):
        payload = _touch(f"marker_{i}")
        utf7 = {
            f"utf7_{k}": _utf7(t.replace("{P}", payload))
            for k, t in enumerate(('"\n{P}\n"', "'\n{P}\n'"))
        }
        comment = comment.format(**utf7) if comment.startswith("{utf7") else comment
        subst = {"comment": comment.replace("{P}", payload), "note": note.replace("{P}", payload)}
        text = PROGRAM.format(**subst)
        cases.append({"name": name.replace("{P}", payload), "text": text, "pkg": f"pkg_{i}"})
    return cases


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    cases = _materialise(tmp)
    for case in cases:
        files = api.compile_files(case["text"], case["name"])
        case["files"] = files
        pkg = tmp / case["pkg"]
        pkg.mkdir()
        for rel, text in files.items():
            (pkg / rel).write_text(text, encoding="ascii")
    return tmp, cases


def test_generated_files_start_with_fixed_lines_and_are_ascii(compiled):
    from sparkc import __version__

    head = header_lines(__version__)
    assert head.splitlines()[0] == "# -*- coding: utf-8 -*-"
    for case in compiled[1]:
        for rel, text in case["files"].items():
            assert text.startswith(head), (case["name"], rel)
            assert text.isascii(), (case["name"], rel)
            compile(text, rel, "exec")  # valid Python


RUNNER = r"""
import importlib, json, os, sys, torch
import sparkc
cases = json.load(open("cases.json"))
for case in cases:
    m = importlib.import_module(case["pkg"])
    assert m.SOURCE_NAME == case["name"].rsplit("/", 1)[-1], (m.SOURCE_NAME, case["name"])
    assert m.SOURCE == case["text"]
    y = m.Model()(torch.randn(2, 3, 8)).y
    assert y.shape == (2, 3, 8) and bool(torch.isfinite(y).all())
# The compile cache and a hyperparameter variant go through the file name again.
first = cases[0]
with open("utf7.spark", "w") as f:
    f.write(first["text"])
loaded = sparkc.load("utf7.spark")
assert loaded.Model()(torch.randn(1, 2, 8)).y.shape == (1, 2, 8)
mod = importlib.import_module(first["pkg"])
variant = mod.Model(d=16)
assert variant(torch.randn(1, 2, 16)).y.shape == (1, 2, 16)
tricky = importlib.import_module(cases[6]["pkg"])
assert tricky.Model(d=4)(torch.randn(1, 2, 4)).y.shape == (1, 2, 4)
print("ok", len(cases))
"""


def test_hostile_names_import_and_run_without_running_payloads(compiled):
    tmp, cases = compiled
    (tmp / "cases.json").write_text(
        json.dumps([{k: c[k] for k in ("name", "text", "pkg")} for c in cases]), encoding="ascii"
    )
    env = {"PATH": "/usr/bin:/bin", "SPARKC_CACHE_DIR": str(tmp / "cache"), "HOME": str(tmp)}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        check=False,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", str(len(cases))]
    markers = sorted(p.name for p in tmp.rglob("marker_*"))
    assert markers == [], markers


def test_compile_to_a_hostile_file_name(tmp_path):
    """The CLI path: a real file whose name declares an encoding, written with compile_to."""
    name = "x -*- coding: utf-7 -*-.spark"
    src = tmp_path / name
    src.write_text(PROGRAM.format(comment="c", note="n"))
    pkg = api.compile_to(tmp_path / "build", src)
    assert pkg.name == "x_____coding__utf_7____"
    text = (pkg / "__init__.py").read_text()
    assert text.splitlines()[0] == "# -*- coding: utf-8 -*-"
    assert "SOURCE_NAME = " + repr(name).replace("'", '"') in text


@pytest.mark.parametrize(
    "text, code",
    [
        (
            "model M(d = 8) {\n  input x\u00e9: float[B, N, d]\n  output y = rmsnorm(x)\n}\n",
            "E0103",
        ),
        (
            "model M\u2028(d = 8) {\n  input x: float[B, N, d]\n  output y = rmsnorm(x)\n}\n",
            "E0103",
        ),
        ("model \u041c(d = 8) {\n  input x: float[B, N, d]\n  output y = rmsnorm(x)\n}\n", "E0103"),
    ],
)
def test_non_ascii_identifiers_are_diagnostics(text, code):
    """Names are ASCII identifiers: anything else is a located syntax error, never a name that
    code generation would have to escape."""
    from sparkc.diagnostics import SparkError

    with pytest.raises(SparkError) as err:
        api.compile_files(text, "names.spark")
    assert err.value.diagnostics[0].code == code
