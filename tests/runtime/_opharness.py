"""Test harness for op-level tests: op name + input shapes + hyperparameters -> a runnable case.

`OpCase(op, shapes, hp)` names an op call; `build(case)` runs `sparkc.ir.ops.instantiate` on it
(the op table's shape and param rules), creates every parameter/buffer with
`sparkc.runtime.init.init_tensor` from the resulting ParamSpecs, and draws random inputs suited
to each port (token ids in range, opcode tapes, routing gates). `Built.run()` calls the reference
rule. Other test suites (kernels, generated modules) reuse `CASES`, `build` and `Built`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from sparkc.runtime.init import init_tensor
from sparkc.runtime.reference import REFERENCE, RefContext

from sparkc.ir.ops import OPS, InstanceSpec, instantiate
from sparkc.ir.types import DType, TensorType

_PORT_DTYPES = {"float": DType.FLOAT, "int": DType.I64, "bool": DType.BOOL, "any": DType.FLOAT}
# Ports whose integer dtype is int32 rather than the default int64.
_I32_PORTS = {("opcode_tape", "ops")}


@dataclass(frozen=True)
class OpCase:
    op: str
    shapes: dict[str, tuple[int, ...]]
    hp: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.label}" if self.label else self.op


def input_types(case: OpCase) -> dict[str, TensorType]:
    spec = OPS[case.op]
    types = {}
    for port in spec.inputs:
        if port.name not in case.shapes:
            continue
        dtype = DType.I32 if (case.op, port.name) in _I32_PORTS else _PORT_DTYPES[port.dtype]
        types[port.name] = TensorType(dtype, tuple(case.shapes[port.name]))
    return types


def reference_hp(inst: InstanceSpec) -> dict[str, Any]:
    """The instance's hyperparameters as the IR carries them (basis as (name, value) pairs)."""
    hp = dict(inst.hp)
    if isinstance(hp.get("basis"), dict):
        hp["basis"] = tuple(hp["basis"].items())
    return hp


def random_program(t_len: int, g: torch.Generator, end_prob: float = 0.1) -> list[int]:
    """Random opcodes, biased towards pushes so that stacks grow and MERGE/CHECK see values."""
    if t_len == 0:
        return []
    weights = torch.tensor([2, 2, 1, 1.5, 1, 1.5, 1, 1, 0.5, end_prob * 10])
    draws = torch.multinomial(weights, t_len, replacement=True, generator=g)
    return [-1 if int(k) == 9 else int(k) for k in draws]


