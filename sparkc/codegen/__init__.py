"""Code generation: an optimised IR graph → the files of an importable Python package.

`generate(graph, source_text, source_name)` returns {relative path: text}:
- `__init__.py`: the model module (nn.Module with a reference path and a Triton path);
- `kernels.py`: the Triton kernels of the Triton path, imported lazily on first use, so the
  reference path works where Triton is not installed.
Output is deterministic: the same graph and source give byte-identical files.
"""

from __future__ import annotations

from ..ir.graph import Graph
from ..version import __version__
from .decode import decode_context
from .emit import KernelSet
from .format import format_python
from .format_body import format_module
from .input_rules import input_rules
from .module import module_context, name_values
from .triton_plan import triton_units


def generate(graph: Graph, source_text: str, source_name: str, fuse: bool = True) -> dict[str, str]:
    """The package files; `fuse=False` generates one kernel group per op (no fusion)."""
    ctx, kernels = module_inputs(graph, source_text, source_name, fuse)
    module = format_module("module.py.jinja", ctx, "__init__.py")
    kernel_text = kernels.render({"version": __version__})
    return {"__init__.py": module, "kernels.py": format_python(kernel_text, "kernels.py")}


def module_inputs(
    graph: Graph, source_text: str, source_name: str, fuse: bool = True
) -> tuple[dict, KernelSet]:
    """(the context of `module.py.jinja`, the kernels of the Triton path)."""
    if not fuse:
        from ..passes.fuse import plan_fusion

        graph.meta["fusion"] = plan_fusion(graph, enabled=False)
    names = name_values(graph)
    units, kernels, plan, emitter = triton_units(graph, names)
    decoding = decode_context(graph, names, units, emitter)  # the prefill goes into the units
    ctx = module_context(
        graph,
        source_text,
        source_name,
        names,
        decoding.pop("triton_units"),
        ref_units=decoding.pop("reference_units"),
        extra={
            "kernel_count": len(plan.groups),
            "reference_ops": tuple(kernels.reference_ops),
            "input_rules": input_rules(graph),
            **decoding,
        },
    )
    return ctx, kernels
