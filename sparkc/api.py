"""The Python API: compile a `.spark` program into a package, or load it in one call.

    import sparkc
    m = sparkc.load("model.spark", d=256)     # compiled into a content-addressed cache
    net = m.Model().cuda()

`compile_files(text, name, ...)` runs the pipeline up to code generation and returns the files;
`compile_to(out_dir, path, ...)` writes them as `out_dir/<stem>/` (atomically, see
codegen/writer.py); `load`/`load_source` compile into `$SPARKC_CACHE_DIR` (default
`~/.cache/sparkc/modules`) keyed by the source, the model, the hyperparameters, the sparkc
version and the templates, and import the package, so a second call is only an import.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .pipeline import CompileOptions, collector_paused, run_pipeline
from .version import __version__


def compile_graph(
    text: str | bytes,
    source_name: str,
    overrides: dict[str, Any] | None = None,
    model: str | None = None,
    options: CompileOptions | None = None,
):
    opts = options or CompileOptions(overrides=tuple((overrides or {}).items()), model=model)
    return run_pipeline(text, source_name, opts, stop_after="fuse").artefact


def compile_files(
    text: str,
    source_name: str,
    overrides: dict[str, Any] | None = None,
    model: str | None = None,
    options: CompileOptions | None = None,
    fuse: bool = True,
) -> dict[str, str]:
    from .codegen import generate

    graph = compile_graph(text, source_name, overrides, model, options)
    source = text if isinstance(text, str) else text.decode()
    with collector_paused():  # see pipeline.collector_paused: linear time on large models
        return generate(graph, source, Path(source_name).name, fuse=fuse)


def compile_to(
    out_dir: str | os.PathLike,
    path: str | os.PathLike,
    overrides=None,
    model=None,
    force: bool = False,
    options: CompileOptions | None = None,
) -> Path:
    from .codegen.names import package_stem
    from .codegen.writer import write_package

    text = Path(path).read_text()
    files = compile_files(text, str(path), overrides, model, options)
    return write_package(out_dir, package_stem(str(path)), files, force=force)


@functools.lru_cache(maxsize=1)
def _compiler_digest() -> str:
    """A digest of everything that shapes generated code: the templates and the compiler's own
    modules (so a development checkout never reuses a package an older compiler wrote)."""
    h = hashlib.sha256()
    root = importlib.resources.files("sparkc.codegen_templates")
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".jinja"):
            h.update(entry.name.encode())
            h.update(entry.read_bytes())
    pkg = Path(__file__).parent
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("SPARKC_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "sparkc"


def load_source(
    text: str,
    source_name: str = "model.spark",
    model: str | None = None,
    fuse: bool = True,
    **hyper: Any,
) -> ModuleType:
    """Compile `text` (cached) and import the generated package."""
    return load_variant(text, source_name, model, hyper, fuse)


def load_variant(
    text: str, source_name: str, model: str | None, hyper: dict[str, Any], fuse: bool = True
) -> ModuleType:
    """`load_source` with the hyperparameters as a dict, so that no hyperparameter name (`text`,
    `fuse`, ...) can collide with an argument; generated modules build variants through it."""
    from .codegen.names import package_stem

    key_src = repr((__version__, _compiler_digest(), text, model, fuse, sorted(hyper.items())))
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    stem = package_stem(source_name)
    out = cache_dir() / "modules" / key
    pkg = out / stem
    if not (pkg / "__init__.py").is_file():
        from .codegen.writer import write_package

        files = compile_files(text, source_name, hyper, model, fuse=fuse)
        write_package(out, stem, files, force=True)
    return import_package(pkg, f"sparkc_gen_{stem}_{key}")


def load(path: str | os.PathLike, model: str | None = None, **hyper: Any) -> ModuleType:
    """`sparkc.load("model.spark", d=256)`: compile (cached) and import; returns the module."""
    text = Path(path).read_text()
    return load_source(text, Path(path).name, model=model, **hyper)


def import_package(pkg: Path, module_name: str) -> ModuleType:
    import importlib.util

    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the generated package {pkg}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
