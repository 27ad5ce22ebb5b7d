"""Hand-built IR graphs shared by the IR, pass and viz tests (no front end needed).

`tiny_gpt(layers)` is the transformer of docs/language.md; `zoo()` holds one instance of nearly
every op of the table (multi-output ops, aux losses, optional ports, a basis, a tied head), so a
test over it exercises the verifier, printer and renderers on every kind of node.
"""

from __future__ import annotations

from sparkc.ir.graph import Graph, Node, Value
from sparkc.ir.ops import OPS
from sparkc.ir.types import DType, TensorType

F = DType.FLOAT


def inp(g: Graph, name: str, dtype: DType, shape: tuple, source: str | None = None) -> Node:
    return g.add(
        "input",
        (),
        {"name": name, "source_dtype": source or dtype.value},
        (TensorType(dtype, tuple(shape)),),
    )


def const(g: Graph, value: float, scope: str = "") -> Node:
    dtype = F if isinstance(value, float) else DType.I64
    return g.add("const", (), {"value": value}, (TensorType(dtype, ()),), scope=scope)


def output(g: Graph, v: Value, name: str) -> Node:
    return g.add("output", (v,), {"name": name, "kind": "output"})


def loss(g: Graph, v: Value, name: str, weight: float = 1.0) -> Node:
    return g.add("output", (v,), {"name": name, "kind": "loss", "weight": weight})


def finish(g: Graph) -> Graph:
    """Add the aux_sum over every aux-loss output, as lowering does."""
    losses = [n.out(i) for n in g.topo_order() if n.op in OPS for i in OPS[n.op].loss_outputs]
    g.add("aux_sum", losses, types=(TensorType(F, ()),))
    return g


def op(g: Graph, name: str, scope: str, hp: dict | None = None, **ports: Value) -> Node:
    return g.add_instance(name, ports, hp or {}, scope)


def tiny_gpt(layers: int = 2, d: int = 32, vocab: int = 64) -> Graph:
    g = Graph("TinyGPT", (("vocab", vocab), ("d", d), ("layers", layers)))
    tokens = inp(g, "tokens", DType.I64, ("B", "N"), "int")
    targets = inp(g, "targets", DType.I64, ("B", "N"), "int")
    e = op(g, "embed", "tok", {"vocab": vocab, "dim": d}, tokens=tokens.out())
    h = op(g, "pos_embed", "x", {"max_len": 128}, x=e.out())
    for i in range(layers):
        s = f"h.{i}"
        n1 = op(g, "rmsnorm", f"{s}.h_rmsnorm", x=h.out())
        at = op(g, "attention", f"{s}.h_attention", {"heads": 4}, x=n1.out())
        h1 = op(g, "add", f"{s}.h", a=h.out(), b=at.out())
        n2 = op(g, "rmsnorm", f"{s}.out_rmsnorm", x=h1.out())
        m = op(g, "mlp", f"{s}.out_mlp", {"hidden": 4 * d}, x=n2.out())
        h = op(g, "add", f"{s}.out", a=h1.out(), b=m.out())
    nf = op(g, "rmsnorm", "logits_rmsnorm", x=h.out())
    logits = op(g, "linear", "logits", {"out": vocab}, x=nf.out())
    ce = op(g, "cross_entropy", "ce", logits=logits.out(), targets=targets.out())
    output(g, logits.out(), "logits")
    loss(g, ce.out(), "ce")
    return finish(g)


def zoo() -> Graph:
    d = 16
    g = Graph("Zoo", (("d", d),))
    tokens = inp(g, "tokens", DType.I64, ("B", "N"))
    x = inp(g, "x", F, ("B", "N", d), "bf16")
    meta = inp(g, "meta", F, ("B", 3))
    ops_ = inp(g, "ops", DType.I32, ("B", "T"))
    args = inp(g, "args", F, ("B", "T", d))
    has = inp(g, "has_arg", DType.BOOL, ("B", "T"))
    e = op(g, "embed", "tok", {"vocab": 50, "dim": d}, tokens=tokens.out())
    basis = (("freqs", 2), ("legendre", 1), ("over", "distance"), ("max_len", 64))
    a = op(
        g,
        "attention",
        "attn",
        {"heads": 4, "kv_heads": 2, "rope": True, "basis": dict(basis)},
        x=x.out(),
    )
    fk = op(g, "fk_attention", "fk", {"heads": 2, "hops": 3}, x=a.out())
    spd = op(g, "spd_router", "spd", {"gate_noise": True}, x=fk.out())
    st = op(g, "verifier_stack", "stack", {"stack": 4}, h=spd.out())
    sp = op(g, "splat_attention", "splat", {"splats": 4, "heads": 2}, x=spd.out())
    tr = op(g, "trajectory", "traj", x=sp.out())
    rt = op(g, "token_router", "router", x=tr.out())
    sq = op(g, "sqdk_attention", "sqdk", {"heads": 2}, x=tr.out(), gate=rt.out(1))
    cv = op(g, "conv1d", "conv", {"kernel": 3}, x=sq.out())
    sw = op(g, "swiglu", "sw", {"hidden": 32}, x=cv.out())
    rm = op(
        g,
        "routed_mlp",
        "rmlp",
        {"hidden": 32, "groups": 4, "active": 1, "route": "hash"},
        x=sw.out(),
        tokens=tokens.out(),
    )
    dp = op(g, "demopack_linear", "dp", {"out": d, "codewords": 8}, x=rm.out())
    lo = op(g, "lora_linear", "lora", {"out": d}, x=dp.out(), meta=meta.out())
    ln = op(g, "layernorm", "ln", x=lo.out())
    sh = op(g, "split_heads", "heads", {"heads": 2}, x=ln.out())
    ro = op(g, "rope", "rot", x=sh.out())
    mh = op(g, "merge_heads", "merge", x=ro.out())
    cat = op(g, "concat", "cat", a=mh.out(), b=st.out(0))
    sm = op(g, "softmax", "probs", x=cat.out())
    half = const(g, 0.5)
    sc = op(g, "mul", "scaled", a=sm.out(), b=half.out())
    ge = op(g, "gelu", "act", x=e.out())
    tape = op(
        g,
        "opcode_tape",
        "tape",
        {"budget": 8, "capacity": 4},
        ops=ops_.out(),
        args=args.out(),
        has_arg=has.out(),
    )
    mn = op(g, "mean", "m", x=tape.out(4))
    head = op(g, "linear", "head", {"out": 50, "tie": "tok"}, x=ge.out())
    ce = op(g, "cross_entropy", "ce", logits=head.out(), targets=tokens.out())
    output(g, sc.out(), "y")
    output(g, tape.out(0), "top")
    output(g, mn.out(), "checks_mean")
    loss(g, ce.out(), "ce", 0.5)
    return finish(g)
