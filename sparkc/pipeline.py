"""The compiler pipeline as data: an ordered list of named stages and the options that steer them.

Consumes a `.spark` source (text or raw bytes), its file name and `CompileOptions`; produces a
`StageResult`: the artefact of the last stage run (an AST, a checked `Program`, an IR `Graph`,
the generated files), its canonical text form where the stage has one, and every earlier
artefact by stage name.

    parse ─▶ check ─▶ lower ─▶ opt ─▶ fuse ─▶ codegen
    (ast)             (ir)     (opt)  (fused)

- parse: source → AST with spans (frontend/parser.py);
- check: names, hyperparameters and shapes → checked `Program` (frontend/check.py);
- lower: `Program` → IR graph, one node per op instance (lower/), verified when `verify` is on;
- opt: the pass pipeline (`passes.DEFAULT_PIPELINE`, or `--passes`) run by the `PassManager`;
- fuse: the fusion plan (kernel groups), stored on the graph as `graph.meta["fusion"]`;
- codegen: fused graph → the generated package's files (codegen/), written to `output_dir` when
  one is given; it needs the source text (embedded in the generated module) and raises
  `StageUnavailable` without it.

`STAGES` is the single list the CLI reads: `--emit` choices are the stages' `emit` names
(in parentheses above), the stage a command stops after is a name from this list, and a new
stage is added here, not in the CLI. `until` maps "the graph after X" (a stage or a pass name)
to where the pipeline stops.

Stage modules are imported lazily, so `sparkc ops` and `sparkc --version` never pay for lark,
networkx or the passes. This module imports nothing of the compiler at import time but
diagnostics.py; the API (api.py) and the CLI (cli.py) import it, never the reverse.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .diagnostics import SparkError, did_you_mean


class UsageError(Exception):
    """A bad command line or option (exit code 2): an unknown pass or stage, a missing file."""


class StageUnavailable(UsageError):
    """The requested stage cannot run with what it was given (code generation without the
    source text)."""


@dataclass(frozen=True)
class CompileOptions:
    """Everything that steers a compilation besides the source itself.

    overrides: model hyperparameter values (`-D name=value`), in command-line order.
    model: which model of the file to build (default: the last one).
    passes: the optimisation pipeline (pass names); None means `sparkc.passes.DEFAULT_PIPELINE`.
    print_after: passes after which the graph is printed to the sink ('all': after every pass).
    time_passes: report each pass's wall time to the sink.
    verify: run the IR verifier after lowering and after every pass.
    output_dir: where the `codegen` stage writes the generated package.
    """

    overrides: tuple[tuple[str, Any], ...] = ()
    model: str | None = None
    passes: tuple[str, ...] | None = None
    print_after: tuple[str, ...] = ()
    time_passes: bool = False
    verify: bool = True
    output_dir: str | None = None
    force: bool = False  # codegen may replace an output folder holding files it did not write

    def __post_init__(self) -> None:
        # Accept a Mapping or any sequence for convenience, store hashable tuples.
        ov = self.overrides
        pairs = tuple(ov.items()) if isinstance(ov, Mapping) else tuple(tuple(p) for p in ov)
        object.__setattr__(self, "overrides", pairs)
        if self.passes is not None:
            object.__setattr__(self, "passes", tuple(self.passes))
        object.__setattr__(self, "print_after", tuple(self.print_after))

    @property
    def override_dict(self) -> dict[str, Any]:
        """Overrides as a dict; a name given twice keeps its last value (like `-D` in C compilers)."""
        return dict(self.overrides)


Sink = Callable[[str], None]


@dataclass
class StageContext:
    """What a stage function sees besides its input artefact."""

    filename: str
    options: CompileOptions
    sink: Sink
    source: str | bytes | None = None


@dataclass(frozen=True)
class Stage:
    """One named step. `run(artefact, ctx)` returns the next artefact; `text` renders it."""

    name: str
    run: Callable[[Any, StageContext], Any]
    text: Callable[[Any], str] | None = None
    emit: str | None = None  # the `--emit` name of the text form, when the stage has one
    doc: str = ""


@dataclass(frozen=True)
class StageResult:
    stage: str
    artefact: Any
    text: str | None
    artefacts: tuple[tuple[str, Any], ...] = field(default=())

    def get(self, stage: str) -> Any:
        """The artefact an earlier stage produced (`result.get('check')` is the Program)."""
        for name, art in self.artefacts:
            if name == stage:
                return art
        raise KeyError(f"stage '{stage}' did not run")


# ------------------------------------------------------------------------------------------------
# Stage functions (each imports its implementation lazily)


def _parse(source: str | bytes, ctx: StageContext) -> Any:
    from .frontend import parser

    if isinstance(source, bytes):
        return parser.parse_bytes(source, ctx.filename)
    return parser.parse(source, ctx.filename)


def _dump_ast(module: Any) -> str:
    from .frontend import ast

    return ast.dump(module)


def _check(module: Any, ctx: StageContext) -> Any:
    from .frontend.check import check

    return check(module, ctx.options.override_dict, model=ctx.options.model)


def _lower(program: Any, ctx: StageContext) -> Any:
    from .lower import lower

    graph = lower(program)
    if ctx.options.verify:
        from .ir.verify import verify

        verify(graph, stage="lower")
    return graph


def _print_graph(graph: Any) -> str:
    from .ir.printer import print_graph

    return print_graph(graph)


def _optimise(graph: Any, ctx: StageContext) -> Any:
    from .passes import PassManager

    opts = ctx.options
    manager = PassManager(
        pass_names(opts),
        verify_each=opts.verify,
        print_after="all" if "all" in opts.print_after else list(opts.print_after),
        time_passes=opts.time_passes,
        sink=ctx.sink,
    )
    manager.run(graph)  # passes rewrite the graph in place
    return graph


def _fuse(graph: Any, ctx: StageContext) -> Any:
    from .passes.fuse import plan_fusion

    graph.meta["fusion"] = plan_fusion(graph)
    return graph


def _describe_fusion(graph: Any) -> str:
    return graph.meta["fusion"].describe(graph)


@dataclass(frozen=True)
class Generated:
    """What the codegen stage produced: the files, and where they were written (if anywhere)."""

    files: tuple[tuple[str, str], ...]
    path: Any = None
    summary: str = ""


def _codegen(graph: Any, ctx: StageContext) -> Any:
    from pathlib import Path

    from .codegen import generate

    if ctx.source is None:
        raise StageUnavailable("code generation needs the source text")
    source = ctx.source if isinstance(ctx.source, str) else ctx.source.decode("utf-8")
    files = generate(graph, source, Path(ctx.filename).name)
    plan = graph.meta["fusion"]
    summary = f"{len(plan.groups)} kernel groups"
    path = None
    if ctx.options.output_dir:
        from .codegen.names import package_stem
        from .codegen.writer import write_package

        path = write_package(
            ctx.options.output_dir, package_stem(ctx.filename), files, force=ctx.options.force
        )
        summary = f"wrote {path}: {summary}"
    return Generated(tuple(sorted(files.items())), path, summary)


def _codegen_text(generated: Any) -> str:
    return generated.summary


STAGES: list[Stage] = [
    Stage("parse", _parse, _dump_ast, emit="ast", doc="source text → AST with spans"),
    Stage("check", _check, doc="names, hyperparameters and shapes → checked Program"),
    Stage(
        "lower",
        _lower,
        _print_graph,
        emit="ir",
        doc="Program → IR graph (one node per op instance)",
    ),
    Stage("opt", _optimise, _print_graph, emit="opt", doc="IR graph after the pass pipeline"),
    Stage(
        "fuse",
        _fuse,
        _describe_fusion,
        emit="fused",
        doc="kernel groups: GEMM epilogues, pointwise chains, fused LM-head loss",
    ),
    Stage(
        "codegen",
        _codegen,
        _codegen_text,
        doc="fused graph → generated Python package (written to output_dir when given)",
    ),
]


# ------------------------------------------------------------------------------------------------
# Lookups


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES)


def emit_names() -> tuple[str, ...]:
    return tuple(s.emit for s in STAGES if s.emit)


def find_stage(name: str) -> int:
    """Index of a stage given its name or its emit name."""
    for i, s in enumerate(STAGES):
        if name in (s.name, s.emit):
            return i
    known = [*stage_names(), *emit_names()]
    hint = did_you_mean(name, known)
    raise UsageError(f"unknown stage '{name}'" + (f"; {hint}" if hint else ""))


def _check_passes(names: Sequence[str], option: str = "pass") -> None:
    """The pass registry's own name check, reported as a command-line (usage) error."""
    from .passes.manager import check_pass_names

    try:
        check_pass_names(names, option)
    except SparkError as err:
        raise UsageError(
            "; ".join(d.message + (f"; {d.help}" if d.help else "") for d in err.diagnostics)
        ) from None


