"""The pass manager: runs a named pipeline of passes over a graph.

Consumes pass names (checked against `PASSES`), options and a `Graph`; rewrites the graph in
place and produces, through a text sink, what the options ask for: the canonical IR after chosen
passes (`--print-after PASS|all`) and a timing table (`--time-passes`). With `verify_each` the
IR verifier runs on the input graph and after every pass, so a pass that breaks an invariant is
named in the `CompilerBug` it raises.

Unknown pass names are user errors (E0901, with a did-you-mean), reported before anything runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..diagnostics import CompilerBug, Diagnostic, SparkError, did_you_mean
from ..ir.graph import Graph
from ..ir.printer import print_graph
from ..ir.verify import verify
from .base import DEFAULT_PIPELINE, PASSES

Sink = Callable[[str], None]


def _stderr(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


@dataclass
class PassStats:
    """What `--time-passes` reports for one pass name."""

    name: str
    runs: int = 0
    seconds: float = 0.0
    changed: int = 0  # runs that changed the graph


def check_pass_names(names: Iterable[str], option: str = "pass") -> None:
    """Raise SparkError E0901 listing every name that is not a registered pass."""
    diags = []
    for name in names:
        if name in PASSES:
            continue
        hint = did_you_mean(name, PASSES)
        known = "known passes: " + ", ".join(sorted(PASSES))
        diags.append(
            Diagnostic(
                "E0901",
                f"unknown {option} '{name}'",
                None,
                help=f"{hint} ({known})" if hint else known,
            )
        )
    if diags:
        raise SparkError(diags)


class PassManager:
    """Runs `names` (default: `DEFAULT_PIPELINE`) in order; each pass runs once per mention."""

    def __init__(
        self,
        names: Sequence[str] | None = None,
        verify_each: bool = False,
        print_after: Iterable[str] | str = (),
        time_passes: bool = False,
        sink: Sink | None = None,
    ):
        self.names = list(DEFAULT_PIPELINE if names is None else names)
        check_pass_names(self.names)
        wanted = [print_after] if isinstance(print_after, str) else list(print_after)
        if "all" in wanted:  # `--print-after all`, alone or among names
            self.print_after: set[str] = set(self.names)
        else:
            check_pass_names(wanted, "pass in --print-after")
            self.print_after = set(wanted)
        self.verify_each = verify_each
        self.time_passes = time_passes
        self.sink = sink or _stderr
        self.stats: list[PassStats] = []
        self.verify_seconds = 0.0
        self.verify_runs = 0

    def run(self, graph: Graph) -> Graph:
        """Run the pipeline on `graph` in place; returns the same graph."""
        stats = {name: PassStats(name) for name in self.names}
        self.stats = list(stats.values())
        if self.verify_each:
            self._verify(graph, "input to the pass pipeline")
        for name in self.names:
            p = PASSES[name]
            start = time.perf_counter()
            changed = p.run(graph)
            elapsed = time.perf_counter() - start
            if not isinstance(changed, bool):
                raise CompilerBug(f"pass '{name}' returned {changed!r}, not a bool", f"pass {name}")
            s = stats[name]
            s.runs += 1
            s.seconds += elapsed
            s.changed += changed
            if self.verify_each:
                self._verify(graph, f"pass {name}")
            if name in self.print_after:
                state = "changed" if changed else "unchanged"
                self.sink(f"// ----- IR after {name} ({state}) -----\n{print_graph(graph)}")
        if self.time_passes:
            self.sink(self.report())
        return graph

    def _verify(self, graph: Graph, stage: str) -> None:
        start = time.perf_counter()
        verify(graph, stage)
        self.verify_seconds += time.perf_counter() - start
        self.verify_runs += 1

    def report(self) -> str:
        """The `--time-passes` table of the last run."""
        rows = [(s.name, str(s.runs), f"{s.seconds * 1e3:.3f}", str(s.changed)) for s in self.stats]
        total = sum(s.seconds for s in self.stats)
        if self.verify_runs:
            rows.append(
                ("(verify)", str(self.verify_runs), f"{self.verify_seconds * 1e3:.3f}", "-")
            )
            total += self.verify_seconds
        rows.append(("total", "", f"{total * 1e3:.3f}", ""))
        head = ("pass", "runs", "ms", "changed")
        width = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        lines = ["===== pass timings ====="]
        for r in [head, *rows]:
            lines.append(
                f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}  "
                f"{r[3]:>{width[3]}}".rstrip()
            )
        return "\n".join(lines)
