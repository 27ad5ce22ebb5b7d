"""Turning an experiment's runs into its result files: JSON, a markdown table and a PNG plot.

Consumes a `Report` (the experiment's question, configuration, compiled variants, the metric
columns and one entry per (variant, seed) run) and produces, under the output folder,
`<name>.json` (everything, plus the per-variant summary: mean and sample standard deviation
over seeds; `from_json` reads it back and `merge` joins runs made with other seeds or other
lengths), `<name>.md` (one table row per variant, cells `mean ± sd`) and `<name>.png` (one
panel per plot, a line per variant with the spread as error bars) when matplotlib is
importable; without it the plot is skipped with a one-line notice. Non-finite numbers are
written as JSON `null` and shown as `n/a`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .metrics import mean_spread


@dataclass(frozen=True)
class Column:
    """A metric: `key` in each run's metrics, `label` its table heading, and for plotting the
    panel it belongs to (`panel`, a key of `Report.plots`) and its x value there."""

    key: str
    label: str
    panel: str | None = None
    x: float | None = None
    digits: int = 3
    # The metric measures the machine (time, memory), not the model: runs of different devices
    # never join in one column of it (see `merge`).
    timing: bool = False


@dataclass
class Report:
    name: str
    question: str
    config: dict[str, Any]
    variants: list[dict[str, Any]]
    columns: list[Column]
    plots: dict[str, tuple[str, str]]  # panel -> (x axis label, y axis label)
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_run(self, variant: str, seed: int, metrics: dict[str, float], train: dict) -> None:
        missing = [c.key for c in self.columns if c.key not in metrics]
        if missing:
            raise KeyError(f"run of {variant!r} lacks metrics {missing}")
        self.runs.append({"variant": variant, "seed": seed, "metrics": metrics, "train": train})

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """variant -> metric key -> {mean, sd, n} over the seeds that ran."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for v in self.variants:
            runs = [r for r in self.runs if r["variant"] == v["label"]]
            cells = {}
            for c in self.columns:
                vals = [r["metrics"][c.key] for r in runs if math.isfinite(r["metrics"][c.key])]
                mean, sd = mean_spread(vals)
                cells[c.key] = {"mean": mean, "sd": sd, "n": len(vals)}
            out[v["label"]] = cells
        return out


def from_json(data: dict[str, Any]) -> Report:
    """The `Report` a `<name>.json` file holds (null metrics read back as NaN)."""
    columns = [
        Column(c["key"], c["label"], c["panel"], c["x"], c.get("digits", 3), c.get("timing", False))
        for c in data["columns"]
    ]
    report = Report(
        data["experiment"],
        data["question"],
        data["config"],
        data["variants"],
        columns,
        {k: tuple(v) for k, v in data["plots"].items()},
        notes=list(data["notes"]),
    )
    for run in data["runs"]:
        metrics = {k: math.nan if v is None else v for k, v in run["metrics"].items()}
        report.add_run(run["variant"], run["seed"], metrics, run["train"])
    return report


# Settings naming where a run ran rather than what it computed: the reference path on the CPU
# and the kernels on a GPU compute the same function, so their runs may join (`merge`).
MACHINE_SETTINGS = ("device", "path")


def merged_config(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings of joined reports: equal values stay; list settings that differ (the
    lengths or counts each report ran) become their sorted union; differing machine settings
    (`MACHINE_SETTINGS`) are listed joined by " + "; anything else differing is a ValueError."""
    out: dict[str, Any] = {}
    for key in configs[0]:
        values = [c.get(key) for c in configs]
        if all(v == values[0] for v in values):
            out[key] = values[0]
        elif all(isinstance(v, (list, tuple)) for v in values):
            out[key] = sorted({x for v in values for x in v})
        elif key in MACHINE_SETTINGS:
            out[key] = " + ".join(dict.fromkeys(map(str, values)))
        else:
            raise ValueError(f"cannot merge: the setting {key!r} differs")
    if any(set(c) != set(configs[0]) for c in configs):
        raise ValueError("cannot merge: the settings differ")
    return out


def merged_columns(reports: list[Report]) -> list[Column]:
    """The union of the reports' columns, grouped by metric (the key before its first space,
    in order of first appearance) and ordered by x within a metric."""
    found: dict[str, Column] = {}
    for report in reports:
        for c in report.columns:
            if found.setdefault(c.key, c) != c:
                raise ValueError(f"cannot merge: column {c.key!r} differs")
    families = list(dict.fromkeys(key.split(" ")[0] for key in found))
    order = {key: i for i, key in enumerate(found)}

    def rank(c: Column) -> tuple:
        x = c.x if c.x is not None else math.inf
        return (families.index(c.key.split(" ")[0]), x, order[c.key])

    return sorted(found.values(), key=rank)


def merge(reports: list[Report]) -> Report:
    """One report from reports of the same experiment and variants: runs with other seeds
    (one seed per command), or of other lengths or counts of a list setting (`--set
    lengths=16384,`), whose metrics and training records join those of the same variant and
    seed. Runs of different devices join too (their quality metrics measure the same
    function); each run's `train` record then names its device, and a note says so. ValueError
    when the experiments, variants or other settings differ, when devices differ and a column
    is a timing, when a (variant, seed) measured the same metric twice, or when a run lacks a
    column."""
    first = reports[0]
    for other in reports[1:]:
        if other.name != first.name or other.variants != first.variants:
            raise ValueError("cannot merge: the experiments or their variants differ")
    devices = list(dict.fromkeys(str(r.config.get("device")) for r in reports))
    if len(devices) > 1:
        timed = [c.label for r in reports for c in r.columns if c.timing]
        if timed:
            raise ValueError(
                f"cannot merge runs of different devices ({', '.join(devices)}): the column "
                f"{timed[0]!r} measures the machine"
            )
    merged = Report(
        first.name,
        first.question,
        merged_config([r.config for r in reports]),
        first.variants,
        merged_columns(reports),
        {k: v for r in reports for k, v in r.plots.items()},
    )
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for report in reports:
        for run in report.runs:
            key = (run["variant"], run["seed"])
            have = runs.setdefault(key, {"metrics": {}, "train": {}})
            if set(have["metrics"]) & set(run["metrics"]) or set(have["train"]) & set(run["train"]):
                raise ValueError(f"cannot merge: {key[0]!r} seed {key[1]} occurs twice")
            have["metrics"].update(run["metrics"])
            have["train"].update(run["train"])
            if len(devices) > 1:
                have["train"]["device"] = report.config.get("device")
        merged.notes += [n for n in report.notes if n not in merged.notes]
    if len(devices) > 1:
        merged.notes.append(
            f"The runs ran on different devices ({', '.join(devices)}; each run's `train` record "
            "in the JSON names its own). The reference path and the kernels compute the same "
            "function, so the metrics above join; training seconds and tokens/s are per run."
        )
    for (variant, seed), run in runs.items():
        try:
            merged.add_run(variant, seed, run["metrics"], run["train"])
        except KeyError as err:
            raise ValueError(f"cannot merge: seed {seed} of {variant!r}: {err.args[0]}") from None
    return merged


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def cell(stats: dict[str, float], digits: int) -> str:
    mean, sd = stats["mean"], stats["sd"]
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def setting(value: Any) -> str:
    """A settings value as `--set` takes it (a list as `a,b,c`)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) + ("," if len(value) == 1 else "")
    return str(value)


