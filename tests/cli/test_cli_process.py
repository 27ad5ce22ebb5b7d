"""The command line as a user runs it: the installed `sparkc` console script and `python -m sparkc`,
in real subprocesses (exit codes and streams cross a process boundary)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples" / "tiny_gpt.spark"
SCRIPT = Path(sys.executable).parent / "sparkc"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SPARKC_DEBUG"}


def test_console_script_checks_an_example(tmp_path: Path) -> None:
    assert SCRIPT.exists(), f"the console script is not installed next to {sys.executable}"
    proc = subprocess.run(
        [str(SCRIPT), "check", str(TINY)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: TinyGPT (") and proc.stderr == ""


def test_python_dash_m_reports_a_program_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.spark"
    bad.write_text("model M() {\n  output y\n}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sparkc", "check", "bad.spark"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("bad.spark:2:") and "Traceback" not in proc.stderr


def test_python_dash_m_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sparkc", "compile"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "usage: sparkc compile" in proc.stderr
