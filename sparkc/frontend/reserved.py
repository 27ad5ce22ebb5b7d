"""Names of the chosen model that the generated Python module cannot give the user.

Consumes the `ast.ModelDef` being compiled; adds one located diagnostic per offending name to a
`DiagnosticSink`. The rules (docs/language.md, "Names in the generated module"):

- A model input becomes an argument of the generated `forward()`, so it must be usable as a
  Python keyword argument: not a Python keyword (`class`, `if`, ...), and not starting with `_`,
  which is the generated code's own namespace (`_self`, `_ctx`, `_v3`, `_ms`, ...), and not
  `self` (`nn.Module.__call__(self, ...)` could not pass it by keyword), and not `cache`
  (forward's keyword for cached decoding). Error E0701.
- Outputs and losses are keys of the returned `ModelOutput` (a dict with attribute access):
  `aux_loss` and `loss` are the module's own keys, and a name that is an attribute of a dict
  (`items`, `keys`, `get`, ..., or any `__dunder__`) would not be readable as `out.<name>`.
  Error E0710.
- `impl` is the constructor's argument (`Model(impl="reference")`): a model hyperparameter of
  that name could never be overridden through `Model(impl=...)`. Error E0711.

Everything else (the model's name, other hyperparameters, bindings, block names) reaches
generated code only as a repr() literal or is mapped to a safe identifier by code generation
(`sparkc/codegen/names.py`), so it needs no rule here.
"""

from __future__ import annotations

import keyword

from ..diagnostics import Diagnostic, DiagnosticSink
from . import ast

# Public attributes of a dict: `out.<name>` finds these before any output of that name.
DICT_ATTRIBUTES = frozenset(n for n in dir(dict) if not n.startswith("_"))
# The constructor's own keyword argument.
CONSTRUCTOR_ARGS = ("impl",)


def input_name_problem(name: str) -> str | None:
    """Why `name` cannot be an argument of the generated forward(), or None."""
    if keyword.iskeyword(name):
        return f"'{name}' is a Python keyword"
    if name.startswith("_"):
        return "names starting with '_' are reserved for the generated code"
    if name == "self":
        return "net(self=...) cannot pass it (torch.nn.Module.__call__ takes 'self')"
    if name == "cache":
        return "forward(..., cache=...) is the decoding cache (net.new_cache)"
    return None


def output_name_problem(name: str) -> str | None:
    """Why `name` cannot be a key of the returned ModelOutput, or None."""
    if name == "aux_loss":
        return "out.aux_loss is always the sum of the ops' auxiliary losses"
    if name == "loss":
        return "out.loss is always the total loss (weighted terms + aux_loss)"
    if name in DICT_ATTRIBUTES:
        return f"out.{name} is the dict method, so the value could only be read as out['{name}']"
    if name.startswith("__") and name.endswith("__"):
        return f"out.{name} is a Python special attribute"
    return None


def check_model_names(model: ast.ModelDef, sink: DiagnosticSink) -> None:
    for param in model.params:
        if param.name in CONSTRUCTOR_ARGS:
            sink.add(
                Diagnostic(
                    "E0711",
                    f"model hyperparameter '{param.name}' has the name of an argument of the "
                    "generated constructor",
                    param.name_span,
                    f"Model({param.name}=...) selects the implementation",
                    help=f"rename the hyperparameter (e.g. '{param.name}_')",
                )
            )
    for stmt in model.body:
        if isinstance(stmt, ast.InputDecl):
            why = input_name_problem(stmt.name)
            if why:
                sink.add(
                    Diagnostic(
                        "E0701",
                        f"input name '{stmt.name}' cannot be an argument of the generated "
                        f"forward(): {why}",
                        stmt.name_span,
                        "a forward() argument",
                        help=f"rename the input (e.g. '{_input_suggestion(stmt.name)}')",
                    )
                )
        elif isinstance(stmt, ast.Output | ast.Loss):
            why = output_name_problem(stmt.name)
            if why:
                kind = "output" if isinstance(stmt, ast.Output) else "loss"
                sink.add(
                    Diagnostic(
                        "E0710",
                        f"{kind} name '{stmt.name}' is reserved in the model's output: {why}",
                        stmt.name_span,
                        "a key of the returned ModelOutput",
                        help=f"rename the {kind} (e.g. '{stmt.name.strip('_') or kind}_out')",
                    )
                )


def _input_suggestion(name: str) -> str:
    core = name.lstrip("_") or "x"
    return core + "_" if keyword.iskeyword(core) or core in ("self", "cache") else core
