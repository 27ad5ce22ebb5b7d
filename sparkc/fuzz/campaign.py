"""Running fuzz programs through the CLI and classifying what happens.

Consumes program bytes (from `programs.py`); produces `Outcome`s and a `Report`. Each program
is written to one scratch file and checked in-process by `sparkc.cli.main(["check", FILE])` under
a time limit (interval-timer signals); a sample of the accepted ones is also compiled (`compile -o`) and the
package imported. Outcome kinds:

    success       exit 0
    diagnostic    exit 1, rendered `FILE:LINE:COL: error[E....]` with a caret under the source
                  line (when that line exists) and a `= help:` line (E0702/E0703, about the
                  output folder, name its path instead of a source line)
    incomplete    exit 1 but the diagnostic lacks its location, caret or help
    usage         exit 2 (the CLI blamed its arguments)
    internal      exit 3 (an internal compiler error, reported as one)
    traceback     an exception escaped `main`, or "Traceback" was printed without -v
    hang          still running after the time limit (CPU seconds; `time_limit`)
    import-error  a compiled package failed to import
    injected      an injection payload ran (its marker file exists)
    header-text   program-derived text on line 1 or 2 of a generated file (attacks.py)
    nondeterministic  two processes generated different files for the same program

Findings (every kind except success and diagnostic) are grouped by a signature (kind and the
first line of the message with numbers and paths blanked) and reduced to a small reproducer by
greedy deletion of lines, tokens and characters while the signature stays the same.
"""

from __future__ import annotations

import importlib
import io
import re
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

GOOD = ("success", "diagnostic")


class Timeout(BaseException):
    """Raised by the alarm inside the program under test (never caught by the CLI)."""


WALL_FACTOR = 4.0


