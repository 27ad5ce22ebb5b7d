"""Writing a generated package to disk: atomically, and never over files sparkc did not write.

`write_package(out_dir, stem, files)` puts `files` (relative name → text) into `out_dir/stem/`
with a manifest `.sparkc-manifest.json` of what it wrote (name → sha256). Consumes the files and
the target; produces the package folder (or a `SparkError`: E0702 for a target sparkc will not
replace, E0703 for a file-system error).

Guarantees (docs/architecture.md, "The output folder"):

- At every instant `out_dir/stem` is absent (first compile) or a complete package, old or new:
  the new package is assembled in a sibling `.STEM.tmp-XXXXXXXX` and exchanged with the old one
  in one `renameat2(RENAME_EXCHANGE)` (Linux) or `renamex_np(RENAME_SWAP)` (macOS). Where the
  file system cannot exchange, the old package is renamed to `.STEM.old-XXXXXXXX` just before
  the new one takes its name; a compile killed in between leaves no package for that instant,
  and the next compile puts the old one back before anything else.
- Compiles into one `out_dir` take turns (`flock` on the folder), and each first sweeps the
  leftovers of interrupted compiles: only folders named `.STEM.tmp-*`/`.STEM.old-*` that hold
  nothing but files their own manifest lists (a folder gets its manifest first and loses it
  last).
- An existing `out_dir/stem` is replaced only when its manifest says sparkc wrote every file in
  it and none was edited since; otherwise the compile stops with a diagnostic naming the files
  (`force=True` replaces them anyway). A symbolic link there is never followed or replaced.

`out_dir/__init__.py` is created (empty) when missing, so `import build.model` finds the package
even when another distribution named `build` is installed.

`STEP_HOOK`, when set, is called with a short name before every file-system step; the tests use
it to stop a compile at each step in turn.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..diagnostics import SparkError, error

MANIFEST = ".sparkc-manifest.json"
_IGNORED = {"__pycache__"}
STALE_AFTER_S = 3600.0  # without a lock, only leftovers this old are swept
LOCK_WAIT_S = 60.0

STEP_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


def _digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def _entries(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative name, lstat) of every non-folder entry below `folder`, skipping __pycache__."""
    for root, dirs, names in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED and d not in links)
        for name in sorted(names + links):
            path = os.path.join(root, name)
            yield os.path.relpath(path, folder), os.lstat(path)


def _manifest(folder: Path) -> dict[str, str] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
        files = data.get("files") if data.get("generator") == "sparkc" else None
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return files if isinstance(files, dict) else None


def foreign_files(pkg: Path) -> list[str]:
    """Files in an existing output package that sparkc did not write (or that were edited).

    Links and other non-regular files are never sparkc's; regular files are read only when the
    manifest lists them."""
    existing = [(rel, st) for rel, st in _entries(pkg) if rel != MANIFEST]
    written = _manifest(pkg)
    if written is None:
        if (pkg / MANIFEST).exists():
            return [rel for rel, _ in existing] or [MANIFEST]
        return [rel for rel, _ in existing] or ["(a folder without a sparkc manifest)"]
    out = []
    for rel, st in existing:
        if (
            not stat.S_ISREG(st.st_mode)
            or rel not in written
            or _digest((pkg / rel).read_bytes()) != written[rel]
        ):
            out.append(rel)
    return out


