"""The abstract syntax tree of a `.spark` file, and its canonical text dump.

Produced by `sparkc.frontend.parser.parse` and consumed by `sparkc.frontend.check`. Every node is
a frozen dataclass carrying the `Span` of its source text (from the first to the last character,
brackets included), so that any later diagnostic can point at exactly what the user wrote.

`dump(module)` is the `--emit ast` text form: an indented S-expression, one node per line, each
with its `@line:col` position, made to be diffed and stored in golden files.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnostics import Span

# --------------------------------------------------------------------------------------------
# Expressions


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class IntLit:
    value: int
    text: str
    span: Span


@dataclass(frozen=True)
class FloatLit:
    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class StringLit:
    value: str
    span: Span


@dataclass(frozen=True)
class BoolLit:
    value: bool
    span: Span


@dataclass(frozen=True)
class NoneLit:
    span: Span


@dataclass(frozen=True)
class BinOp:
    """`left op right` with op one of + - * / //."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Field:
    """`value.name`: one output of a multi-output op."""

    value: Expr
    name: str
    name_span: Span
    span: Span


@dataclass(frozen=True)
class PosArg:
    value: Expr
    span: Span


@dataclass(frozen=True)
class KwArg:
    name: str
    name_span: Span
    value: Expr
    span: Span


Arg = PosArg | KwArg


@dataclass(frozen=True)
class Call:
    """`func(args)`: a built-in op, a block, or `basis(...)`."""

    func: str
    func_span: Span
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True)
class Repeat:
    """`repeat(count) Block(args)`: `count` chained copies of a one-in, one-out block."""

    count: Expr
    call: Call
    span: Span


Expr = (
    Name | IntLit | FloatLit | StringLit | BoolLit | NoneLit | BinOp | Neg | Field | Call | Repeat
)

# --------------------------------------------------------------------------------------------
# Statements and definitions


@dataclass(frozen=True)
class TypeExpr:
    """`float[B, N, d]`: a dtype spelling and dimension expressions."""

    dtype: str
    dtype_span: Span
    dims: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class InputDecl:
    name: str
    name_span: Span
    type: TypeExpr
    span: Span


@dataclass(frozen=True)
class Target:
    name: str
    span: Span

    @property
    def is_discard(self) -> bool:
        return self.name == "_"


@dataclass(frozen=True)
class Let:
    """`a = expr` (is_tuple False) or `a, b, _ = expr` (is_tuple True)."""

    targets: tuple[Target, ...]
    is_tuple: bool
    value: Expr
    span: Span


@dataclass(frozen=True)
class Output:
    """`output name` (value None: export a binding) or `output name = expr`."""

    name: str
    name_span: Span
    value: Expr | None
    span: Span


@dataclass(frozen=True)
class Loss:
    name: str
    name_span: Span
    value: Expr
    weight: Expr | None
    span: Span


@dataclass(frozen=True)
class Return:
    values: tuple[Expr, ...]
    span: Span


Stmt = InputDecl | Let | Output | Loss | Return


@dataclass(frozen=True)
class HyperParam:
    name: str
    name_span: Span
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class ModelDef:
    name: str
    name_span: Span
    params: tuple[HyperParam, ...]
    body: tuple[Stmt, ...]
    span: Span

    kind = "model"


@dataclass(frozen=True)
class BlockDef:
    name: str
    name_span: Span
    params: tuple[HyperParam, ...]
    body: tuple[Stmt, ...]
    span: Span

    kind = "block"


Definition = ModelDef | BlockDef


@dataclass(frozen=True)
class Module:
    filename: str
    definitions: tuple[Definition, ...]
    span: Span

    @property
    def models(self) -> tuple[ModelDef, ...]:
        return tuple(d for d in self.definitions if isinstance(d, ModelDef))

    @property
    def blocks(self) -> tuple[BlockDef, ...]:
        return tuple(d for d in self.definitions if isinstance(d, BlockDef))


# --------------------------------------------------------------------------------------------
# Canonical dump


def _pos(span: Span) -> str:
    return f"@{span.line}:{span.col}"