def _gen_input(
    op: str, port: str, t: TensorType, hp: dict[str, Any], g: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    shape = tuple(t.shape)
    rule = _INPUT_RULES.get((op, port))
    if rule is not None:
        return rule(shape, hp, g, dtype)
    if t.dtype is DType.FLOAT:
        return torch.randn(shape, generator=g, dtype=dtype)
    if t.dtype is DType.BOOL:
        return torch.rand(shape, generator=g) < 0.5
    return torch.randint(0, 7, shape, generator=g, dtype=torch.int64)


# PLAN(arg) RETR BRANCH CHECK ASSUME MERGE LEMMA EXEC CITE: every opcode once, BRANCH's value
# reaching CHECK and MERGE, so that `branch` and `args` get gradients on any random batch.
DESIGNED_TAPE = [0, 1, 6, 5, 2, 7, 4, 3, 8]


def _tape_ops(shape, hp, g, dtype):
    b, t_len = shape
    rows = [random_program(t_len, g) for _ in range(b)]
    rows[0] = (DESIGNED_TAPE + [-1] * t_len)[:t_len]
    return torch.tensor(rows, dtype=torch.int32).reshape(b, t_len)


def _tape_has_arg(shape, hp, g, dtype):
    has = torch.rand(shape, generator=g) < 0.7
    has[0, :3] = True
    return has


def _sqdk_gate(shape, hp, g, dtype):
    routed = torch.rand(shape, generator=g) < 0.6
    routed[:, 0] = True  # at least one routed token per sequence
    return routed.to(dtype) * (0.5 + torch.rand(shape, generator=g, dtype=dtype))


def _targets(shape, hp, g, dtype):
    v = hp["_vocab"]
    tg = torch.randint(0, v, shape, generator=g)
    tg[..., 0] = hp["ignore_index"]  # exercise ignore_index
    return tg


_INPUT_RULES: dict[tuple[str, str], Callable[..., torch.Tensor]] = {
    ("embed", "tokens"): lambda s, hp, g, dt: torch.randint(0, hp["vocab"], s, generator=g),
    ("cross_entropy", "targets"): _targets,
    ("routed_mlp", "tokens"): lambda s, hp, g, dt: torch.randint(0, 100_000, s, generator=g),
    ("opcode_tape", "ops"): _tape_ops,
    ("opcode_tape", "has_arg"): _tape_has_arg,
    ("sqdk_attention", "gate"): _sqdk_gate,
}


@dataclass
class Built:
    case: OpCase
    inst: InstanceSpec
    hp: dict[str, Any]
    params: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]

    def run(
        self,
        inputs: dict[str, torch.Tensor] | None = None,
        params: dict[str, torch.Tensor] | None = None,
        training: bool = False,
        generator: torch.Generator | None = None,
        **ctx: Any,
    ) -> tuple[torch.Tensor, ...]:
        c = RefContext(training=training, generator=generator, **ctx)
        return REFERENCE[self.case.op](
            dict(inputs if inputs is not None else self.inputs),
            dict(params if params is not None else self.params),
            dict(self.hp),
            c,
        )

    def float_inputs(self) -> list[str]:
        return [k for k, v in self.inputs.items() if v.is_floating_point()]

    def trainable(self) -> list[str]:
        return [p.name for p in self.inst.params if p.trainable]


def build(
    case: OpCase, seed: int = 0, dtype: torch.dtype = torch.float64, requires_grad: bool = True
) -> Built:
    types = input_types(case)
    inst = instantiate(case.op, types, dict(case.hp))
    hp = reference_hp(inst)
    torch.manual_seed(seed)
    params = {}
    for spec in inst.params:
        t = init_tensor(spec, dtype=dtype)
        if spec.trainable and requires_grad:
            t.requires_grad_(True)
        params[spec.name] = t
    g = torch.Generator().manual_seed(seed + 1)
    gen_hp = dict(hp)
    if case.op == "cross_entropy":
        gen_hp["_vocab"] = case.shapes["logits"][-1]
    inputs = {}
    for port, t in types.items():
        x = _gen_input(case.op, port, t, gen_hp, g, dtype)
        if x.is_floating_point() and requires_grad:
            x.requires_grad_(True)
        inputs[port] = x
    return Built(case, inst, hp, params, inputs)