def markdown(report: Report) -> str:
    """The markdown table of `report` (with a heading line and the run's settings)."""
    summary = report.summary()
    seeds = sorted({r["seed"] for r in report.runs})
    cfg = ", ".join(f"{k}={setting(v)}" for k, v in report.config.items())
    lines = [
        f"### {report.name}",
        "",
        report.question,
        "",
        f"Settings: {cfg}. Mean ± sample standard deviation over seeds {seeds}.",
        "",
    ]
    head = ["variant", "parameters", "path", *(c.label for c in report.columns)]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for v in report.variants:
        path = report.config.get("path", "")
        if v["reference_ops"] and path.startswith("Triton"):
            path += " (reference rule: " + ", ".join(v["reference_ops"]) + ")"
        row = [v["label"], f"{v['parameters']:,}", path]
        row += [cell(summary[v["label"]][c.key], c.digits) for c in report.columns]
        lines.append("| " + " | ".join(row) + " |")
    if report.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in report.notes)
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> bool:
    """Draw the report's panels into `path`; False when matplotlib is not importable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summary = report.summary()

    def drawn(panel: str) -> bool:  # a panel with at least one finite mean (not peak memory
        return any(  # on the CPU)
            math.isfinite(summary[v["label"]][c.key]["mean"])
            for v in report.variants
            for c in report.columns
            if c.panel == panel
        )

    panels = [p for p in report.plots if drawn(p)]
    if not panels:
        return False
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        cols = [c for c in report.columns if c.panel == panel]
        xs = [c.x for c in cols]
        for v in report.variants:
            stats = [summary[v["label"]][c.key] for c in cols]
            ax.errorbar(
                xs,
                [s["mean"] for s in stats],
                yerr=[s["sd"] for s in stats],
                marker="o",
                capsize=3,
                label=v["label"],
            )
        if min(xs) > 0 and max(xs) >= 8 * min(xs):  # lengths, pair counts: a log axis
            ax.set_xscale("log", base=2)
        xlabel, ylabel = report.plots[panel]
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(report.name)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return True


def write(report: Report, out_dir: Path, stream: TextIO | None = None) -> dict[str, Path]:
    """Write `<name>.json`, `<name>.md` and (with matplotlib) `<name>.png` into `out_dir`;
    returns the paths written."""
    stream = stream or sys.stdout
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "experiment": report.name,
        "question": report.question,
        "config": report.config,
        "variants": report.variants,
        "columns": [
            {
                "key": c.key,
                "label": c.label,
                "panel": c.panel,
                "x": c.x,
                "digits": c.digits,
                "timing": c.timing,
            }
            for c in report.columns
        ],
        "plots": report.plots,
        "runs": report.runs,
        "summary": report.summary(),
        "notes": report.notes,
    }
    written = {"json": out_dir / f"{report.name}.json", "md": out_dir / f"{report.name}.md"}
    text = json.dumps(finite(data), indent=1, allow_nan=False)
    written["json"].write_text(text + "\n")
    written["md"].write_text(markdown(report))
    png = out_dir / f"{report.name}.png"
    if plot(report, png):
        written["png"] = png
    else:
        print(
            "plot skipped: matplotlib is not installed (pip install 'sparkc[experiments]')",
            file=stream,
        )
    return written
