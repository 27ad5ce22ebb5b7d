"""The installed package works outside the repository.

`grammar/`, `codegen_templates/` and `runtime/` live at the top level of the repository but ship
inside the wheel as `sparkc.grammar`, `sparkc.codegen_templates` and `sparkc.runtime`. These tests
check that pyproject.toml lists every package folder, then build a real wheel, install it into an
empty virtualenv and run the `sparkc` console script from a directory outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Installed package name -> repository folder, for the folders that are renamed on install.
ROOTS: dict[str, str] = dict(SETUPTOOLS["package-dir"])
SKIP_PARTS = {"__pycache__"}


def shipped_files() -> dict[str, Path]:
    """Every file that must be in the wheel: its path inside the wheel -> its source file."""
    out: dict[str, Path] = {}
    for package, folder in sorted(ROOTS.items()):
        base = ROOT / folder
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if not path.is_file() or SKIP_PARTS & set(rel.parts) or path.suffix == ".pyc":
                continue
            out["/".join((*package.split("."), *rel.parts))] = path
    return out


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(SETUPTOOLS["packages"])
    wanted = set()
    for name in shipped_files():
        if name.endswith(".py"):
            wanted.add(".".join(name.split("/")[:-1]))
    missing = sorted(wanted - listed)
    assert not missing, (
        f"add these packages to [tool.setuptools] packages in pyproject.toml: {missing}"
    )
    stale = sorted(p for p in listed if p not in wanted)
    assert not stale, f"pyproject.toml lists packages that have no Python file: {stale}"


def test_console_script_and_extras_are_declared() -> None:
    project = PYPROJECT["project"]
    assert project["scripts"]["sparkc"] == "sparkc.cli:main"
    deps = " ".join(project["dependencies"])
    for dep in ("lark", "networkx", "jinja2", "numpy", "torch"):
        assert dep in deps
    # Generated code is formatted by an exact ruff version (byte-identical output everywhere).
    assert any(d.startswith("ruff==") for d in project["dependencies"])
    assert any(d.startswith("triton") for d in project["optional-dependencies"]["gpu"])
    dev = " ".join(project["optional-dependencies"]["dev"])
    for dep in ("pytest", "hypothesis", "pydot", "triton", "interegular"):
        assert dep in dev


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.mark.slow
def test_wheel_installs_into_an_empty_venv_and_runs_outside_the_repo(tmp_path: Path) -> None:
    # Build from a copy, so the build never writes build/ or *.egg-info into the working tree.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "__pycache__",
            "build",
            "dist",
            "*.egg-info",
            ".pytest_cache",
            ".hypothesis",
            ".ruff_cache",
        ),
    )
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        cwd=src,
    )
    (wheel,) = dist.glob("sparkc-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(n for n in shipped_files() if n not in names)
    assert not missing, f"files missing from the wheel: {missing}"
    assert "sparkc/grammar/spark.lark" in names
    assert any(n.startswith("sparkc/runtime/") and n.endswith(".py") for n in names)
    assert any(n.startswith("sparkc/codegen_templates/") and n.endswith(".jinja") for n in names)

    # An empty venv; its only view of the dependencies (lark, networkx, torch, ...) is a .pth
    # line naming this environment's site-packages, which is appended after its own, and whose
    # own .pth files (the editable install of the repository) are not executed.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
    )

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code = "import sparkc.grammar, sparkc.runtime as r; print(sparkc.grammar.__file__, r.__file__)"
    where = _run([str(py), "-c", code], work, env)
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv), f"imported from outside the venv: {line}"

    example = ROOT / "examples" / "tiny_gpt.spark"
    proc = _run([str(venv / "bin" / "sparkc"), "check", str(example)], work, env)
    assert proc.stdout.startswith("ok: TinyGPT ("), proc.stdout
    assert proc.stderr == ""


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    prose = [ln for ln in readme.split("```")[0].splitlines() if ln.strip()]
    assert len(prose) == 2 and prose[0].startswith("# "), "only a title and one sentence first"
    commands = [
        ln for ln in readme.split("```")[1].splitlines()[1:] if ln and not ln.startswith("#")
    ]
    assert len(commands) == 2
    assert all(c.startswith("python3 -m venv .venv && ") for c in commands)
    assert commands[0].endswith(".venv/bin/python -m sparkc.demo")
    assert commands[1].endswith(".venv/bin/python -m pytest -q")
    ci = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith(("#", "set "))
    ]
    assert ci[-1] == commands[1], "the last line of .ci/run must be the README's test command"
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_readme_example_program_checks(tmp_path: Path) -> None:
    from sparkc.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("```spark\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.spark"
    path.write_text(example)
    assert main(["check", str(path)]) == 0
