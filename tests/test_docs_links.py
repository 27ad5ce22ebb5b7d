"""The documentation stands alone: every relative link and every file path that README.md and
docs/**/*.md mention exists in the repository, and no document points at the operator
specification or design notes outside it (`SPEC.md`, `DESIGN.md`, `../shared`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
# A code span that names a repository file: a known top-level folder, or a file name with one of
# the repository's extensions.
TOP = (
    "sparkc/",
    "docs/",
    "runtime/",
    "tests/",
    "examples/",
    "bench/",
    "codegen_templates/",
    "grammar/",
    ".ci/",
)
EXT = re.compile(r"^[\w./-]+\.(md|py|spark|jinja|lark|toml|sh|png|svg|expected|golden)$")
# Paths that exist only after a command ran (the output of the README's own examples), and the
# files of a generated package.
GENERATED = ("build/", "~", "$", "out/", "/tmp/")
GENERATED_FILES = {"kernels.py"}
OUTSIDE = ("SPEC.md", "DESIGN.md", "../shared", "shared/SPEC")


def _rel(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def _exists(doc: Path, target: str) -> bool:
    target = target.split("#", 1)[0].split("::", 1)[0].rstrip("/")
    if not target or target in GENERATED_FILES:
        return True
    # Relative to the document, to the repository root, or inside the compiler package
    # (`codegen/writer.py` in docs/architecture.md).
    candidates = [doc.parent / target, ROOT / target, ROOT / "sparkc" / target]
    # A bare file name (`ops.md`, `fuse.py`) may name any file of that name in the repository.
    if "/" not in target:
        return any(c.exists() for c in candidates) or any(ROOT.rglob(target))
    return any(c.exists() for c in candidates)


def missing_targets(doc: Path, text: str | None = None) -> list[str]:
    """What `doc` (its `text`, read from disk by default) mentions but the repository lacks."""
    text = doc.read_text(encoding="utf-8") if text is None else text
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        if not _exists(doc, target):
            bad.append(f"link {target}")
    for span in CODE.findall(text):
        path = span.rstrip(".,:;")
        if path.startswith(GENERATED) or "*" in path or "{" in path:
            continue
        if (path.startswith(TOP) or EXT.match(path)) and not _exists(doc, path):
            bad.append(f"file {path}")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_mentioned_file_exists(doc):
    assert missing_targets(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_no_document_points_outside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    assert [o for o in OUTSIDE if o in text] == []


def test_the_scanner_sees_a_missing_file():
    text = "See [the spec](../SPEC.md), `docs/nothing.md`, [ok](#anchor), [ops](ops.md).\n"
    doc = ROOT / "docs" / "language.md"
    assert missing_targets(doc, text) == ["link ../SPEC.md", "file docs/nothing.md"]


def test_readme_offers_a_quick_check_beside_the_full_one():
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    full = ".venv/bin/python -m pytest -q\n"
    quick = '.venv/bin/python -m pytest -q -m "not slow and not exhaustive"'
    assert full in readme and quick in readme
    assert readme.index(full) < readme.index(quick)  # after the first two commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().endswith(".venv/bin/python -m pytest -q")  # CI runs the full command
    # The marker really splits the suite: kernel tests are slow, IR tests quick.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "not slow and not exhaustive",
            "-p",
            "no:cacheprovider",
            "tests/kernels/test_rope.py",
            "tests/ir/test_printer.py",
            "tests/property/test_fuzz.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    selected = [line for line in out.splitlines() if "::" in line]
    # Kernel tests and the minutes-long fuzz campaign are left out; the fuzz file's quick tests stay.
    assert not any("tests/kernels/" in line or "test_fuzz_campaign" in line for line in selected)
    assert any(line.startswith("tests/ir/") for line in selected), out
    assert any(line.startswith("tests/property/test_fuzz.py") for line in selected), out
