"""Numerics of the routed_mlp kernels (`codegen_templates/procedural_routed_mlp.py.jinja`, SPEC §5.2).

Without CUDA the kernels run under the Triton interpreter (16-wide tiles, so group row tiles,
masked rows and columns, and groups spanning several tiles are exercised) and are compared,
forward and backward (x, the gate scores, fc1, fc2), with a float64 routed MLP written here
from SPEC §5.2 (checked once against the runtime's reference rule). Cases: learned and hash
routing, odd sizes, empty groups, one group holding every token, hash ids near and above 2³²,
ties in the scores (to the lower group), relu as the activation; two runs are bitwise equal;
the compiled module's Triton path matches its reference path. GPU tests (float32 and
bfloat16) are marked `gpu`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import functools

import pytest
from sparkc.runtime.loader import load_source
from sparkc.runtime.reference import RefContext
from sparkc.runtime.reference.procedural import ref_routed_mlp, token_hash

from sparkc import api
from sparkc.codegen.render import render
from sparkc.ir.ops import OPS

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ACT64 = {
    "gelu": torch.nn.functional.gelu,
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


@functools.cache
def build(groups, active, learned, act="gelu"):
    name = f"rm_{groups}_{active}_{int(learned)}_{act}"
    spec = OPS[act]
    ctx = {
        "groups": groups,
        "active": active,
        "learned": learned,
        "act_f": spec.triton.format(x="z"),
        "act_df": dict(spec.triton_grad)["x"].format(x="z", y="h", g="1.0"),
    }
    prelude = render("prelude.py.jinja", version="test", source_name="test_routed_mlp")
    text = prelude + "\n\n" + render("procedural_routed_mlp.py.jinja", name=name, **ctx)
    return getattr(load_source(name, text), name)


def reference(x, route, w1, b1, w2, b2, groups, active, learned, act="gelu"):
    """SPEC §5.2 in float64 from the gate scores (learned) or the token ids (hash)."""
    hg = w1.shape[0] // groups
    if learned:
        w = torch.softmax(route.double(), -1)
        order = torch.sort(route.detach(), dim=-1, descending=True, stable=True).indices[
            ..., :active
        ]
        coef = w * torch.zeros_like(w).scatter(-1, order, 1.0)
    else:
        idx = (token_hash(route)[..., None] + torch.arange(active)) % groups
        coef = torch.zeros(*route.shape, groups, dtype=torch.float64).scatter(-1, idx, 1 / active)
    xd = x.double()
    y = b2.double()
    for g in range(groups):
        rows = slice(g * hg, (g + 1) * hg)
        h = ACT64[act](xd @ w1[rows].double().T + b1[rows].double())
        y = y + coef[..., g : g + 1] * (h @ w2[:, rows].double().T)
    return y


def make(shape, d, hidden, groups, learned, seed=0, dtype=torch.float32, scores=None, tokens=None):
    g = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(DEVICE, dtype).requires_grad_(True)

    x = rnd(*shape, d)
    if learned:
        route = rnd(*shape, groups) if scores is None else scores.to(DEVICE, dtype).requires_grad_()
    else:
        route = tokens.to(DEVICE)
    params = (rnd(hidden, d, scale=d**-0.5), rnd(hidden, scale=0.1))
    params += (rnd(d, hidden, scale=hidden**-0.5), rnd(d, scale=0.1))
    return x, route, params


def run(fn, x, route, params, dy):
    for t in (x, route, *params):
        t.grad = None
    y = fn(x, route, *params)
    y.backward(dy)
    grads = [t.grad for t in (x, route, *params) if t.is_floating_point()]
    return y.detach(), grads


def check(shape, d, hidden, groups, active, learned, act="gelu", tol=1e-5, **kw):
    x, route, params = make(shape, d, hidden, groups, learned, **kw)
    fn = build(groups, active, learned, act)
    dy = torch.randn(*shape, d, generator=torch.Generator().manual_seed(9)).to(x)
    y, grads = run(fn, x, route, params, dy)
    leaves = [t.detach().double().requires_grad_(True) for t in (x, route, *params)]
    if not learned:
        leaves[1] = route.cpu()
    y64 = reference(
        *[t.cpu() if t.device.type != "cpu" else t for t in leaves], groups, active, learned, act
    )
    y64.backward(dy.double().cpu())
    want = [t.grad.cpu() for t in leaves if t.is_floating_point()]
    scale = max(1.0, y64.abs().max().item())
    assert (y.double().cpu() - y64).abs().max().item() <= tol * scale
    for got, ref in zip(grads, want):
        s = max(1.0, ref.abs().max().item())
        assert (got.double().cpu() - ref).abs().max().item() <= tol * s
    return y, grads


def test_reference_here_matches_the_runtime_rule():
    x, _, (w1, b1, w2, b2) = make((2, 5), 8, 12, 4, True)
    gw, gb = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    params = {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2}
    params = {k: v.detach().double().cpu() for k, v in params.items()}
    params.update({"gate.weight": gw, "gate.bias": gb})
    hp = {"hidden": 12, "groups": 4, "active": 2, "route": "learned", "act": "gelu"}
    xd = x.detach().double().cpu()
    (want,) = ref_routed_mlp({"x": xd}, params, hp, RefContext())
    got = reference(
        xd,
        xd @ gw.T + gb,
        *(params[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")),
        4,
        2,
        True,
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_learned_odd_sizes_forward_and_backward():
    # 21 tokens, D=13, 3 groups of 5 neurons: nothing is a multiple of a tile.
    check((3, 7), 13, 15, 3, 2, True)


def test_hash_ids_near_and_above_two_to_the_32():
    ids = torch.tensor(
        [[2**32 - 1, 2**32 - 2, 2**32, 2**32 + 1, 2**40 + 7, 0, 2654435761, 65535, 2**31]]
    )
    check((1, 9), 12, 16, 4, 2, False, tokens=ids)


def test_one_group_holds_every_token_and_the_others_are_empty():
    scores = torch.randn(2, 9, 4)
    scores[..., 2] += 100.0  # every token picks group 2 first, group 0 second
    scores[..., 0] += 50.0
    _, grads = check((2, 9), 12, 16, 4, 1, True, scores=scores)
    assert grads[2][16 // 4 * 1 : 16 // 4 * 2].abs().max() == 0  # fc1 rows of an empty group


def test_ties_go_to_the_lower_group_and_relu():
    scores = torch.zeros(1, 6, 4)  # all equal: groups 0 and 1 for every token
    check((1, 6), 8, 8, 4, 2, True, act="relu", scores=scores)


@pytest.mark.parametrize("act", ["silu", "sigmoid", "tanh"])
def test_other_activations(act):
    check((1, 5), 8, 8, 2, 1, True, act=act)


def test_every_group_active():
    check((1, 5), 8, 12, 3, 3, True)


def test_two_runs_are_bitwise_identical():
    x, route, params = make((2, 11), 12, 16, 4, True, seed=3)
    fn = build(4, 2, True)
    dy = torch.randn_like(x)
    y1, g1 = run(fn, x, route, params, dy)
    y2, g2 = run(fn, x, route, params, dy)
    assert torch.equal(y1, y2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


PROGRAM = """
model M(d = 12) {{
  input x: float[B, N, d]
  input tokens: i64[B, N]
  y = routed_mlp(x, hidden=16, groups=4, active=2, route={route}, tokens=tokens)
  output y
}}
"""


@pytest.mark.parametrize("route", ["learned", "hash"])
def test_module_triton_path_matches_reference_path(route):
    mod = api.load_source(PROGRAM.format(route=route), f"rm_{route}.spark")
    assert "routed_mlp" not in mod.TRITON_COVERAGE["reference_ops"]
    torch.manual_seed(0)
    tri = mod.Model(impl="triton").to(DEVICE)
    ref = mod.Model(impl="reference").to(DEVICE).double()
    ref.load_state_dict({k: v.double() for k, v in tri.state_dict().items()})
    x = torch.randn(2, 5, 12, device=DEVICE, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    tokens = torch.randint(0, 2**33, (2, 5), device=DEVICE)
    yt, yr = tri(x=x, tokens=tokens).y, ref(x=x64, tokens=tokens).y
    torch.testing.assert_close(yt.double(), yr, rtol=1e-5, atol=1e-5)
    yt.sum().backward()
    yr.sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    for (n, p), (_, q) in zip(tri.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad.double(), q.grad, rtol=1e-5, atol=1e-5, msg=n)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("learned", [True, False])
def test_gpu_against_reference(dtype, tol, learned):
    tokens = None if learned else torch.randint(0, 2**34, (4, 1000))
    check((4, 1000), 256, 1024, 8, 2, learned, tol=tol, dtype=dtype, tokens=tokens)


@pytest.mark.gpu
def test_gpu_bitwise_reproducible_bf16():
    x, route, params = make((4, 2048), 256, 1024, 8, True, dtype=torch.bfloat16)
    fn = build(8, 2, True)
    dy = torch.randn_like(x)
    y1, g1 = run(fn, x, route, params, dy)
    y2, g2 = run(fn, x, route, params, dy)
    assert torch.equal(y1, y2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_no_tokens_and_one_token():
    fn = build(4, 2, True)
    x, route, params = make((1, 0), 8, 16, 4, True)
    y = fn(x, route, *params)
    assert y.shape == (1, 0, 8)
    y.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in params)
    check((1, 1), 8, 16, 4, 2, True)


def test_every_tile_candidate_computes_the_same(monkeypatch):
    """The tuner's candidates (GPU tiles, run here under the interpreter): each one the tuner
    would time gives the same result as the interpreter's tiles."""
    from sparkc.runtime import launch

    x, route, params = make((1, 40), 16, 32, 4, True, seed=5)
    fn = build(4, 2, True)
    dy = torch.randn_like(x)
    want_y, want_g = run(fn, x, route, params, dy)
    timed = []

    def pick(name, shape_class, candidates, bench, *, source, like):
        for c in candidates:
            bench(c)
        timed.append(name)
        return candidates[len(timed) % len(candidates)]

    def bench_ms(call):
        call()
        return 1.0

    monkeypatch.setattr(launch, "interpreting", lambda: False)
    monkeypatch.setattr(launch, "pick", pick)
    monkeypatch.setattr(launch, "bench_ms", bench_ms)
    y, grads = run(fn, x, route, params, dy)
    # fc1, fc2, dz (with the dw partials), dx, dW1, dW2: six launches, each tuned
    assert len(timed) == 6, timed
    torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-5)
    for got, ref in zip(grads, want_g):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
