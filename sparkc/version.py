"""The compiler's version, in a module of its own that imports nothing.

Consumed by the package (`sparkc.__version__`), the CLI's `--version` and code generation (the
header of every generated file); produces `__version__`. Kept apart from `sparkc/__init__.py`
so that code generation can read it without importing the package's lazy `api` entry points
(which import code generation: an import circle).
"""

__version__ = "0.1.0"
