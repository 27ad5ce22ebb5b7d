"""The package writer (sparkc/codegen/writer.py): a compile stopped at any file-system step leaves
the old or the new complete package in place, and the next compile removes what it left behind;
links and foreign folders at the output are diagnostics, never followed or removed.

Stops come from the writer's STEP_HOOK: in-process an exception at step k, and in a subprocess a
real `os._exit` at step k (no `finally`, no cleanup), for every step of a compile, with the
atomic exchange and with the two-rename fallback.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparkc.api import import_package
from sparkc.cli import main
from sparkc.codegen import writer
from sparkc.codegen.writer import MANIFEST, foreign_files, sweep, write_package
from sparkc.diagnostics import SparkError

STEM = "model"


def version(tag: str) -> dict[str, str]:
    # The package checks at import that all three files are of one version.
    return {
        "__init__.py": f"VERSION = {tag!r}\nfrom . import kernels\nfrom .sub import util\n"
        "assert kernels.VERSION == util.VERSION == VERSION\n",
        "kernels.py": f"VERSION = {tag!r}\n",
        "sub/util.py": f"VERSION = {tag!r}\n" + "# padding\n" * 200,
    }


OLD, NEW = version("old"), version("new")
_imports = iter(range(1 << 30))


def state(pkg: Path) -> str | None:
    """'old'/'new' when `pkg` is that complete package (and it imports), None when absent."""
    if not os.path.lexists(pkg):
        return None
    assert foreign_files(pkg) == [], "an incomplete or edited package"
    module = import_package(pkg, f"_writer_test_{next(_imports)}")
    return module.VERSION


def own_leftover(out: Path, name: str) -> Path:
    """A folder a compile killed after writing its manifest and one file would leave."""
    folder = out / name
    folder.mkdir()
    (folder / MANIFEST).write_text(
        json.dumps({"generator": "sparkc", "files": {"__init__.py": "0" * 64, "kernels.py": "1"}})
    )
    (folder / "__init__.py").write_text("VERSION = 'half'\n")
    return folder


def foreign_decoys(out: Path) -> dict[Path, str]:
    """Folders that look like leftovers but are not sparkc's (or not this package's)."""
    decoys = {}
    for name, file in [
        (f".{STEM}.tmp-zzzzzzzz", "notes.txt"),  # a file no manifest lists
        (f".{STEM}.old-yyyyyyyy", "data.bin"),
        (".other.tmp-abcdefgh", "__init__.py"),  # another package's leftover: not swept here
        (f".{STEM}.tmp-short", "__init__.py"),  # not a name sparkc makes
    ]:
        (out / name).mkdir()
        (out / name / file).write_text("keep me\n")
        decoys[out / name / file] = "keep me\n"
    return decoys


def setup(out: Path, scenario: str) -> dict[Path, str]:
    decoys: dict[Path, str] = {}
    if scenario in ("replace", "leftovers"):
        write_package(out, STEM, OLD)
    if scenario == "leftovers":
        own_leftover(out, f".{STEM}.tmp-abcdefgh")
        own_leftover(out, f".{STEM}.old-01234567")
        decoys = foreign_decoys(out)
    return decoys


def listing(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def recorded_steps(tmp: Path, scenario: str) -> list[str]:
    steps: list[str] = []
    out = tmp / "record" / "out"
    setup(out, scenario)
    writer.STEP_HOOK = steps.append
    try:
        write_package(out, STEM, NEW)
    finally:
        writer.STEP_HOOK = None
    return steps


class Stop(Exception):
    pass


@pytest.fixture(params=["exchange", "fallback"])
def mode(request, monkeypatch) -> str:
    if request.param == "fallback":
        monkeypatch.setattr(writer, "_EXCHANGE", None)
    else:
        assert writer._EXCHANGE is not None, "renameat2 is expected on the Linux test machines"
    return request.param


def test_the_exchange_is_used_and_swaps(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.write_text("b")
    assert writer.exchange(a, b)
    assert a.read_text() == "b" and b.is_dir()


@pytest.mark.parametrize("scenario", ["fresh", "replace", "leftovers"])
def test_an_exception_at_every_step_leaves_a_complete_package(
    tmp_path: Path, mode: str, scenario: str
) -> None:
    steps = recorded_steps(tmp_path, scenario)
    assert "exchange" in steps or scenario == "fresh"
    for k in range(len(steps)):
        out = tmp_path / str(k) / "out"
        decoys = setup(out, scenario)
        seen: list[str] = []

        def hook(name: str, k: int = k, seen: list[str] = seen) -> None:
            seen.append(name)
            if len(seen) == k + 1:
                raise Stop(name)

        writer.STEP_HOOK = hook
        try:
            with pytest.raises(Stop):
                write_package(out, STEM, NEW)
        finally:
            writer.STEP_HOOK = None
        assert state(out / STEM) in ({None, "new"} if scenario == "fresh" else {"old", "new"}), (
            steps[k]
        )
        # The next compile succeeds and leaves only the package, __init__.py and the decoys.
        write_package(out, STEM, NEW)
        assert state(out / STEM) == "new"
        assert listing(out) == sorted(["__init__.py", STEM, *{p.parent.name for p in decoys}])
        assert all(p.read_text() == text for p, text in decoys.items())


_KILLED = """
import json, os, sys
from sparkc.codegen import writer
out, k, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = json.loads(sys.stdin.read())
if mode == "fallback":
    writer._EXCHANGE = None
