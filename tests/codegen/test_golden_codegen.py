"""Golden code generation: every examples/*.spark compiled and compared byte for byte with the
checked-in files under tests/golden/<example>/ (`pytest --update-goldens` rewrites them; review
the diff like code). Also: generation is deterministic across processes, and the generated
module passes `ruff format --check` and imports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparkc import api

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.spark"))
GOLDEN = ROOT / "tests" / "golden"


def _generate(path: Path) -> dict[str, str]:
    return api.compile_files(path.read_text(), f"examples/{path.name}")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_golden(path, update_goldens):
    files = _generate(path)
    folder = GOLDEN / path.stem
    for rel, text in sorted(files.items()):
        target = folder / (rel + ".golden")
        if update_goldens:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            continue
        assert target.is_file(), f"missing golden {target}: run pytest --update-goldens"
        assert target.read_text() == text, (
            f"{path.name}: generated {rel} differs from {target.relative_to(ROOT)}; "
            "if the change is intended, run `pytest tests/codegen --update-goldens` and review the diff"
        )


def test_deterministic_across_processes():
    path = ROOT / "examples" / "tiny_gpt.spark"
    code = (
        "import sparkc.api as a, hashlib, json, sys;"
        "f = a.compile_files(open(sys.argv[1]).read(), 'examples/tiny_gpt.spark');"
        "print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() for k, v in f.items()}))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_generated_code_is_formatted(path, tmp_path):
    files = _generate(path)
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    ruff = Path(sys.executable).with_name("ruff")
    proc = subprocess.run(
        [str(ruff), "format", "--check", "--diff", "--line-length", "100", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
