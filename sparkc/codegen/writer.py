"""Writing a generated package to disk: atomically, and never over files sparkc did not write.

`write_package(out_dir, stem, files)` puts `files` (relative name → text) into `out_dir/stem/`
with a manifest `.sparkc-manifest.json` of what it wrote (name → sha256). The new package is
assembled in a temporary sibling folder and swapped in with renames, so a failed or interrupted
compile leaves the previous output as it was. An existing `out_dir/stem` is replaced only when
its manifest says sparkc wrote every file in it and none was edited since; otherwise the compile
stops with a diagnostic naming the files (`--force` replaces them anyway).

`out_dir/__init__.py` is created (empty) when missing, so `import build.model` finds the package
even when another distribution named `build` is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..diagnostics import error

MANIFEST = ".sparkc-manifest.json"
_IGNORED = {"__pycache__"}


def _digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def foreign_files(pkg: Path) -> list[str]:
    """Files in an existing output package that sparkc did not write (or that were edited)."""
    manifest_path = pkg / MANIFEST
    existing = sorted(
        str(p.relative_to(pkg))
        for p in pkg.rglob("*")
        if p.is_file() and not (set(p.relative_to(pkg).parts) & _IGNORED) and p.name != MANIFEST
    )
    if not manifest_path.is_file():
        return existing or ["(a folder without a sparkc manifest)"]
    try:
        written = json.loads(manifest_path.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return existing or [MANIFEST]
    out = []
    for rel in existing:
        if rel not in written or _digest((pkg / rel).read_bytes()) != written[rel]:
            out.append(rel)
    return out


def write_package(
    out_dir: str | os.PathLike, stem: str, files: dict[str, str], force: bool = False
) -> Path:
    out = Path(out_dir)
    pkg = out / stem
    if out.exists() and not out.is_dir():
        raise error(
            "E0702",
            f"output path '{out}' exists and is not a folder",
            None,
            help="choose another -o folder",
        )
    if pkg.exists() and not force:
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
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.tmp-", dir=out))
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700; the package is an ordinary folder
        manifest = {"generator": "sparkc", "files": {}}
        for rel in sorted(files):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[rel])
            manifest["files"][rel] = _digest(files[rel])
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        old = None
        if pkg.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{stem}.old-", dir=out))
            os.rename(pkg, old / stem)
        try:
            os.rename(tmp, pkg)
        except BaseException:
            if old is not None:  # put the previous output back
                os.rename(old / stem, pkg)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    init = out / "__init__.py"
    if not init.exists():
        init.write_text("")
    return pkg
