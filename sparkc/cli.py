"""The `sparkc` command line: check, compile, graph and ops.

Consumes argv; produces text on stdout (stage text forms, graphs, op reference), diagnostics on
stderr, and an exit code:

    0  success
    1  an error in the program (SparkError: rendered with file:line:col and a caret)
    2  a usage error (bad arguments, unreadable input file, unknown pass or stage)
    3  an internal compiler error (CompilerBug or any unexpected exception)

No Python traceback reaches the user unless `-v` or `SPARKC_DEBUG=1` asks for it. The CLI knows
no stage: it calls `sparkc.pipeline`, whose stage list is data.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from .diagnostics import CompilerBug, SparkError, did_you_mean
from .pipeline import (
    CompileOptions,
    UsageError,
    emit_names,
    run_pipeline,
    summarize_program,
    until,
)
from .version import __version__

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


# ------------------------------------------------------------------------------------------------
# -D name=value


_INT = re.compile(r"[+-]?[0-9][0-9_]*")
_FLOAT = re.compile(r"[+-]?([0-9][0-9_]*\.[0-9_]*|\.[0-9]+|[0-9][0-9_]*)([eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None}


def parse_define(text: str) -> tuple[str, Any]:
    """`name=value` with value an int, float, true/false, none, or an identifier (a choice)."""
    name, eq, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not eq or not _IDENT.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    if _INT.fullmatch(raw):
        return name, int(raw)
    if _FLOAT.fullmatch(raw):
        return name, float(raw)
    if raw in _WORDS:
        return name, _WORDS[raw]
    if _IDENT.fullmatch(raw):
        return name, raw
    raise argparse.ArgumentTypeError(
        f"bad value in '{text}': use an integer, a number, true/false, none or a name"
    )


# ------------------------------------------------------------------------------------------------
# Input files and output


class Session:
    """Sources read by this invocation (for rendering diagnostics) and the output streams."""

    def __init__(self, stdout: TextIO, stderr: TextIO):
        self.stdout = stdout
        self.stderr = stderr
        self.sources: dict[str, str] = {}

    def read(self, path: str) -> bytes:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise UsageError(f"cannot read '{path}': {reason}") from None
        # Kept decoded (undecodable bytes replaced) only for caret rendering; the parser gets
        # the raw bytes and reports encoding problems itself.
        self.sources[path] = data.decode("utf-8", errors="replace")
        return data

    def out(self, text: str) -> None:
        self.stdout.write(text if text.endswith("\n") or not text else text + "\n")

    def err(self, text: str) -> None:
        self.stderr.write(text if text.endswith("\n") else text + "\n")

    def write_output(self, data: str | bytes, path: str | None) -> None:
        """Write to a file (creating its folder) or to stdout; bytes go to the binary stream."""
        if path:
            p = Path(path)
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(data, bytes):
                    p.write_bytes(data)
                else:
                    p.write_text(data, encoding="utf-8")
            except OSError as err:
                raise UsageError(f"cannot write '{path}': {err.strerror or err}") from None
            self.err(f"wrote {path}")
        elif isinstance(data, bytes):
            self.stdout.flush()
            self.stdout.buffer.write(data)  # type: ignore[attr-defined]
            self.stdout.buffer.flush()  # type: ignore[attr-defined]
        else:
            self.out(data)


def _options(args: argparse.Namespace) -> CompileOptions:
    return CompileOptions(
        overrides=tuple(args.define or ()),
        model=args.model,
        passes=tuple(p for p in args.passes.split(",") if p)
        if getattr(args, "passes", None)
        else None,
        print_after=tuple(getattr(args, "print_after", None) or ()),
        time_passes=bool(getattr(args, "time_passes", False)),
        verify=not getattr(args, "no_verify", False),
        output_dir=getattr(args, "output", None) if args.command == "compile" else None,
        force=bool(getattr(args, "force", False)),
    )


# ------------------------------------------------------------------------------------------------
# Subcommands


def cmd_check(args: argparse.Namespace, io: Session) -> int:
    source = io.read(args.file)
    result = run_pipeline(source, args.file, _options(args), stop_after="check", sink=io.err)
    s = summarize_program(result.artefact)
    io.out(f"ok: {s.model} ({s.params} params, {s.ops} ops)")
    return EXIT_OK


def cmd_compile(args: argparse.Namespace, io: Session) -> int:
    if args.emit and args.output:
        raise UsageError("give either --emit STAGE (print a stage) or -o DIR (generate a package)")
    if not args.emit and not args.output:
        raise UsageError(f"compile needs --emit {{{','.join(emit_names())}}} or -o DIR")
    source = io.read(args.file)
    stop = args.emit or "codegen"
    result = run_pipeline(source, args.file, _options(args), stop_after=stop, sink=io.err)
    if result.text:
        io.out(result.text)
    return EXIT_OK


def _renderer(fmt: str) -> Callable[[Any], str | bytes]:
    from . import viz

    def draw(graph: Any) -> str | bytes:
        # After the fuse stage, kernel groups are drawn as coloured frames.
        plan = graph.meta.get("fusion")
        groups = plan.group_of() if plan is not None else None
        render = {"dot": viz.to_dot, "mermaid": viz.to_mermaid, "svg": viz.to_svg}[fmt]
        return render(graph, groups=groups)

    return draw


def cmd_graph(args: argparse.Namespace, io: Session) -> int:
    stop, options = until(args.after, _options(args))
    source = io.read(args.file)
    result = run_pipeline(source, args.file, options, stop_after=stop, sink=io.err)
    io.write_output(_renderer(args.format)(result.artefact), args.output)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace, io: Session) -> int:
    from .tools.bench import BenchOptions, parse_shape, run

    if bool(args.file) == bool(args.op):
        raise UsageError("bench needs a FILE or --op NAME (not both)")
    if args.file:
        io.read(args.file)  # a missing or unreadable file is a usage error, before any work
    try:
        shape = parse_shape(args.shape or "")
    except ValueError as err:
        raise UsageError(str(err)) from None
    opts = BenchOptions(
        path=args.file,
        op=args.op,
        op_hyper=dict(args.hp or ()),
        overrides=dict(args.define or ()),
        model=args.model,
        shape=shape,
        device=args.device,
        dtype=args.dtype,
        compile=not args.no_compile,
        modes=tuple(args.modes.split(",")),
        json_path=args.json,
        profile=args.profile,
        variants=tuple(args.variants.split(",")) if args.variants else None,
    )
    import torch

    try:
        run(opts, emit=io.out)
    except torch.OutOfMemoryError as err:
        # The shape asked for more device memory than there is: the user's choice, not a bug.
        first = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
        io.err(
            f"sparkc bench: out of device memory at --shape {args.shape}: {first}\n"
            "hint: a smaller --shape (or --variants without eager, whose attention "
            "materialises the score matrix)"
        )
        return EXIT_USER
    return EXIT_OK


def cmd_ops(args: argparse.Namespace, io: Session) -> int:
    from .ir.ops import OPS
    from .tools.docs_gen import render_ops_markdown, render_ops_text

    for name in args.names:
        if name not in OPS:
            hint = did_you_mean(name, OPS)
            raise UsageError(f"unknown op '{name}'" + (f"; {hint}" if hint else ""))
    if args.format == "markdown":
        if args.names:
            raise UsageError("--format markdown prints the whole reference; drop the op names")
        io.out(render_ops_markdown())
    else:
        io.out(render_ops_text(list(args.names) or None))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# The parser


def _add_common(p: argparse.ArgumentParser, *, program: bool = True) -> None:
    # SUPPRESS: a subcommand's default must not overwrite a `-v` given before the subcommand.
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the Python traceback of an internal error",
    )
    if not program:
        return
    p.add_argument("file", metavar="FILE", help="the .spark source file")
    _add_model_choice(p)
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the IR verifier after lowering and after each pass",
    )


def _add_model_choice(p: argparse.ArgumentParser) -> None:
    """-D overrides and --model: which model of the file, with which hyperparameters."""
    p.add_argument(
        "-D",
        dest="define",
        metavar="NAME=VALUE",
        action="append",
        type=parse_define,
        help="override a model hyperparameter (repeatable; the last value wins)",
    )
    p.add_argument("--model", metavar="NAME", help="the model to build (default: the last one)")


def _add_passes(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passes", metavar="P1,P2,...", help="run these passes instead of the default pipeline"
    )


_EPILOG = {
    "check": "example:\n  sparkc check examples/tiny_gpt.spark -D layers=4\n"
    "  ok: TinyGPT (... params, ... ops)",
    "compile": "examples:\n  sparkc compile examples/tiny_gpt.spark --emit ir\n"
    "  sparkc compile examples/spark_k.spark --emit opt --print-after cse --time-passes\n"
    "  sparkc compile examples/tiny_gpt.spark --emit fused\n"
    "  sparkc compile examples/tiny_gpt.spark -o build   # then: import build.tiny_gpt",
    "graph": "examples:\n  sparkc graph examples/tiny_gpt.spark --format dot | dot -Tsvg > g.svg\n"
    "  sparkc graph examples/hspmn.spark --format svg --after opt -o build/hspmn.svg",
    "bench": "examples (on a GPU machine):\n"
    "  sparkc bench examples/tiny_gpt.spark --shape B=8,N=1024 --json tiny.json\n"
    "  sparkc bench --op attention --hp heads=16 --shape B=4,N=4096,D=2048\n"
    "  sparkc bench examples/tiny_gpt.spark --shape B=2,N=64 --device cpu --dtype f32",
    "ops": "examples:\n  sparkc ops attention fk_attention\n"
    "  sparkc ops --format markdown > docs/ops.md",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparkc",
        description="Compile .spark sequence-model descriptions to Triton kernels and PyTorch modules.",
        epilog="Run 'sparkc COMMAND --help' for the options and an example of each command.",
    )
    parser.add_argument("--version", action="version", version=f"sparkc {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False,
        help="show the Python traceback of an internal error",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def subparser(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=_EPILOG[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = subparser("check", "check a program and report its size")
    _add_common(p)
    p.set_defaults(handler=cmd_check)

    p = subparser("compile", "run the compiler and print a stage, or generate a package")
    _add_common(p)
    p.add_argument("--emit", choices=emit_names(), help="print this stage's text form and stop")
    p.add_argument("-o", "--output", metavar="DIR", help="generate the Python package into DIR")
    p.add_argument(
        "--force",
        action="store_true",
        help="with -o: replace the package folder even if it holds files sparkc did not write",
    )
    _add_passes(p)
    p.add_argument(
        "--print-after",
        metavar="PASS",
        action="append",
        help="print the graph after this pass to stderr (repeatable; 'all': every pass)",
    )
    p.add_argument("--time-passes", action="store_true", help="report each pass's time on stderr")
    p.set_defaults(handler=cmd_compile)

    p = subparser("graph", "draw the IR graph (Graphviz dot, SVG or Mermaid)")
    _add_common(p)
    p.add_argument("--format", choices=("dot", "svg", "mermaid"), default="dot")
    p.add_argument(
        "--after",
        metavar="STAGE_OR_PASS",
        default="lower",
        help="draw the graph after 'lower' (default), 'opt' or a named pass",
    )
    _add_passes(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(handler=cmd_graph)

    p = subparser("bench", "time a model or one op: generated kernels vs eager and torch.compile")
    _add_common(p, program=False)  # -v only: FILE is optional here (--op), -D comes below
    p.add_argument("file", metavar="FILE", nargs="?", help="the .spark source file")
    p.add_argument("--op", metavar="NAME", help="benchmark one op on x: float[B, N, D] instead")
    p.add_argument(
        "--hp",
        metavar="NAME=VALUE",
        action="append",
        type=parse_define,
        help="a hyperparameter of --op (repeatable)",
    )
    _add_model_choice(p)
    p.add_argument(
        "--shape",
        metavar="B=8,N=2048,...",
        default="",
        help="sizes of the symbolic dimensions (and D= for --op)",
    )
    p.add_argument("--dtype", choices=("bf16", "f16", "f32"), default="bf16")
    p.add_argument(
        "--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available"
    )
    p.add_argument(
        "--modes", default="fwd,fwd+bwd", help="fwd, fwd+bwd, step (fwd+bwd+AdamW), comma-separated"
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile baselines")
    p.add_argument(
        "--variants",
        metavar="LIST",
        help="only these of sparkc, sparkc-graph, eager, compile, compile-max, compile-graph "
        "(comma-separated; compile-graph runs only when named)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the full report as JSON")
    p.add_argument(
        "--profile",
        metavar="TOP",
        type=int,
        default=0,
        help="profile each row (torch.profiler): print the TOP busiest kernels and how busy "
        "the device is",
    )
    p.set_defaults(handler=cmd_bench)

    p = subparser("ops", "list every built-in op with its signature and parameters")
    _add_common(p, program=False)
    p.add_argument("names", metavar="OP", nargs="*", help="only these ops")
    p.add_argument("--format", choices=("text", "markdown"), default="text")
    p.set_defaults(handler=cmd_ops)
    return parser


# ------------------------------------------------------------------------------------------------
# Entry point


def _debug(args: argparse.Namespace | None) -> bool:
    return bool(getattr(args, "verbose", False)) or os.environ.get("SPARKC_DEBUG", "") not in (
        "",
        "0",
    )


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    io = Session(stdout or sys.stdout, stderr or sys.stderr)
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        try:
            # argparse prints help and usage errors itself: route them to this session's streams.
            with redirect_stdout(io.stdout), redirect_stderr(io.stderr):
                args = parser.parse_args(argv)
        except SystemExit as exit_:  # argparse: --help/--version (0) or a usage error (2)
            return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
        return args.handler(args, io)
    except SparkError as err:
        io.err(err.render(io.sources))
        return EXIT_USER
    except UsageError as err:
        io.err(f"sparkc: error: {err}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        io.err("sparkc: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`sparkc ops | head`): nothing left to report to.
        _silence_stdout()
        return EXIT_OK
    except Exception as err:  # noqa: BLE001 - the last line of defence: never a bare traceback
        _report_internal(err, io, _debug(args))
        return EXIT_INTERNAL


def _report_internal(err: BaseException, io: Session, debug: bool) -> None:
    if isinstance(err, CompilerBug):
        io.err(f"sparkc: {err}")
    else:
        io.err(
            f"sparkc: internal compiler error: {type(err).__name__}: {err}\n"
            "This is a bug in sparkc, not in your program; please report it with the input file."
        )
    if debug:
        io.err("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    else:
        io.err("(run with -v or SPARKC_DEBUG=1 to see the traceback)")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