def _q(text: str) -> str:
    """Quote user text so that a name can never be confused with the dump's own syntax."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float(v: float) -> str:
    return repr(v)


# Each entry gives (head atoms, children) of one node kind; the dump is generic over this table.
_Parts = tuple[list[str], list[object]]


def _parts(node: object) -> _Parts:
    match node:
        case Module():
            return [], list(node.definitions)
        case ModelDef() | BlockDef():
            return [node.name], [("params", list(node.params)), ("body", list(node.body))]
        case HyperParam():
            return [node.name], [] if node.default is None else [node.default]
        case InputDecl():
            return [node.name], [node.type]
        case TypeExpr():
            return [node.dtype], list(node.dims)
        case Let():
            names = [t.name for t in node.targets]
            return ["(" + " ".join(names) + ")" if node.is_tuple else names[0]], [node.value]
        case Output():
            return [node.name], [] if node.value is None else [node.value]
        case Loss():
            kids: list[object] = [node.value]
            if node.weight is not None:
                kids.append(("weight", [node.weight]))
            return [node.name], kids
        case Return():
            return [], list(node.values)
        case Name():
            return [node.id], []
        case IntLit():
            return [str(node.value)], []
        case FloatLit():
            return [_float(node.value)], []
        case StringLit():
            return [_q(node.value)], []
        case BoolLit():
            return ["true" if node.value else "false"], []
        case NoneLit():
            return [], []
        case BinOp():
            return [node.op], [node.left, node.right]
        case Neg():
            return [], [node.operand]
        case Field():
            return [node.name], [node.value]
        case Call():
            return [node.func], list(node.args)
        case PosArg():
            return [], [node.value]
        case KwArg():
            return [node.name], [node.value]
        case Repeat():
            return [], [("count", [node.count]), node.call]
    raise TypeError(f"not an AST node: {type(node).__name__}")


_TAGS = {
    Module: "module",
    ModelDef: "model",
    BlockDef: "block",
    HyperParam: "hyper",
    InputDecl: "input",
    TypeExpr: "type",
    Let: "let",
    Output: "output",
    Loss: "loss",
    Return: "return",
    Name: "name",
    IntLit: "int",
    FloatLit: "float",
    StringLit: "string",
    BoolLit: "bool",
    NoneLit: "none",
    BinOp: "binop",
    Neg: "neg",
    Field: "field",
    Call: "call",
    PosArg: "arg",
    KwArg: "kwarg",
    Repeat: "repeat",
}


def dump(module: Module) -> str:
    """The canonical, deterministic text form of a module (ends with a newline).

    Iterative, so that the deepest expression the parser accepts cannot overflow the stack."""
    out: list[str] = []
    # Work items: ("open", node, indent) | ("group", label, items, indent) | ("close", indent)
    stack: list[tuple] = [("node", module, 0)]
    while stack:
        item = stack.pop()
        if item[0] == "close":
            out[-1] += ")"
            continue
        if item[0] == "group":
            _, label, items, indent = item
            out.append("  " * indent + f"({label}")
            if not items:
                out[-1] += ")"
                continue
            stack.append(("close",))
            stack.extend(("node", c, indent + 1) for c in reversed(items))
            continue
        _, node, indent = item
        atoms, kids = _parts(node)
        head = " ".join([_TAGS[type(node)], *atoms])
        span = getattr(node, "span", None)
        if span is not None and not isinstance(node, Module):
            head += " " + _pos(span)
        out.append("  " * indent + "(" + head)
        if not kids:
            out[-1] += ")"
            continue
        stack.append(("close",))
        for kid in reversed(kids):
            if isinstance(kid, tuple):
                stack.append(("group", kid[0], kid[1], indent + 1))
            else:
                stack.append(("node", kid, indent + 1))
    return "\n".join(out) + "\n"


def walk_expr(expr: Expr):
    """Every sub-expression of `expr` (itself first), without recursion."""
    stack: list[Expr] = [expr]
    while stack:
        e = stack.pop()
        yield e
        match e:
            case BinOp():
                stack += [e.right, e.left]
            case Neg():
                stack.append(e.operand)
            case Field():
                stack.append(e.value)
            case Call():
                stack += [a.value for a in reversed(e.args)]
            case Repeat():
                stack += [e.call, e.count]


def stmt_exprs(stmt: Stmt) -> tuple[Expr, ...]:
    """The expressions a statement evaluates, in source order."""
    match stmt:
        case InputDecl():
            return stmt.type.dims
        case Let():
            return (stmt.value,)
        case Output():
            return () if stmt.value is None else (stmt.value,)
        case Loss():
            return (stmt.value,) if stmt.weight is None else (stmt.value, stmt.weight)
        case Return():
            return stmt.values
    return ()
