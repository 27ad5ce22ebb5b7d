"""Code-generation rules of the SplatFlow blocks: `trajectory` (SPEC §3.2) as one stencil family.

Consumes a fusion `Group` of kind "trajectory" and the `Emitter` of `codegen/emit.py`;
produces one call of `splat_trajectory.py.jinja` specialised on the window, whose tap weights
ω_i = exp(−1 + i/(window−1)) are computed here once and rendered as exact float literals.
(`splat_attention` still runs its reference rule.)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..emit import Emitter, ports_of

if TYPE_CHECKING:
    from ...passes.fuse import Group


def tap_weights(window: int) -> list[str]:
    return [repr(math.exp(-1 + i / (window - 1))) for i in range(window)]


def rule_trajectory(e: Emitter, group: Group) -> None:
    node = e.graph.node(group.anchor)
    ports, params = ports_of(node)
    window = int(node.attr("window"))
    fn = e.kernels.use(
        "splat_trajectory.py.jinja", "traj", window=window, weights=tap_weights(window)
    )
    e.emit(f"{e.out(node)} = {fn}({e.v(ports['x'])}, {e.v(params['strength'])})")


SPLAT_RULES = {"trajectory": rule_trajectory}
