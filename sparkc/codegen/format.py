"""Formatting of generated Python with ruff's formatter (a pinned dependency of sparkc).

Templates give the skeleton and aim for formatted code; `ruff format` then normalises quotes,
wrapping and blank lines so the generated package reads like hand-written code and passes
`ruff format --check`. The exact ruff version is pinned in pyproject.toml, so the same input gives
byte-identical output on every machine with the same sparkc install.
"""

from __future__ import annotations

import functools
import subprocess

from ..diagnostics import CompilerBug

LINE_LENGTH = 100


@functools.lru_cache(maxsize=1)
def ruff_binary() -> str | None:
    """The ruff executable of the installed ruff package (None when ruff is not installed)."""
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return None
    try:
        return find_ruff_bin()
    except FileNotFoundError:
        return None


def format_python(text: str, name: str = "generated.py") -> str:
    """`text` formatted by ruff (line length 100); unchanged when ruff is not installed."""
    ruff = ruff_binary()
    if ruff is None:
        return text
    proc = subprocess.run(
        [
            ruff,
            "format",
            "--isolated",
            "--line-length",
            str(LINE_LENGTH),
            "--stdin-filename",
            name,
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # a failure is reported below with ruff's own message
    )
    if proc.returncode != 0:
        raise CompilerBug(
            f"generated code of {name} is not valid Python:\n{proc.stderr[-2000:]}", "codegen"
        )
    return proc.stdout