def _own_leftover(folder: Path) -> bool:
    """A sparkc temporary folder: nothing in it but files its manifest lists (or nothing at all
    but a manifest, when a compile stopped while writing it)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    listed = set(_manifest(folder) or ())
    return all(
        stat.S_ISREG(st.st_mode) and (rel == MANIFEST or rel in listed)
        for rel, st in _entries(folder)
    )


# ------------------------------------------------------------------------------------------------
# Exchanging two names in one step


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # Linux renameat2 flag
_RENAME_SWAP = 2  # macOS renamex_np flag
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", -1)}


def _libc_exchange() -> Callable[[bytes, bytes], int] | None:
    if not sys.platform.startswith(("linux", "darwin")):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform == "darwin":
        fn = getattr(libc, "renamex_np", None)
        return None if fn is None else (lambda a, b: fn(a, b, _RENAME_SWAP))
    fn = getattr(libc, "renameat2", None)  # glibc >= 2.28, musl >= 1.2.? (not everywhere)
    if fn is None:
        return None
    return lambda a, b: fn(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)


_EXCHANGE = _libc_exchange()


def exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` atomically; False where the platform or file system cannot
    (then nothing changed). Other failures raise OSError."""
    if _EXCHANGE is None:
        return False
    if _EXCHANGE(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


# ------------------------------------------------------------------------------------------------
# Taking turns and sweeping


@contextmanager
def _turn(out: Path) -> Iterator[bool]:
    """Hold an exclusive flock on the output folder; yields whether the lock is held."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield False
        return
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        held, deadline = False, time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break  # a stopped process holds it: go on without (age-based sweep)
                time.sleep(0.05)
            except OSError:  # a file system without flock
                break
        yield held
    finally:
        os.close(fd)  # releases the lock


def _tag(stem: str) -> str:
    """The stem as it appears in temporary names: shortened (with a digest) so that
    `.TAG.tmp-XXXXXXXX` stays within the 255 bytes of a file name."""
    if len(os.fsencode(stem)) <= 200:
        return stem
    return stem[:40] + "~" + _digest(stem)[:16]


def _leftover_re(stem: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{_tag(stem)}.") + r"(tmp|old)-[a-z0-9_]{8}")


def _remove(path: Path) -> None:
    """Delete a package folder (or a file) with its manifest last, so that a folder a kill
    leaves half-deleted is still recognisably sparkc's and the next sweep takes it."""
    if not path.is_dir() or path.is_symlink():
        _step("remove file")
        path.unlink()
        return
    for root, dirs, names in os.walk(path, topdown=False):
        for name in sorted(names):
            if root == str(path) and name == MANIFEST:
                continue
            _step("remove " + name)
            os.unlink(os.path.join(root, name))
        for name in sorted(dirs):
            sub = os.path.join(root, name)
            _step("remove " + name)
            if os.path.islink(sub):
                os.unlink(sub)
            else:
                os.rmdir(sub)
    if (path / MANIFEST).exists():
        _step("remove " + MANIFEST)
        (path / MANIFEST).unlink()
    _step("rmdir")
    path.rmdir()


def sweep(out: Path, stem: str, locked: bool = True) -> list[str]:
    """Put back an old package a compile stopped in the middle of replacing, and remove the
    temporary folders interrupted compiles left in `out` for `stem`. Returns what was removed.

    Only sparkc's own leftovers are touched (`_own_leftover`); without the lock (`locked`), only
    those older than STALE_AFTER_S, so a concurrent compile's folder is never taken."""
    pattern = _leftover_re(stem)
    found = sorted(p for p in out.iterdir() if pattern.fullmatch(p.name))
    pkg = out / stem
    if not os.path.lexists(pkg):
        # The fallback replacement stopped between its two renames: the old package returns.
        # Only a complete package comes back (never a half-written or a foreign folder).
        olds = [
            p
            for p in found
            if ".old-" in p.name and p.is_dir() and not p.is_symlink() and not foreign_files(p)
        ]
        if olds and locked:
            newest = max(olds, key=lambda p: p.stat().st_ctime)
            _step("restore")
            os.rename(newest, pkg)
            found.remove(newest)
    removed = []
    now = time.time()
    for path in found:
        try:
            if not locked and now - path.lstat().st_mtime < STALE_AFTER_S:
                continue
            if not _own_leftover(path):
                continue
            _step("sweep")
            _remove(path)
            removed.append(path.name)
        except FileNotFoundError:
            continue
    return removed


# ------------------------------------------------------------------------------------------------
# Checks of the target


def _refuse(pkg: Path, force: bool) -> None:
    """Raise E0702 when `pkg` is something sparkc must not replace."""
    if pkg.is_symlink():
        target = os.readlink(pkg)
        what = "which does not exist" if not pkg.exists() else "a folder sparkc does not replace"
        if pkg.exists() and not pkg.is_dir():
            what = "which is not a folder"
        raise error(
            "E0702",
            f"refusing to write '{pkg}': it is a symbolic link to '{target}', {what}",
            None,
            help="sparkc writes the package folder itself and never replaces or follows a link "
            "there (not even with --force): remove the link, or choose another -o folder",
        )
    if not os.path.lexists(pkg) or force:
        return
    if not pkg.is_dir():
        raise error(
            "E0702",
            f"refusing to overwrite '{pkg}': it is a file sparkc did not write",
            None,
            help="remove it, choose another -o folder, or pass --force",
        )
    foreign = foreign_files(pkg)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise error(
            "E0702",
            f"refusing to overwrite '{pkg}': it holds files sparkc did not write ({shown})",
            None,
            help="move them away, choose another -o folder, or pass --force to replace the folder",
        )


def _prepare_out(out: Path) -> None:
    if out.is_symlink() and not out.exists():
        raise error(
            "E0702",
            f"output folder '{out}' is a symbolic link to '{os.readlink(out)}', which does not "
            "exist",
            None,
            help="create the folder it points to, remove the link, or choose another -o folder",
        )
    if os.path.lexists(out) and not out.is_dir():
        raise error(
            "E0702",
            f"output path '{out}' exists and is not a folder",
            None,
            help="choose another -o folder",
        )
    if not out.is_dir():
        _step("mkdir")
        out.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------------------------------------
# Writing


def _assemble(out: Path, stem: str, files: dict[str, str]) -> Path:
    """The new package in a temporary sibling folder: the manifest first (so an interrupted
    folder is recognisably sparkc's), then the files in name order."""
    _step("mkdtemp")
    tmp = Path(tempfile.mkdtemp(prefix=f".{_tag(stem)}.tmp-", dir=out))
    tmp.chmod(0o755)  # mkdtemp makes 0700; the package is an ordinary folder
    manifest = {"generator": "sparkc", "files": {rel: _digest(files[rel]) for rel in sorted(files)}}
    _step("write " + MANIFEST)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for rel in sorted(files):
        target = tmp / rel
        if target.parent != tmp:
            target.parent.mkdir(parents=True, exist_ok=True)
        _step("write " + rel)
        target.write_text(files[rel])
    return tmp


def _swap_in(out: Path, stem: str, pkg: Path, tmp: Path) -> None:
    """Make `tmp` the package `pkg`; the previous package (if any) is removed."""
    if not os.path.lexists(pkg):
        _step("rename")
        os.rename(tmp, pkg)  # nothing was there: one atomic rename
        return
    _step("exchange")
    if exchange(tmp, pkg):
        _step("remove old")
        _remove(tmp)  # now the previous package
        return
    # Fallback: two renames; the next compile restores `old` if we stop between them.
    old = out / f".{_tag(stem)}.old-{secrets.token_hex(4)}"
    _step("rename old")
    os.rename(pkg, old)
    try:
        _step("rename new")
        os.rename(tmp, pkg)
    except BaseException:
        os.rename(old, pkg)  # put the previous output back
        raise
    _step("remove old")
    _remove(old)


_OS_HELP = {
    errno.EACCES: "make the -o folder writable, or choose another -o folder",
    errno.EPERM: "make the -o folder writable, or choose another -o folder",
    errno.EROFS: "the file system is read-only: choose another -o folder",
    errno.ENOSPC: "the disk is full: free some space, or choose another -o folder",
    errno.EDQUOT: "the disk quota is used up: free some space, or choose another -o folder",
    errno.ENAMETOOLONG: "the package name (from the .spark file's name) or the -o path is too "
    "long for this file system: rename the file or choose a shorter -o path",
    errno.ENOTDIR: "a file stands where the -o path needs a folder: choose another -o folder",
    errno.EEXIST: "a file stands where the -o path needs a folder: choose another -o folder",
}


def write_package(
    out_dir: str | os.PathLike, stem: str, files: dict[str, str], force: bool = False
) -> Path:
    """Write `files` as the package `out_dir/stem` (see the module docstring); returns its path.
    Raises SparkError E0702 (a target sparkc will not replace) or E0703 (a file-system error)."""
    out = Path(out_dir)
    pkg = out / stem
    try:
        _prepare_out(out)
        init = out / "__init__.py"
        if not os.path.lexists(init):
            _step("write __init__.py")
            init.write_text("")
        with _turn(out) as locked:
            sweep(out, stem, locked)
            _refuse(pkg, force)
            tmp = _assemble(out, stem, files)
            try:
                _swap_in(out, stem, pkg, tmp)
            except BaseException:
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
    except SparkError:
        raise
    except OSError as err:
        where = f" ('{err.filename}')" if err.filename else ""
        raise error(
            "E0703",
            f"cannot write the package '{pkg}': {err.strerror or err}{where}",
            None,
            help=_OS_HELP.get(err.errno or 0, "check the -o folder and the disk it is on"),
        ) from None
    return pkg
