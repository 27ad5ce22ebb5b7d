"""Code-generation rules of the SPaR-K blocks: `fk_attention`, `verifier_stack`, `spd_router`.

Consumes a fusion `Group` anchored at one of these ops (kinds "fk_attention", "verifier_stack"
and "spd_router", see `sparkc/passes/fuse.py`) and the `Emitter` of `codegen/emit.py`;
produces the lines of `_forward_triton` that run the block on generated kernels, and registers
the fragments they call:
- fk_attention: three projection GEMMs (`primitives_matmul.py.jinja`), the multi-hop kernels
  (`spark_k_fk_attention.py.jinja`) on the [B, N, H, d] views, and the output GEMM `wo`, which takes the
  group's epilogue (a residual add after the block fuses into it);
- verifier_stack: the per-token controller and encoder GEMMs (relu fused into `ctrl1`), ONE
  scan kernel per direction for the pointer and the memory (`spark_k_stack_scan.py.jinja`), then the
  signal head on concat(h, read) (relu and sigmoid fused into its GEMMs).

- spd_router (SPEC §2.2): GEMM chains with fused epilogues:
  - the two gate MLPs as GEMMs with `relu` and (sigmoid gate) `add:noise` + `sigmoid`
    epilogues; the softmax gate as a GEMM, a fused log-sigmoid (+ Gumbel noise) program and the
    softmax kernel;
  - `x_struct = basis(x) ⊙ g_s` and `x_pseudo = pseudo_proj(x) ⊙ g_p` as GEMMs whose epilogue is
    the gating product (`mul:`), so the ungated projections never reach memory;
  - the structure and pseudo processors as GEMMs with bias/relu epilogues and the layer-norm
    kernel; `reconstruct` on the concatenation;
  - the separation loss from two fused elementwise programs reduced by the deterministic mean
    kernel: `(pred − x)²` and `|z| · log(|z| + 1e-8)`.
  Training noise is drawn by the same helpers, in the same order and shapes, as the reference
  path, so both paths route identically from one seed.

`SPARK_K_RULES` (kind → rule) is assembled into `GROUP_RULES` by `codegen/rules/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..emit import Emitter, gemm_call, gemm_epilogue, last_dim, ports_of, project_heads
from ..render import pyrepr

if TYPE_CHECKING:
    from ...passes.fuse import Group


def rule_fk_attention(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    hp = node.attr_dict
    x = e.v(ports["x"])
    d_model = last_dim(e.graph, ports["x"])
    heads = int(hp["heads"])
    o = e.out(node)
    proj = project_heads(e, node, heads, heads)
    fn = e.kernels.use("spark_k_fk_attention.py.jinja", "fk", causal=bool(hp["causal"]))
    args = [
        proj["wq"],
        proj["wk"],
        proj["wv"],
        pyrepr(int(hp["hops"])),
        pyrepr(float(hp["beta"])),
        pyrepr(bool(hp["normalize"])),
    ]
    # A prefill also keeps every hop's P_k (the forward's P_1..P_{hops−1}; P_0 = V) for decoding.
    e.emit(
        f"{o}_r = {fn}({', '.join(args)})",
        prefill=f"{o}_r, {o}_ps = {fn}_prefill({', '.join(args)})",
    )
    e.fill(node, {"k": proj["wk"], "v": proj["wv"], "ps": f"{o}_ps"})
    steps, operands, last = gemm_epilogue(e, group, node.out())
    call = gemm_call(
        e, f"{o}_r", d_model, [e.v(params["wo.weight"])], e.v(params["wo.bias"]), steps, operands
    )
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


def rule_verifier_stack(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    hp = node.attr_dict
    h = e.v(ports["h"])
    d = last_dim(e.graph, ports["h"])
    elem, n_signals = int(hp["elem"]), int(hp["signals"])
    read, signals, pointer, loss = (e.out(node, i) for i in range(4))
    bn = f"{h}.shape[0], {h}.shape[1]"

    def gemm(x: str, k_in: int, layer: str, steps: list[str]) -> str:
        return gemm_call(
            e, x, k_in, [e.v(params[f"{layer}.weight"])], e.v(params[f"{layer}.bias"]), steps, []
        )

    e.emit(f"{read}_c = {gemm(h, d, 'ctrl1', ['act:relu'])}")
    e.emit(f"{read}_l = {gemm(f'{read}_c', d // 2, 'ctrl2', [])}.view({bn}, 3)")
    e.emit(f"{read}_e = {gemm(h, d, 'enc', [])}.view({bn}, {elem})")
    fn = e.kernels.use("spark_k_stack_scan.py.jinja", "stack", read=str(hp["read"]))
    # op_noise draws Gumbel noise in training only (SPEC §0): the module's _ctx says which.
    noisy = "_ctx.training" if hp["op_noise"] else "False"
    e.emit(
        f"{read}, {pointer}, {loss} = {fn}({read}_l, {read}_e, {pyrepr(int(hp['stack']))}, "
        f"{pyrepr(float(hp['penalty']))}, noisy={noisy})"
    )
    e.fill(node, {"logits": f"{read}_l", "e": f"{read}_e"})  # a prefill scans them into (M, p)
    e.emit(f"{read}_hr = _torch.cat([{h}, {read}], dim=-1)")
    e.emit(f"{read}_s = {gemm(f'{read}_hr', d + elem, 'head1', ['act:relu'])}")
    e.emit(
        f"{signals} = {gemm(f'{read}_s', d // 4, 'head2', ['act:sigmoid'])}.view({bn}, {n_signals})"
    )


# Fused elementwise programs (primitives_fused_pointwise.py.jinja contexts) with hand-derived gradients.
_SQUARED_DIFF = {
    "inputs": ["a0", "a1"],
    "scalars": [],
    "body": ["t0 = a0 - a1", "t1 = t0 * t0"],
    "outputs": [("o0", "t1")],
    "grad_inputs": ["g0"],
    "grad_body": ["dt0 = 2.0 * g0 * t0"],
    "grad_outputs": [("da0", "dt0"), ("da1", "-dt0")],
}
# |z| log(|z| + 1e-8); d/dz = sign(z) (log(|z| + 1e-8) + |z| / (|z| + 1e-8)), sign(0) = 0.
_ENTROPY_TERM = {
    "inputs": ["a0"],
    "scalars": [],
    "body": ["t0 = tl.abs(a0)", "t1 = t0 * tl.log(t0 + 1e-8)"],
    "outputs": [("o0", "t1")],
    "grad_inputs": ["g0"],
    "grad_body": [
        "s0 = tl.where(a0 > 0.0, 1.0, tl.where(a0 < 0.0, -1.0, 0.0))",
        "dt0 = g0 * s0 * (tl.log(t0 + 1e-8) + t0 / (t0 + 1e-8))",
    ],
    "grad_outputs": [("da0", "dt0")],
}
# log σ(ℓ) + noise, computed stably: min(ℓ, 0) − log(1 + exp(−|ℓ|)).
_LOGSIGMOID_PLUS = {
    "inputs": ["a0", "a1"],
    "scalars": [],
    "body": ["t0 = tl.minimum(a0, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(a0))) + a1"],
    "outputs": [("o0", "t0")],
    "grad_inputs": ["g0"],
    "grad_body": [],
    "grad_outputs": [("da0", "g0 * (1.0 - tl.sigmoid(a0))"), ("da1", "g0")],
}
_RELU = {
    "inputs": ["a0"],
    "scalars": [],
    "body": ["t0 = tl.maximum(a0, 0.0)"],
    "outputs": [("o0", "t0")],
    "grad_inputs": ["g0"],
    "grad_body": [],
    "grad_outputs": [("da0", "tl.where(a0 > 0.0, g0, 0.0)")],
}


def rule_spd_router(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    hp = node.attr_dict
    x = e.v(ports["x"])
    d = last_dim(e.graph, ports["x"])
    ds, dp = int(hp["struct_dim"]), int(hp["pseudo_dim"])
    y, xs, xp, loss = (e.out(node, i) for i in range(4))
    t = f"{y}_"  # prefix of this instance's temporaries

    def gemm(
        inp: str,
        k_in: int,
        layer: str,
        steps: list[str],
        operands: list[str] = (),
        bias: bool = True,
    ) -> str:
        b = e.v(params[f"{layer}.bias"]) if bias else None
        return gemm_call(e, inp, k_in, [e.v(params[f"{layer}.weight"])], b, steps, list(operands))

    def pointwise(ctx: dict, *args: str) -> str:
        return f"{e.kernels.use('primitives_fused_pointwise.py.jinja', 'pw', **ctx)}({', '.join(args)})"

    def layernorm(inp: str, prefix: str) -> str:
        fn = e.kernels.use("primitives_rownorm.py.jinja", "norm", kind="layer", residual=False)
        w, b = e.v(params[f"{prefix}.weight"]), e.v(params[f"{prefix}.bias"])
        return f"{fn}({inp}, {w}, {b}, 1e-05)"

    e.emit(f"{t}m = {x}.numel() // {d}")
    e.emit(f"{t}noisy = _self.training and {pyrepr(bool(hp['gate_noise']))}")
    gates = {}
    for side, width in (("s", ds), ("p", dp)):
        hidden = f"{t}h{side}"
        e.emit(f"{hidden} = {gemm(x, d, f'gate_{side}1', ['act:relu'])}")
        g = f"{t}g{side}"
        if hp["gate"] == "sigmoid":
            e.emit(f"if {t}noisy:")
            noise = f"_ms.gate_noise('sigmoid', ({t}m, {width}), {x}, _ctx)"
            call = gemm(hidden, d // 2, f"gate_{side}2", ["add:noise", "act:sigmoid"], [noise])
            e.emit(f"    {g} = {call}")
            e.emit("else:")
            e.emit(f"    {g} = {gemm(hidden, d // 2, f'gate_{side}2', ['act:sigmoid'])}")
        else:
            logits = gemm(hidden, d // 2, f"gate_{side}2", [])
            e.emit(f"{g}_l = {logits}")
            noise = f"_ms.gate_noise('softmax', ({t}m, {width}), {x}, _ctx) if {t}noisy else 0.0"
            e.emit(f"{g}_n = {noise}")
            z = pointwise(
                _LOGSIGMOID_PLUS,
                f"{g}_l",
                f"_torch.as_tensor({g}_n, dtype={g}_l.dtype, device={g}_l.device)",
            )
            e.emit(f"{g} = {e.kernels.use('primitives_softmax.py.jinja', 'softmax')}({z})")
        gates[side] = g
    e.emit(f"{t}xs = {gemm(x, d, 'basis', ['mul:gs'], [gates['s']], bias=False)}")
    e.emit(f"{t}xp = {gemm(x, d, 'pseudo_proj', ['mul:gp'], [gates['p']])}")
    e.emit(f"{t}c = {gemm(f'{t}xs', ds, 'coeffs', [])}")
    e.emit(f"{t}s = {layernorm(gemm(f'{t}c', ds, 'proc_s1', []), 'proc_s_norm')}")
    e.emit(f"{t}ys = {gemm(pointwise(_RELU, f'{t}s'), ds, 'proc_s2', [])}")
    e.emit(f"{t}p = {gemm(gemm(f'{t}xp', dp, 'proc_p1', ['act:relu']), 2 * dp, 'proc_p2', [])}")
    e.emit(f"{t}yp = {layernorm(f'{t}p', 'proc_p_norm')}")
    e.emit(f"{t}cat = _torch.cat([{t}ys, {t}yp], dim=-1)")
    e.emit(f"{y} = {gemm(f'{t}cat', ds + dp, 'reconstruct', [])}.view({x}.shape)")
    e.emit(f"{xs} = {t}xs.view({x}.shape[:-1] + ({ds},))")
    e.emit(f"{xp} = {t}xp.view({x}.shape[:-1] + ({dp},))")
    pred = gemm(gemm(f"{t}xs", ds, "pred1", ["act:relu"]), d // 4, "pred2", [])
    mean = e.kernels.use("primitives_mean.py.jinja", "mean")
    # Both terms in float32, as the reference computes them: their means' cotangent g/numel
    # would otherwise be one rounded (in float16 even subnormal) factor shared by every element
    # of the input gradients, a systematic error eager code does not make (SPEC §0).
    sq, ent = ({**c, "float32_out": True} for c in (_SQUARED_DIFF, _ENTROPY_TERM))
    e.emit(f"{t}mse = {mean}({pointwise(sq, pred, f'{x}.reshape(-1, {d})')})")
    e.emit(f"{t}ent = {mean}({pointwise(ent, f'{t}xp')})")
    # H = −Σ/(B·N) = −mean · Dp, so loss = w · (mse − 0.1 H) = w · (mse + 0.1 · Dp · mean).
    w = float(hp["sep_weight"])
    e.emit(f"{loss} = ({pyrepr(w)} * ({t}mse + {pyrepr(0.1 * dp)} * {t}ent)).to({x}.dtype)")


SPARK_K_RULES: dict[str, Callable[[Emitter, Group], None]] = {
    "fk_attention": rule_fk_attention,
    "verifier_stack": rule_verifier_stack,
    "spd_router": rule_spd_router,
}
