"""Reference documentation of every op, generated from the op table (`sparkc.ir.ops.OPS`).

Consumes the op table (each op's exact definition and departures from its research origin are
its spec's `semantics`) and the prose of `sparkc.op_semantics` (conventions, cached decoding,
verified properties); produces the text printed by `sparkc ops` (`render_ops_text`) and the Markdown of `docs/ops.md`
(`render_ops_markdown`), the project's operator reference. Both renderers read one intermediate
form, `OpDoc`, built per op by `describe()`.

Parameter shapes depend on the input width, so they are not written by hand: `describe()` runs
each op's own shape and parameter rules (`instantiate`) on an example input (D = 64, heads = 4)
and on the hyperparameter variants its spec lists (`OpSpec.doc_variants`), so the document can
never drift from what the compiler builds. Update the checked-in file with

    python -m sparkc.tools.docs_gen > docs/ops.md
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ir.ops import (
    BINARY_OPERATORS,
    OPS,
    REQUIRED,
    UNARY_OPERATORS,
    Derived,
    Hyper,
    Init,
    OpSpec,
    ParamSpec,
    Port,
    default_text,
    instantiate,
)
from ..ir.types import DType, TensorType
from ..op_semantics import CONVENTIONS, DECODING, PROPERTIES, REFLEXIVE

UPDATE_COMMAND = "python -m sparkc.tools.docs_gen > docs/ops.md"

SECTION_TITLES: dict[str, str] = {
    "1": "Primitives",
    "2": "SPaR-K blocks",
    "3": "SplatFlow blocks",
    "4": "HSPMN blocks",
    "5": "SPARK procedural blocks",
}

# --------------------------------------------------------------------------------------------
# The example call every op is documented with

EXAMPLE_D = 64
EXAMPLE_HEADS = 4


def _t(dtype: DType, *shape: Any) -> TensorType:
    return TensorType(dtype, tuple(shape))


# Example input per port name (ports of the same name mean the same thing across ops).
_PORT_EXAMPLES: dict[str, TensorType] = {
    "x": _t(DType.FLOAT, "B", "N", EXAMPLE_D),
    "h": _t(DType.FLOAT, "B", "N", EXAMPLE_D),
    "a": _t(DType.FLOAT, "B", "N", EXAMPLE_D),
    "b": _t(DType.FLOAT, "B", "N", EXAMPLE_D),
    "tokens": _t(DType.I64, "B", "N"),
    "targets": _t(DType.I64, "B", "N"),
    "logits": _t(DType.FLOAT, "B", "N", 1000),
    "gate": _t(DType.FLOAT, "B", "N"),
    "meta": _t(DType.FLOAT, "B", 16),
    "ops": _t(DType.I32, "B", "T"),
    "args": _t(DType.FLOAT, "B", "T", EXAMPLE_D),
    "has_arg": _t(DType.BOOL, "B", "T"),
}
# A rank-4 port holds split heads.
_HEADS_EXAMPLE = _t(DType.FLOAT, "B", "N", EXAMPLE_HEADS, EXAMPLE_D // EXAMPLE_HEADS)

# Example values of hyperparameters that have no default, by hyperparameter name.
_REQUIRED_EXAMPLES: dict[str, Any] = {
    "out": 32,
    "hidden": 256,
    "heads": EXAMPLE_HEADS,
    "vocab": 1000,
    "dim": EXAMPLE_D,
    "max_len": 128,
}


def example_inputs(spec: OpSpec, optional: tuple[str, ...] = ()) -> dict[str, TensorType]:
    """Example input types for an op: every required port, plus the named optional ones."""
    out: dict[str, TensorType] = {}
    for port in spec.inputs:
        if port.optional and port.name not in optional:
            continue
        out[port.name] = _HEADS_EXAMPLE if port.rank == 4 else _PORT_EXAMPLES[port.name]
    return out


def example_hypers(spec: OpSpec) -> dict[str, Any]:
    """Values for the hyperparameters without a default (the others are filled by instantiate)."""
    return {h.name: _REQUIRED_EXAMPLES[h.name] for h in spec.hypers if h.default is REQUIRED}


# --------------------------------------------------------------------------------------------
# The intermediate form


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]


@dataclass(frozen=True)
class OpDoc:
    name: str
    section: str
    signature: str
    summary: str
    spelling: str  # how a program writes it: a call, or an operator
    flags: str
    example: str
    ports: tuple[Row, ...]
    hypers: tuple[Row, ...]
    outputs: tuple[Row, ...]
    params: tuple[Row, ...]
    semantics: str  # Markdown: the exact definition (`OpSpec.semantics`)


PORT_HEAD = ("name", "dtype", "shape", "example")
HYPER_HEAD = ("name", "type", "default", "constraint", "meaning")
OUTPUT_HEAD = ("name", "example type", "note")
PARAM_HEAD = ("name", "example shape", "kind", "init", "note")

_CHECK_TEXT: dict[str, str] = {
    "pos": "> 0",
    "nonneg": "≥ 0",
    "open01": "0 < v < 1",
    "prob": "0 ≤ v ≤ 1",
    "": "",
}

_INIT_TEXT: dict[str, Callable[[Init, ParamSpec], str]] = {
    "linear_weight": lambda i, p: f"nn.Linear weight: U(±1/√{p.fan_in})",
    "linear_bias": lambda i, p: f"nn.Linear bias: U(±1/√{p.fan_in})",
    "normal": lambda i, p: f"N(0, {_num(i.args[0])}²)",
    "trunc_normal": lambda i, p: f"N(0, {_num(i.args[0])}²) truncated at ±{_num(i.args[1])}",
    "ones": lambda i, p: "ones",
    "zeros": lambda i, p: "zeros",
    "const": lambda i, p: _num(i.args[0]),
    "randint": lambda i, p: f"randint(0, {i.args[0]}), generator seed {i.args[1]}",
}

_OPERATOR_SPELLING: dict[str, str] = {
    **{op: f"a {sym} b" for sym, op in BINARY_OPERATORS.items()},
    **{op: f"{sym}x" for sym, op in UNARY_OPERATORS.items()},
}


def _num(v: float) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _shape(t: TensorType) -> str:
    return f"{t.dtype.value}[{', '.join(str(d) for d in t.shape)}]"


def _port_shape(p: Port) -> str:
    if p.rank is not None:
        return f"rank {p.rank}"
    return f"rank ≥ {p.min_rank}" if p.min_rank else "any rank"


def _constraint(h: Hyper) -> str:
    parts = [_CHECK_TEXT[h.check]] if h.check else []
    if h.type == "choice":
        parts.append("one of " + ", ".join(h.choices))
    if h.nullable:
        parts.append("or none")
    return "; ".join(parts)


def _default(h: Hyper) -> str:
    if h.default is REQUIRED:
        return "required"
    text = default_text(h)
    return f"{text} (derived)" if isinstance(h.default, Derived) else text


def _sort_key(spec: OpSpec) -> tuple[int, ...]:
    return tuple(int(p) for p in spec.section.split("."))


def _param_rows(spec: OpSpec, hp: dict[str, Any]) -> tuple[Row, ...]:
    """Parameters with the defaults, then what each variant adds, drops or turns into a buffer."""
    base = instantiate(spec.name, example_inputs(spec), hp).params
    rows: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}

    def cells(p: ParamSpec) -> list[str]:
        kind = "parameter" if p.trainable else "buffer"
        return [
            p.name,
            "[" + ", ".join(str(d) for d in p.shape) + "]",
            kind,
            _INIT_TEXT[p.init.kind](p.init, p),
        ]

    for p in base:
        rows[p.name] = cells(p)
        notes[p.name] = []
    for variant in spec.doc_variants:
        vhp = {**hp, **dict(variant.hp)}
        got = {
            p.name: p
            for p in instantiate(spec.name, example_inputs(spec, variant.inputs), vhp).params
        }
        for name in rows:
            if name not in got:
                notes[name].append(f"absent with {variant.label}")
            elif got[name].trainable != (rows[name][2] == "parameter"):
                notes[name].append(
                    f"a {'parameter' if got[name].trainable else 'buffer'} with {variant.label}"
                )
        for name, p in got.items():
            if name not in rows:
                rows[name] = cells(p)
                notes[name] = [f"only with {variant.label}"]
    return tuple(Row((*rows[n], "; ".join(notes[n]))) for n in rows)


def describe(spec: OpSpec) -> OpDoc:
    hp = example_hypers(spec)
    inst = instantiate(spec.name, example_inputs(spec), hp)
    resolved = dict(inst.hp)
    flags = [f"category: {spec.category}"]
    if spec.causal(resolved) is not None:
        flags.append("causal by default" if spec.causal(resolved) else "not causal by default")
    if not spec.decodable(resolved):
        flags.append("no incremental decoding with the defaults")
    if spec.noise(resolved):
        flags.append("draws noise in training mode by default")
    call_args = [f"{n}: {_shape(t)}" for n, t in inst.inputs] + [f"{k}={v}" for k, v in hp.items()]
    example = f"{spec.name}({', '.join(call_args)})"
    return OpDoc(
        name=spec.name,
        section=spec.section,
        signature=spec.signature(),
        summary=spec.summary,
        spelling=_OPERATOR_SPELLING.get(spec.name, "call"),
        flags=" · ".join(flags),
        example=example,
        ports=tuple(
            Row(
                (
                    p.name + (" (optional)" if p.optional else ""),
                    p.dtype,
                    _port_shape(p),
                    _shape(example_inputs(spec, (p.name,))[p.name]),
                )
            )
            for p in spec.inputs
        ),
        hypers=tuple(
            Row((h.name, h.type, _default(h), _constraint(h), h.doc)) for h in spec.hypers
        ),
        outputs=tuple(
            Row((o.name, _shape(t), "auxiliary loss, summed into aux_loss" if o.is_loss else o.doc))
            for o, t in zip(spec.outputs, inst.outputs)
        ),
        params=_param_rows(spec, hp),
        semantics=spec.semantics,
    )


def grouped(names: list[str] | None = None) -> list[tuple[str, list[OpDoc]]]:
    """Op docs grouped by top-level section, sections in order, ops by section number."""
    specs = [OPS[n] for n in names] if names else list(OPS.values())
    groups: dict[str, list[OpSpec]] = {}
    for spec in sorted(specs, key=_sort_key):  # stable: table order within a section
        groups.setdefault(spec.section.split(".")[0], []).append(spec)
    return [(sec, [describe(s) for s in groups[sec]]) for sec in sorted(groups, key=int)]


# --------------------------------------------------------------------------------------------
# Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(head: tuple[str, ...], rows: tuple[Row, ...]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join(_md_escape(c) if c else "" for c in r.cells) + " |")
    return out


def _md_op(doc: OpDoc) -> list[str]:
    lines = [
        f"### `{doc.name}` (§{doc.section})",
        "",
        f"`{doc.signature}`",
        "",
        doc.summary + ".",
        "",
        doc.semantics,
    ]
    if doc.spelling != "call":
        lines += ["", f"Written with an operator: `{doc.spelling}`."]
    lines += ["", doc.flags + ".", "", f"Example: `{doc.example}`"]
    for title, head, rows in (
        ("Inputs", PORT_HEAD, doc.ports),
        ("Hyperparameters", HYPER_HEAD, doc.hypers),
        ("Outputs", OUTPUT_HEAD, doc.outputs),
        (
            "Parameters (state_dict names under the instance; shapes for the example)",
            PARAM_HEAD,
            doc.params,
        ),
    ):
        if rows:
            lines += ["", f"{title}:", "", *_md_table(head, rows)]
    return lines + [""]


def render_ops_markdown() -> str:
    lines = [
        "<!-- Generated from sparkc/ir/ops/ and sparkc/op_semantics.py by `"
        + UPDATE_COMMAND
        + "`. Do not edit. -->",
        "",
        "# sparkc ops",
        "",
        (
            "Every built-in op of the `.spark` language: what it computes, exactly, its inputs, "
            "hyperparameters (with defaults and constraints), outputs and parameters (with "
            "shapes and initialisers), and where it departs from the research code it comes "
            "from. The reference path and the generated kernels of a compiled module compute "
            "these functions, forward and backward, up to floating-point rounding. The tables "
            "and each op's definition are generated from the op table (`sparkc/ir/ops/`), the "
            "conventions and sections 5.6 and 6 from `sparkc/op_semantics.py`; choices this "
            "page leaves open are recorded in [ops_decisions.md](ops_decisions.md)."
        ),
        "",
        (
            f"Example shapes are computed by each op's own rules for an input `x: float[B, N, "
            f"{EXAMPLE_D}]` (D = {EXAMPLE_D}), `heads = {EXAMPLE_HEADS}` where an op needs heads, "
            "and default values for everything else. `B`, `N`, `T` are symbolic sizes bound at run "
            "time. The same list is printed by `sparkc ops`."
        ),
        "",
    ]
    groups = grouped()
    lines.append("Contents:")
    lines.append("")
    lines.append("- [§0 Conventions](#0-conventions)")
    for sec, docs in groups:
        names = ", ".join(f"[`{d.name}`](#{_anchor(d)})" for d in docs)
        lines.append(f"- §{sec} {SECTION_TITLES[sec]}: {names}")
    lines.append("- [§4.3 The reflexive stream](#43-the-reflexive-stream)")
    lines.append("- [§5.6 Cached decoding](#56-cached-decoding)")
    lines.append("- [§6 Verified properties](#6-verified-properties)")
    lines += ["", "## 0. Conventions", "", CONVENTIONS, ""]
    for sec, docs in groups:
        lines += [f"## {sec}. {SECTION_TITLES[sec]}", ""]
        for doc in docs:
            lines += _md_op(doc)
        if sec == "4":
            lines += ["### 4.3 The reflexive stream", "", REFLEXIVE, ""]
        if sec == "5":
            lines += ["### 5.6 Cached decoding", "", DECODING, ""]
    lines += ["## 6. Verified properties", "", PROPERTIES, ""]
    lines += [
        "## Decisions",
        "",
        (
            "Where this page leaves a choice open, the decision taken and its reason are "
            "recorded in [ops_decisions.md](ops_decisions.md)."
        ),
    ]
    return "\n".join(lines) + "\n"


def _anchor(doc: OpDoc) -> str:
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
    title = f"{doc.name} (§{doc.section})".lower()
    kept = "".join(c for c in title if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


# --------------------------------------------------------------------------------------------
# Plain text (sparkc ops)


def _text_table(head: tuple[str, ...], rows: tuple[Row, ...], indent: str) -> list[str]:
    # Drop columns that are empty in every row (notes, meanings) to keep lines short.
    keep = [i for i in range(len(head)) if any(r.cells[i] for r in rows) or i == 0]
    table = [tuple(head[i] for i in keep)] + [tuple(r.cells[i] for i in keep) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(keep))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]


def render_ops_text(names: list[str] | None = None) -> str:
    out: list[str] = []
    for sec, docs in grouped(names):
        out += [f"== §{sec} {SECTION_TITLES[sec]} ==", ""]
        for doc in docs:
            out.append(f"{doc.signature}    [§{doc.section}]")
            out.append(f"    {doc.summary}")
            out += ["    " + line if line else "" for line in doc.semantics.splitlines()]
            if doc.spelling != "call":
                out.append(f"    written: {doc.spelling}")
            out.append(f"    {doc.flags}")
            out.append(f"    example: {doc.example}")
            for title, head, rows in (
                ("inputs", PORT_HEAD, doc.ports),
                ("hyperparameters", HYPER_HEAD, doc.hypers),
                ("outputs", OUTPUT_HEAD, doc.outputs),
                ("parameters", PARAM_HEAD, doc.params),
            ):
                if rows:
                    out.append(f"    {title}:")
                    out += _text_table(head, rows, "      ")
            out.append("")
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render_ops_markdown())


if __name__ == "__main__":
    main()
