"""Import generated Python source from a real file.

Consumes: a name, the generated source text and a folder (default: `sparkc_kernels` in the
system's temporary folder). Produces: the imported module, registered in `sys.modules` under a
name derived from the content hash (`load_source`) or the file path (`import_file`), and the
file itself, written atomically (`write_atomic`).

Triton's `@triton.jit` refuses functions defined through `exec` of a string, so generated code is
always written to a file and imported from it. `load_source(name, text, directory)` writes
`directory/name.py` atomically (unless an identical file is already there) and imports it under a
unique module name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def import_file(path: Path, module_name: str | None = None) -> ModuleType:
    path = Path(path).resolve()
    if module_name is None:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        module_name = f"sparkc_generated_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import generated file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_source(name: str, text: str, directory: str | os.PathLike | None = None) -> ModuleType:
    """Write `text` to `<directory>/<name>_<hash>.py` and import it (content-addressed)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    base = Path(directory) if directory else Path(tempfile.gettempdir()) / "sparkc_kernels"
    path = base / f"{name}_{digest}.py"
    write_atomic(path, text)
    return import_file(path, f"sparkc_gen_{name}_{digest}")