def pass_names(options: CompileOptions) -> tuple[str, ...]:
    """The optimisation pipeline the options select, every name checked against the registry."""
    from .passes import DEFAULT_PIPELINE

    names = tuple(DEFAULT_PIPELINE) if options.passes is None else options.passes
    _check_passes(names)
    _check_passes([p for p in options.print_after if p != "all"], "pass in --print-after")
    return names


def until(after: str, options: CompileOptions) -> tuple[str, CompileOptions]:
    """Where to stop to get the graph "after X": a stage (`lower`/`ir`, `opt`, `fuse`) or a pass.

    For a pass, the pipeline runs the selected passes up to and including its first occurrence.
    Returns the stage to stop after and the options to run with.
    """
    # Only stages whose artefact is a graph (their text form is the IR printer) qualify.
    graph_stages = [s for s in STAGES if s.text in (_print_graph, _describe_fusion)]
    if any(after in (s.name, s.emit) for s in graph_stages):
        return after, options
    from .passes import PASSES

    if after not in PASSES:
        graphs = [s.name for s in graph_stages]
        hint = did_you_mean(after, [*graphs, *PASSES])
        raise UsageError(
            f"unknown stage or pass '{after}'"
            + (f"; {hint}" if hint else "")
            + f" (stages: {', '.join(graphs)}; passes: {', '.join(sorted(PASSES))})"
        )
    names = pass_names(options)
    if after not in names:
        raise UsageError(f"pass '{after}' is not in the pipeline ({', '.join(names) or 'empty'})")
    prefix = names[: names.index(after) + 1]
    return "opt", replace(options, passes=prefix)