def outputs_by_name(case: OpCase, outs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    return dict(zip(OPS[case.op].output_names, outs))


B, N, D = 2, 5, 8
X = {"x": (B, N, D)}
X16 = {"x": (B, N, 16)}

# Every op of the table (except the config op `basis`) at least once, with the variants whose
# code paths differ. Small shapes and odd lengths keep the suite fast.
CASES: list[OpCase] = [
    OpCase("linear", X, {"out": 6}),
    OpCase("linear", X, {"out": 6, "bias": False}, "nobias"),
    OpCase("embed", {"tokens": (B, N)}, {"vocab": 11, "dim": D}),
    OpCase("pos_embed", X, {"max_len": 7}),
    OpCase("rmsnorm", X),
    OpCase("layernorm", X),
    *[OpCase(a, X) for a in ("relu", "gelu", "silu", "sigmoid", "tanh", "neg")],
    *[OpCase(a, {"a": (B, N, D), "b": (1, N, D)}) for a in ("add", "sub", "mul")],
    OpCase("div", {"a": (B, N, D), "b": (B, N, 1)}),
    OpCase("softmax", X),
    OpCase("softmax", X, {"dim": 1}, "dim1"),
    OpCase("mlp", X, {"hidden": 12}),
    OpCase("mlp", X, {"hidden": 12, "act": "silu"}, "silu"),
    OpCase("swiglu", X, {"hidden": 12}),
    OpCase("conv1d", X, {"kernel": 3}),
    OpCase("conv1d", X, {"kernel": 4}, "k4"),
    OpCase("conv1d", X, {"kernel": 3, "causal": False}, "sym"),
    OpCase("rope", {"x": (B, N, 2, 4)}),
    OpCase("split_heads", X, {"heads": 2}),
    OpCase("merge_heads", {"x": (B, N, 2, 4)}),
    OpCase("concat", {"a": (B, N, 3), "b": (B, N, 4)}),
    OpCase("mean", X),
    OpCase("cross_entropy", {"logits": (B, N, 9), "targets": (B, N)}),
    OpCase("attention", X, {"heads": 2}),
    OpCase("attention", X, {"heads": 4, "kv_heads": 2, "rope": True}, "gqa-rope"),
    OpCase("attention", X, {"heads": 2, "causal": False}, "bidir"),
    OpCase(
        "attention",
        X,
        {"heads": 2, "basis": {"freqs": 2, "legendre": 3, "over": "distance", "max_len": 8}},
        "basis-dist",
    ),
    OpCase(
        "attention",
        X,
        {
            "heads": 2,
            "causal": False,
            "basis": {"freqs": 1, "legendre": 2, "over": "key", "max_len": 6},
        },
        "basis-key",
    ),
    OpCase("fk_attention", X, {"heads": 2, "hops": 3}),
    OpCase(
        "fk_attention", X, {"heads": 2, "hops": 2, "causal": False, "normalize": True}, "bidir-norm"
    ),
    # D = 16: with D = 8 the D/4 = 2 relu units of `pred` can both be dead on 10 tokens.
    OpCase("spd_router", X16),
    OpCase("spd_router", X16, {"gate": "softmax", "gate_noise": True, "struct_dim": 3}, "softmax"),
    OpCase("spd_router", X16, {"gate_noise": True}, "noise"),
    OpCase("verifier_stack", {"h": (B, N, D)}, {"stack": 4}),
    OpCase(
        "verifier_stack",
        {"h": (B, N, D)},
        {"stack": 3, "read": "mean", "op_noise": True, "signals": 2},
        "mean-noise",
    ),
    OpCase("splat_attention", X, {"splats": 3}),
    OpCase(
        "splat_attention",
        X,
        {"splats": 3, "heads": 2, "causal": False, "normalize": False},
        "bidir-raw",
    ),
    OpCase("trajectory", X, {"window": 3}),
    OpCase("token_router", X),
    OpCase("token_router", X, {"mode": "topk", "sparsity": 0.4}, "topk"),
    OpCase("sqdk_attention", {"x": (B, N, D), "gate": (B, N)}, {"heads": 2}),
    OpCase(
        "sqdk_attention",
        {"x": (B, N, D), "gate": (B, N)},
        {"heads": 4, "kv_heads": 2, "rope": False},
        "gqa-norope",
    ),
    OpCase(
        "opcode_tape",
        {"ops": (3, 9), "args": (3, 9, 4), "has_arg": (3, 9)},
        {"budget": 7, "capacity": 3},
    ),
    OpCase("routed_mlp", X, {"hidden": 12, "groups": 4, "active": 2}),
    OpCase(
        "routed_mlp",
        {"x": (B, N, D), "tokens": (B, N)},
        {"hidden": 12, "groups": 3, "active": 1, "route": "hash", "act": "relu"},
        "hash",
    ),
    OpCase("demopack_linear", X, {"out": 6, "codewords": 5, "per_row": 3, "seed": 3}),
    OpCase("demopack_linear", X, {"out": 6, "codewords": 5, "learnable": False}, "frozen"),
    OpCase("lora_linear", {"x": (B, N, D), "meta": (B, 3)}, {"out": 6, "rank": 2, "gen_dim": 5}),
]
