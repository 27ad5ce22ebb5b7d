"""Code-generation rules of the SPaR-K block kernels: `fk_attention` and `verifier_stack`.

Consumes a fusion `Group` anchored at one of these ops (kinds "fk_attention" and
"verifier_stack", see `sparkc/passes/fuse.py`) and the `Emitter` of `codegen/triton_plan.py`;
produces the lines of `_forward_triton` that run the block on generated kernels, and registers
the fragments they call:
- fk_attention: three projection GEMMs (`matmul.py.jinja`), the multi-hop kernels
  (`fk_attention.py.jinja`) on the [B, N, H, d] views, and the output GEMM `wo`, which takes the
  group's epilogue (a residual add after the block fuses into it);
- verifier_stack: the per-token controller and encoder GEMMs (relu fused into `ctrl1`), ONE
  scan kernel per direction for the pointer and the memory (`stack_scan.py.jinja`), then the
  signal head on concat(h, read) (relu and sigmoid fused into its GEMMs).

`SPARK_K_RULES` (kind → rule) is merged into `triton_plan.GROUP_RULES`. The helpers of
triton_plan are imported when a rule runs, not at import time, because triton_plan imports this
module while its own table is being built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .render import pyrepr

if TYPE_CHECKING:
    from ..passes.fuse import Group
    from .triton_plan import Emitter


def rule_fk_attention(e: Emitter, group: Group) -> None:
    from .triton_plan import _epilogue, _gemm_call, _ports, _width, project_heads

    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    hp = node.attr_dict
    x = e.v(ports["x"])
    d_model = _width(e.graph, ports["x"])
    heads = int(hp["heads"])
    o = e.out(node)
    proj = project_heads(e, node, heads, heads)
    fn = e.kernels.use("fk_attention.py.jinja", "fk", causal=bool(hp["causal"]))
    args = [
        proj["wq"],
        proj["wk"],
        proj["wv"],
        pyrepr(int(hp["hops"])),
        pyrepr(float(hp["beta"])),
        pyrepr(bool(hp["normalize"])),
    ]
    e.emit(f"{o}_r = {fn}({', '.join(args)})")
    steps, operands, last = _epilogue(e, group, node.out())
    call = _gemm_call(
        e, f"{o}_r", d_model, [e.v(params["wo.weight"])], e.v(params["wo.bias"]), steps, operands
    )
    e.emit(f"{e.out(last)} = {call}.view({x}.shape)")


def rule_verifier_stack(e: Emitter, group: Group) -> None:
    from .triton_plan import _gemm_call, _ports, _width

    node = e.graph.node(group.anchor)
    ports, params = _ports(node)
    hp = node.attr_dict
    h = e.v(ports["h"])
    d = _width(e.graph, ports["h"])
    elem, n_signals = int(hp["elem"]), int(hp["signals"])
    read, signals, pointer, loss = (e.out(node, i) for i in range(4))
    bn = f"{h}.shape[0], {h}.shape[1]"

    def gemm(x: str, k_in: int, layer: str, steps: list[str]) -> str:
        return _gemm_call(
            e, x, k_in, [e.v(params[f"{layer}.weight"])], e.v(params[f"{layer}.bias"]), steps, []
        )

    e.emit(f"{read}_c = {gemm(h, d, 'ctrl1', ['act:relu'])}")
    e.emit(f"{read}_l = {gemm(f'{read}_c', d // 2, 'ctrl2', [])}.view({bn}, 3)")
    e.emit(f"{read}_e = {gemm(h, d, 'enc', [])}.view({bn}, {elem})")
    fn = e.kernels.use("stack_scan.py.jinja", "stack", read=str(hp["read"]))
    # op_noise draws Gumbel noise in training only (SPEC §0): the module's _ctx says which.
    noisy = "_ctx.training" if hp["op_noise"] else "False"
    e.emit(
        f"{read}, {pointer}, {loss} = {fn}({read}_l, {read}_e, {pyrepr(int(hp['stack']))}, "
        f"{pyrepr(float(hp['penalty']))}, noisy={noisy})"
    )
    e.emit(f"{read}_hr = _torch.cat([{h}, {read}], dim=-1)")
    e.emit(f"{read}_s = {gemm(f'{read}_hr', d + elem, 'head1', ['act:relu'])}")
    e.emit(
        f"{signals} = {gemm(f'{read}_s', d // 4, 'head2', ['act:sigmoid'])}.view({bn}, {n_signals})"
    )


SPARK_K_RULES: dict[str, Callable[[Emitter, Group], None]] = {
    "fk_attention": rule_fk_attention,
    "verifier_stack": rule_verifier_stack,
}