def _no_sink(_: str) -> None:
    pass


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while the stages run. The stages allocate
    millions of small objects that stay alive until the end (AST, program, IR nodes), and each
    automatic collection walks all of them: at 3,000 layers lowering took 2.5 s with it and
    1.0 s without. The stages make little cyclic garbage; the collector runs again after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_pipeline(
    source: str | bytes,
    filename: str,
    options: CompileOptions | None = None,
    stop_after: str = "opt",
    sink: Sink | None = None,
) -> StageResult:
    """Run the stages in order up to `stop_after` (a stage name or an emit name).

    Raises SparkError for errors in the program, UsageError for bad options, CompilerBug for
    broken invariants.
    """
    options = options or CompileOptions()
    last = find_stage(stop_after)
    if last >= find_stage("opt"):
        pass_names(options)  # report a misspelt pass before spending time on the program
    ctx = StageContext(filename, options, sink or _no_sink, source)
    artefact: Any = source
    done: list[tuple[str, Any]] = []
    with collector_paused():
        for stage in STAGES[: last + 1]:
            artefact = stage.run(artefact, ctx)
            done.append((stage.name, artefact))
    stage = STAGES[last]
    text = stage.text(artefact) if stage.text else None
    return StageResult(stage.name, artefact, text, tuple(done))


@dataclass(frozen=True)
class GraphSummary:
    """Counts printed by `sparkc check` and the demo."""

    model: str
    params: int  # trainable parameter elements
    buffers: int  # non-trainable elements (index tables)
    ops: int  # op nodes (inputs, params, constants and outputs excluded)
    op_counts: tuple[tuple[str, int], ...]  # per op name, sorted by name


def summarize_program(program: Any) -> GraphSummary:
    """The counts of `summarize(lower(program))` read from the checked program itself (one op
    node per op instance, the parameters each instance owns), so `sparkc check` need not build
    the IR graph: a 10,000-layer model checks without lowering 160,000 nodes."""
    from math import prod

    params = buffers = 0
    counts: dict[str, int] = {}
    for op in program.ops:
        counts[op.op] = counts.get(op.op, 0) + 1
        for _, p in op.params():
            if p.trainable:
                params += prod(p.shape)
            else:
                buffers += prod(p.shape)
    return GraphSummary(
        program.name, params, buffers, sum(counts.values()), tuple(sorted(counts.items()))
    )


def summarize(graph: Any) -> GraphSummary:
    from math import prod

    from .ir.graph import SPECIAL_OPS

    params = buffers = 0
    counts: dict[str, int] = {}
    for node in graph.topo_order():
        if node.op == "param":
            n = prod(node.types[0].shape)
            if node.attr("trainable", True):
                params += n
            else:
                buffers += n
        elif node.op not in SPECIAL_OPS:
            counts[node.op] = counts.get(node.op, 0) + 1
    return GraphSummary(
        graph.name, params, buffers, sum(counts.values()), tuple(sorted(counts.items()))
    )