@contextmanager
def time_limit(seconds: float):
    """Raise Timeout after `seconds` of this process's CPU time (so a loaded machine does not
    turn slow into hung), or after WALL_FACTOR times as long on the clock (a sleep or a wait).
    Signals reach Python code only between bytecodes: a C call that never returns is not cut."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise Timeout()

    previous = {sig: signal.signal(sig, on_alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * WALL_FACTOR)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Outcome:
    kind: str
    detail: str = ""
    rc: int | None = None
    stderr: str = ""

    @property
    def signature(self) -> str:
        text = re.sub(r"'[^']*\.spark'|\S*/\S*", "PATH", self.detail)
        return f"{self.kind}: {re.sub(r'[0-9]+', 'N', text)[:160]}"


def run_cli(argv: list[str], limit_s: float) -> tuple[int | None, str, str, BaseException | None]:
    """`sparkc.cli.main(argv)` in-process: exit code, stdout, stderr, escaped exception."""
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with time_limit(limit_s):
            rc = main(argv, stdout=out, stderr=err)
    except BaseException as exc:  # noqa: BLE001 - the point is to see what escapes
        return None, out.getvalue(), err.getvalue(), exc
    return rc, out.getvalue(), err.getvalue(), None


_HEAD = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): error\[E\d{4}\]: ", re.MULTILINE)


def judge_diagnostic(stderr: str, source: bytes, path: str) -> str:
    """'' when every diagnostic in `stderr` is located (with a caret) and has help; else what is
    missing."""
    if re.match(r"error\[(E0702|E0703)\]: ", stderr):
        # The output folder: no source line to point at; the message names the path.
        return "" if "= help:" in stderr else "no help"
    heads = list(_HEAD.finditer(stderr))
    if not heads or not stderr.startswith(heads[0].group()):
        return "no location"
    lines = source.decode("utf-8", errors="replace").splitlines()
    missing = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(stderr)
        block = stderr[m.start() : end]
        if m.group("file") != path:
            missing.append("wrong file")
        line = int(m.group("line"))
        if 1 <= line <= len(lines) and lines[line - 1].strip() and "^" not in block:
            missing.append("no caret")
        if "= help:" not in block:
            missing.append("no help " + block.split("]", 1)[0].rsplit("[", 1)[-1])
    return ", ".join(sorted(set(missing)))


def classify(
    rc: int | None, stderr: str, exc: BaseException | None, source: bytes, path: str
) -> Outcome:
    if isinstance(exc, Timeout):
        return Outcome("hang", "over the time limit", None, stderr)
    if exc is not None:
        return Outcome("traceback", f"{type(exc).__name__}: {exc}".split("\n")[0], None, stderr)
    first = stderr.strip().split("\n")[0] if stderr.strip() else ""
    if "Traceback (most recent call last)" in stderr:
        return Outcome("traceback", first, rc, stderr)
    if rc == 0:
        return Outcome("success", "", rc, stderr)
    if rc == 1:
        missing = judge_diagnostic(stderr, source, path)
        if missing:
            return Outcome("incomplete", f"{missing}: {first}", rc, stderr)
        code = re.search(r"error\[(E\d{4})\]", stderr)
        return Outcome("diagnostic", code.group(1) if code else "", rc, stderr)
    if rc == 2:
        return Outcome("usage", first, rc, stderr)
    if rc == 3:
        return Outcome("internal", first.replace(path, "FILE"), rc, stderr)
    return Outcome("internal", f"exit {rc}: {first}", rc, stderr)


def check_program(data: bytes, path: Path, limit_s: float = 5.0) -> Outcome:
    """Write `data` to `path` and run `sparkc check` on it in-process."""
    path.write_bytes(data)
    rc, _, err, exc = run_cli(["check", str(path)], limit_s)
    return classify(rc, err, exc, data, str(path))


def compile_and_import(
    data: bytes, path: Path, out_dir: Path, limit_s: float = 60.0
) -> tuple[Outcome, Path | None]:
    """`sparkc compile FILE -o OUT` in-process, then import the package; the outcome and the
    package folder (when one was written)."""
    from ..api import import_package
    from ..codegen.names import package_stem

    path.write_bytes(data)
    rc, _, err, exc = run_cli(["compile", str(path), "-o", str(out_dir)], limit_s)
    outcome = classify(rc, err, exc, data, str(path))
    if outcome.kind != "success":
        return outcome, None
    pkg = out_dir / package_stem(str(path))
    try:
        with time_limit(limit_s):
            module = import_package(pkg, f"sparkc_fuzz_{next(_IMPORTS)}")
            if (pkg / "kernels.py").is_file():  # imported lazily by the Triton path
                importlib.import_module(f"{module.__name__}.kernels")
    except Timeout:
        return Outcome("hang", "importing the package"), pkg
    except BaseException as exc:  # noqa: BLE001
        return Outcome("import-error", f"{type(exc).__name__}: {exc}".split("\n")[0]), pkg
    return outcome, pkg


_IMPORTS = iter(range(1 << 62))


# ------------------------------------------------------------------------------------------------
# Reduction and the report


def _units(data: bytes, level: int) -> list[bytes]:
    if level == 0:
        return data.splitlines(keepends=True)
    if level == 1:
        return re.findall(rb"\s+|[A-Za-z_0-9.]+|.", data, re.DOTALL)
    return [data[i : i + 1] for i in range(len(data))]


def reduce(data: bytes, same: Callable[[bytes], bool], budget_s: float = 60.0) -> bytes:
    """Greedy delta debugging: drop chunks of lines, then tokens, then bytes, while `same`."""
    deadline = time.monotonic() + budget_s
    for level in range(3):
        units = _units(data, level)
        size = max(1, len(units) // 2)
        while size >= 1 and time.monotonic() < deadline:
            i, changed = 0, False
            while i < len(units) and time.monotonic() < deadline:
                candidate = units[:i] + units[i + size :]
                if same(b"".join(candidate)):
                    units, changed = candidate, True
                else:
                    i += size
            if not changed:
                size //= 2
        data = b"".join(units)
    return data


@dataclass
class Finding:
    kind: str
    signature: str
    count: int = 0
    source: str = ""
    example: bytes = b""
    filename: str = ""
    stderr: str = ""
    reduced: bytes | None = None


@dataclass
class Report:
    programs: int = 0
    seconds: float = 0.0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: dict[str, Finding] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, source: str, outcome: Outcome, data: bytes, filename: str = "") -> None:
        row = self.counts.setdefault(outcome.kind, {})
        row[source] = row.get(source, 0) + 1
        if outcome.kind in GOOD:
            return
        f = self.findings.get(outcome.signature)
        if f is None:
            f = Finding(outcome.kind, outcome.signature, 0, source, data, filename, outcome.stderr)
            self.findings[outcome.signature] = f
        f.count += 1

    def bad(self) -> list[Finding]:
        return [f for f in self.findings.values() if f.kind not in GOOD]

    def table(self) -> str:
        sources = sorted({s for row in self.counts.values() for s in row})
        kinds = sorted(self.counts, key=lambda k: (k not in GOOD, k))
        width = max([len(k) for k in kinds] + [7])
        head = f"{'outcome':<{width}} " + " ".join(f"{s:>11}" for s in sources) + f" {'total':>9}"
        lines = [head, "-" * len(head)]
        for k in kinds:
            row = self.counts[k]
            cells = " ".join(f"{row.get(s, 0):>11}" for s in sources)
            lines.append(f"{k:<{width}} {cells} {sum(row.values()):>9}")
        rate = self.programs / self.seconds if self.seconds else 0.0
        lines.append(f"{self.programs} check-level programs in {self.seconds:.1f} s ({rate:.1f}/s)")
        return "\n".join(lines + self.notes)

    def to_json(self) -> dict:
        def text(b: bytes | None) -> str | None:
            return None if b is None else b.decode("utf-8", errors="backslashreplace")

        return {
            "programs": self.programs,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.programs / self.seconds, 2) if self.seconds else None,
            "counts": self.counts,
            "notes": self.notes,
            "findings": [
                {
                    "kind": f.kind,
                    "signature": f.signature,
                    "count": f.count,
                    "source": f.source,
                    "filename": f.filename,
                    "example": text(f.example),
                    "reduced": text(f.reduced),
                    "stderr": f.stderr[-2000:],
                }
                for f in self.findings.values()
            ],
        }