seen = []
def hook(name):
    seen.append(name)
    if len(seen) == k + 1:
        os._exit(9)
writer.STEP_HOOK = hook
writer.write_package(out, "model", files)
"""


def killed_at(out: Path, k: int, mode: str) -> int:
    """Compile NEW into `out` in a forked child that `os._exit`s at step k; its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            if mode == "fallback":
                writer._EXCHANGE = None
            seen: list[str] = []

            def hook(name: str) -> None:
                seen.append(name)
                if len(seen) == k + 1:
                    os._exit(9)

            writer.STEP_HOOK = hook
            write_package(out, STEM, NEW)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("scenario", ["replace", "leftovers"])
def test_a_kill_at_every_step_leaves_a_package_and_the_next_compile_sweeps(
    tmp_path: Path, mode: str, scenario: str
) -> None:
    steps = recorded_steps(tmp_path, scenario)
    for k in range(len(steps)):
        out = tmp_path / str(k) / "out"
        decoys = setup(out, scenario)
        assert killed_at(out, k, mode) == 9
        now = state(out / STEM)
        if mode == "exchange" or steps[k] != "rename new":
            assert now in ("old", "new"), steps[k]
        else:
            # The fallback's one window: between its two renames there is no package; the
            # next compile (its sweep) puts the old one back first.
            assert now is None
            sweep(out, STEM)
            assert state(out / STEM) == "old"
        write_package(out, STEM, NEW)
        assert state(out / STEM) == "new"
        assert listing(out) == sorted(["__init__.py", STEM, *{p.parent.name for p in decoys}])
        assert all(p.read_text() == text for p, text in decoys.items())


