"""Injection attempts and the cross-process determinism check of the fuzz campaign.

Consumes a scratch folder; produces `Outcome`s. `injection_cases()` pairs hostile file names with
hostile program texts whose payload, if it ever ran as Python (at compile time or when the
generated package is imported), would create the file `PWNED` in the current folder;
`run_injection` compiles and imports each one (its `__init__` and `kernels` modules) there and
reports `injected` when the marker appears, `header-text` when program-derived text stands on
line 1 or 2 of a generated file, and `import-error` when a package does not import. `digests(programs)` is the sha256
of every generated file; `determinism(programs)` compares this process's digests with those of a
second interpreter (another PYTHONHASHSEED) running `python -m sparkc.fuzz --digests`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .campaign import Outcome, compile_and_import

MARKER = "PWNED"
_PAYLOADS = (
    "__import__('os').mknod('PWNED')",
    '__import__("os").mknod("PWNED")',
    "open('PWNED','w')",
)
_BASE = "model M(d = 8) {{\n  input x: float[B, N, d]\n  output y = {expr}\n}}\n"


def _texts(p: str) -> list[tuple[str, str]]:
    """(label, program text) with the payload `p` in every place a program can hold text."""
    ok = _BASE.format(expr="relu(x)")
    out = [("plain", ok)]
    for close in ('"""', "'''", "'", '"', ")", "]", "}"):
        out.append((f"comment {close}", f"# {close}; {p}; {close}\n" + ok))
    for sep in ("\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"):
        out.append((f"comment-break {sep!r}", f"# a{sep}{p}\n" + ok))
        out.append((f"trailing-comment {sep!r}", ok.replace("relu(x)", f"relu(x)  # b{sep}{p}")))
    out += [
        ("coding", f"# -*- coding: utf-7 -*-\n# +AAo-{p}\n" + ok),
        ("coding2", f"# vim: set fileencoding=rot13 :\n# {p}\n" + ok),
        ("string", _BASE.format(expr=f"mlp(x, hidden=8, act=\"gelu''' + {p} + '''\")")),
        ("string2", _BASE.format(expr=f"mlp(x, hidden=8, act=\"gelu') or {p} or ('\")")),
        ("float-inf", _BASE.format(expr="rmsnorm(x, eps=1e309)")),
        ("float-zero", _BASE.format(expr="rmsnorm(x, eps=1e-400)")),
        ("huge-int", _BASE.format(expr="mlp(x, hidden=" + "9" * 30 + ")")),
    ]
    for name in ("self", "torch", "F", "_launch", "Model", "__class__", "forward", "kernels"):
        out.append((f"input {name}", ok.replace("x", name)))
        out.append(
            (
                f"binding {name}",
                ok.replace("output y = relu(x)", f"{name} = relu(x)\n  output {name}"),
            )
        )
    for name in ("__init__", "torch", "Model", "kernels", "nn", "sparkc"):
        out.append(
            (
                f"block {name}",
                f"block {name}(d) {{\n  input x: float[B, N, d]\n  return relu(x)\n}}\n"
                + ok.replace("relu(x)", f"{name}(x, d=d)"),
            )
        )
    out.append(("model-name", ok.replace("model M", "model __init__")))
    return out


def _names(p: str) -> list[str]:
    names = [
        "model.spark", f"x\"; {p}; \".spark", f"x'; {p}; '.spark", f"x'''; {p}; '''.spark",
        f"a\n{p}\n.spark", f"a\n{p}\n#.spark", f"a\r{p}\r#.spark", f"a\u2028{p}.spark", "__init__.spark", "kernels.spark",
        "torch.spark", "sparkc.spark", "class.spark", "1abc.spark", "\ufb01le.spark",
        "my model.spark", "-o.spark", ".spark", "\u00e9t\u00e9.spark", "a.b.c.spark",
        "x\\y.spark", "x\\N.spark", 'x"""y.spark', f'x""";{p};"""y.spark', "$(touch PWNED).spark", "\u202egnp.spark", "x" * 243 + ".spark",
    ]  # fmt: skip
    return names


def injection_cases() -> Iterator[tuple[str, str, str]]:
    """(label, file name, text): every hostile name with a plain program, every hostile text
    with a plain name, for each payload spelling."""
    seen = set()
    for p in _PAYLOADS:
        for name in _names(p):
            case = (f"name {name[:40]!r}", name, _BASE.format(expr="relu(x)"))
            if name not in seen:
                seen.add(name)
                yield case
        for label, text in _texts(p):
            if text not in seen:
                seen.add(text)
                yield (f"text {label}", "model.spark", text)


def _run_each_module(pkg: Path) -> None:
    """Execute every generated file on its own (a payload in kernels.py runs even when the
    package's __init__ does not import)."""
    import importlib.util

    for i, file in enumerate(sorted(pkg.glob("*.py"))):
        spec = importlib.util.spec_from_file_location(f"sparkc_fuzz_alone_{os.getpid()}_{i}", file)
        if spec is None or spec.loader is None:
            continue
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except BaseException:  # noqa: BLE001, S110 - only the marker file matters here
            pass


def run_injection(name: str, text: str, folder: Path) -> Outcome:
    """Compile and import one case with `folder` as the current folder; `injected` if the
    payload ran."""
    folder.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(folder)
    try:
        outcome, pkg = compile_and_import(text.encode(), folder / name, folder / "out")
        if pkg is not None:
            _run_each_module(pkg)
        if pkg is not None and outcome.kind == "success":
            for file in sorted(pkg.glob("*.py")):
                head = file.read_text(errors="replace").splitlines()[:2]
                if any(w in line for line in head for w in ("PWNED", "mknod", "open(")):
                    outcome = Outcome("header-text", f"program text on line 1-2 of {file.name}")
    finally:
        os.chdir(here)
    if (folder / MARKER).exists():
        (folder / MARKER).unlink()
        return Outcome("injected", f"the payload ran ({outcome.kind})")
    return outcome


# ------------------------------------------------------------------------------------------------
# Determinism across processes


def digests(programs: list[tuple[str, str]]) -> list[str | None]:
    """sha256 over the generated files of each (file name, text); None when it does not
    compile."""
    from ..api import compile_files
    from ..diagnostics import SparkError

    out: list[str | None] = []
    for name, text in programs:
        try:
            files = compile_files(text, name)
        except SparkError:
            out.append(None)
            continue
        h = hashlib.sha256()
        for rel in sorted(files):
            h.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
        out.append(h.hexdigest())
    return out


def determinism(programs: list[tuple[str, str]], timeout_s: float = 600.0) -> list[Outcome]:
    """One outcome per program: success when a second interpreter generated the same files."""
    here = digests(programs)
    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run(
        [sys.executable, "-m", "sparkc.fuzz", "--digests"],
        input=json.dumps(programs),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [Outcome("internal", f"the second process failed: {detail}")]
    there = json.loads(proc.stdout)
    return [
        Outcome("success" if a == b else "nondeterministic", "" if a == b else "files differ")
        for a, b in zip(here, there)
    ]
