"""Graph-to-graph passes: the registry, the default pipeline and the pass manager.

Importing this package registers every pass (`PASSES`, name -> pass). `DEFAULT_PIPELINE` is the
ordered list `sparkc compile` runs; `PassManager(names, ...).run(graph)` runs a list of names.
`fuse` (the fusion analysis) lives beside the passes but is not one: it is the pipeline's named
`fuse` stage, which annotates the graph with kernel groups after the passes have run.
"""

from . import canonicalize, cse, dce  # noqa: F401  (registration happens at import)
from .base import DEFAULT_PIPELINE, PASSES, Pass, register
from .dce import DeadInstance, dead_instances
from .manager import PassManager, PassStats, check_pass_names

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "DeadInstance",
    "Pass",
    "PassManager",
    "PassStats",
    "check_pass_names",
    "dead_instances",
    "register",
]