def test_a_kill_during_the_first_compile_leaves_nothing_or_the_package(tmp_path: Path) -> None:
    # A fresh interpreter per kill (the test above forks the test process).
    steps = recorded_steps(tmp_path, "fresh")
    assert steps[-1] == "rename"
    for k in range(len(steps)):
        out = tmp_path / str(k) / "out"
        proc = subprocess.run(
            [sys.executable, "-c", _KILLED, str(out), str(k), "exchange"],
            input=json.dumps(NEW),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 9, proc.stderr
        assert state(out / STEM) is None
        write_package(out, STEM, NEW)
        assert listing(out) == ["__init__.py", STEM] and state(out / STEM) == "new"


def test_a_dangling_link_at_the_package_is_a_diagnostic(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / STEM).symlink_to(tmp_path / "gone")
    for force in (False, True):
        with pytest.raises(SparkError) as info:
            write_package(out, STEM, NEW, force=force)
        diag = info.value.diagnostics[0]
        assert diag.code == "E0702" and "symbolic link" in diag.message
        assert "does not exist" in diag.message and "remove the link" in diag.help
    assert (out / STEM).is_symlink() and listing(out) == ["__init__.py", STEM]


def test_a_link_to_a_foreign_folder_is_a_diagnostic_and_the_folder_is_untouched(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / STEM).symlink_to(mine)
    for force in (False, True):
        with pytest.raises(SparkError) as info:
            write_package(out, STEM, NEW, force=force)
        assert info.value.diagnostics[0].code == "E0702"
        assert "symbolic link" in info.value.diagnostics[0].message
    assert listing(mine) == ["thesis.tex"] and (out / STEM).is_symlink()


def test_the_cli_reports_links_and_unwritable_folders(tmp_path: Path) -> None:
    import io

    tiny = str(Path(__file__).resolve().parents[2] / "examples" / "tiny_gpt.spark")

    def run(*argv: str) -> tuple[int, str]:
        err = io.StringIO()
        code = main(list(argv), stdout=io.StringIO(), stderr=err)
        return code, err.getvalue()

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tiny_gpt").symlink_to(tmp_path / "nowhere")
    code, err = run("compile", tiny, "-o", str(tmp_path / "out"))
    assert code == 1 and "error[E0702]" in err and "= help:" in err and "Traceback" not in err
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    code, err = run("compile", tiny, "-o", str(tmp_path / "dangling"))
    assert code == 1 and "error[E0702]" in err and "does not exist" in err
    (tmp_path / "afile").write_text("")
    code, err = run("compile", tiny, "-o", str(tmp_path / "afile" / "sub"))
    assert code == 1 and "error[E0703]" in err and "= help:" in err


def test_links_and_special_files_inside_a_package_are_foreign(tmp_path: Path) -> None:
    out = tmp_path / "out"
    pkg = write_package(out, STEM, OLD)
    (pkg / "data").symlink_to(tmp_path / "gone")  # dangling: used to be overlooked
    assert foreign_files(pkg) == ["data"]
    with pytest.raises(SparkError):
        write_package(out, STEM, NEW)
    (pkg / "data").unlink()
    (pkg / "kernels.py").unlink()
    (pkg / "kernels.py").symlink_to(pkg / "sub" / "util.py")
    assert foreign_files(pkg) == ["kernels.py"]


def test_without_the_lock_only_old_leftovers_are_swept(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    write_package(out, STEM, OLD)
    fresh = own_leftover(out, f".{STEM}.tmp-aaaaaaaa")  # perhaps a concurrent compile's
    stale = own_leftover(out, f".{STEM}.tmp-bbbbbbbb")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    monkeypatch.setattr(writer, "LOCK_WAIT_S", 0.2)
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another compile holds the folder (a stopped process)
        write_package(out, STEM, NEW)
    finally:
        os.close(fd)
    assert state(out / STEM) == "new"
    assert fresh.is_dir() and not stale.exists()
    write_package(out, STEM, NEW)  # with the lock: every own leftover goes
    assert listing(out) == ["__init__.py", STEM]


def test_a_long_package_name_fits_its_temporary_names(tmp_path: Path) -> None:
    stem = "x" * 240  # `.{stem}.tmp-XXXXXXXX` would pass the 255-byte name limit
    out = tmp_path / "out"
    write_package(out, stem, OLD)
    write_package(out, stem, NEW)
    assert listing(out) == ["__init__.py", stem] and state(out / stem) == "new"
    with pytest.raises(SparkError) as info:
        write_package(out, "y" * 300, NEW)  # the package folder itself cannot be named
    diag = info.value.diagnostics[0]
    assert diag.code == "E0703" and "too long" in diag.help and "rename" in diag.help


def test_force_replaces_a_file_or_a_foreign_folder_without_leftovers(tmp_path: Path, mode) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / STEM).write_text("a file\n")
    with pytest.raises(SparkError):
        write_package(out, STEM, OLD)
    write_package(out, STEM, OLD, force=True)
    assert state(out / STEM) == "old" and listing(out) == ["__init__.py", STEM]
    (out / STEM / "notes.txt").write_text("mine\n")
    with pytest.raises(SparkError) as info:
        write_package(out, STEM, NEW)
    assert "notes.txt" in info.value.diagnostics[0].message
    write_package(out, STEM, NEW, force=True)
    assert state(out / STEM) == "new" and listing(out) == ["__init__.py", STEM]
