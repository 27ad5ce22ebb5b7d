"""Independent cross-checks of the SPEC §3–§5 block references (float64): explicit loops,
closed forms and Python integers, sharing no code with the rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _opharness import OpCase, build
from sparkc.runtime.reference.procedural import token_hash

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _close(a, b, **tol):
    torch.testing.assert_close(a, b, **(tol or TOL))


def _nograd(case: OpCase, seed: int = 0):
    return build(case, seed=seed, requires_grad=False)


# §3 SplatFlow -------------------------------------------------------------------------------


@pytest.mark.parametrize("causal,normalize", [(True, True), (True, False), (False, True)])
def test_splat_attention_matches_explicit_quadratic_and_state_forms(causal, normalize):
    case = OpCase(
        "splat_attention",
        {"x": (2, 6, 8)},
        {"splats": 3, "heads": 2, "causal": causal, "normalize": normalize},
    )
    b = _nograd(case)
    with torch.no_grad():
        b.params["log_amp"].copy_(torch.randn(2, 3, dtype=torch.float64))
    (y,) = b.run()
    p, x = b.params, b.inputs["x"]
    u = (x @ p["wa.weight"].T).view(2, 6, 2, 4)
    v = (x @ p["wv.weight"].T).view(2, 6, 2, 4)
    diff = u[:, :, :, None, :] - p["centers"][None, None]  # [B,N,H,K,d], materialised on purpose
    z = -(diff**2).sum(-1) / (2 * torch.exp(p["log_scale"]) ** 2) + p["log_amp"]
    phi = torch.softmax(z, -1)  # [B,N,H,K]
    o = torch.zeros(2, 6, 2, 4, dtype=torch.float64)
    for t in range(6):
        for s in range(t + 1 if causal else 6):
            wts = (phi[:, t] * phi[:, s]).sum(-1)  # [B,H]
            o[:, t] += wts[..., None] * v[:, s]
        if normalize:
            den = sum((phi[:, t] * phi[:, s]).sum(-1) for s in range(t + 1 if causal else 6))
            o[:, t] /= den[..., None]
    _close(y, o.reshape(2, 6, 8) @ p["wo.weight"].T)
    if causal and normalize:  # the state form S_t, z_t of SPEC §3.1
        state = torch.cumsum(phi[..., :, None] * v[..., None, :], dim=1)  # [B,N,H,K,d]
        zs = torch.cumsum(phi, dim=1)
        o2 = (phi[..., None] * state).sum(-2) / (phi * zs).sum(-1, keepdim=True)
        _close(y, o2.reshape(2, 6, 8) @ p["wo.weight"].T)


def test_trajectory_matches_explicit_loop():
    window = 3
    b = _nograd(OpCase("trajectory", {"x": (2, 7, 4)}, {"window": window}))
    x = b.inputs["x"]
    x[:, 3] = x[:, 2]  # a zero step: δ must be 0, not NaN
    (y,) = b.run()
    delta = [
        (x[:, j + 1] - x[:, j])
        / torch.clamp((x[:, j + 1] - x[:, j]).norm(dim=-1, keepdim=True), min=1e-8)
        for j in range(6)
    ]
    omega = [math.exp(-1 + i / (window - 1)) for i in range(window)]
    traj = torch.zeros_like(x)
    for p in range(1, 7):
        js = range(max(0, p - window), p)
        traj[:, p] = sum(omega[j - p + window] * delta[j] for j in js) / sum(
            omega[j - p + window] for j in js
        )
    _close(y, x + 0.2 * traj)


# §4 HSPMN ------------------------------------------------------------------------------------


def test_token_router_routes_with_probability_p():
    b = _nograd(OpCase("token_router", {"x": (1, 3, 4)}))
    with torch.no_grad():
        b.params["w.weight"].copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
        b.params["w.bias"].zero_()
    logits = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)
    reps = 6000
    x = torch.zeros(1, 3 * reps, 4, dtype=torch.float64)
    x[0, :, 0] = logits.repeat(reps)
    mask, gate, _ = b.run(
        inputs={"x": x}, training=True, generator=torch.Generator().manual_seed(1)
    )
    freq = mask.view(reps, 3).double().mean(0)
    torch.testing.assert_close(freq, torch.sigmoid(logits), atol=0.025, rtol=0)
    assert torch.equal(gate, mask.double())  # straight-through: exactly 0 or 1 forward


@pytest.mark.parametrize(
    "sparsity,n,k",
    [(0.2, 10, 2), (0.3, 10, 3), (0.29, 10, 2), (0.0, 7, 1), (1.0, 5, 5), (0.5, 1, 1)],
)
def test_token_router_topk_count_and_ties_to_lower_index(sparsity, n, k):
    b = _nograd(OpCase("token_router", {"x": (2, n, 4)}, {"mode": "topk", "sparsity": sparsity}))
    x = torch.zeros(2, n, 4, dtype=torch.float64)  # every logit equal: pure ties
    mask, _gate, _ = b.run(inputs={"x": x})
    assert torch.equal(mask, (torch.arange(n) < k).expand(2, n))
    mask, _, _ = b.run()
    assert (mask.sum(1) == k).all()


def test_token_router_loss_and_gate_gradient():
    b = build(OpCase("token_router", {"x": (2, 6, 4)}, {"sparsity": 0.3, "aux_weight": 0.5}))
    mask, gate, loss = b.run()
    logit = (b.inputs["x"] @ b.params["w.weight"].T + b.params["w.bias"]).squeeze(-1)
    _close(loss, 0.5 * (torch.sigmoid(logit).mean() - 0.3) ** 2)
    assert torch.equal(mask, logit > 0)
    (gate * torch.arange(12.0, dtype=torch.float64).view(2, 6)).sum().backward()
    s = torch.sigmoid(logit.detach())
    expected = ((s * (1 - s)) * torch.arange(12.0, dtype=torch.float64).view(2, 6))[..., None]
    _close(b.params["w.weight"].grad[0], (expected * b.inputs["x"].detach()).sum((0, 1)))


def test_sqdk_attention_equals_dense_causal_attention_on_routed_rows():
    case = OpCase("sqdk_attention", {"x": (2, 6, 8), "gate": (2, 6)}, {"heads": 4, "kv_heads": 2})
    b = build(case)
    (y,) = b.run()
    att = _nograd(OpCase("attention", {"x": (2, 6, 8)}, {"heads": 4, "kv_heads": 2, "rope": True}))
    (dense,) = att.run(
        inputs={"x": b.inputs["x"].detach()}, params={k: v.detach() for k, v in b.params.items()}
    )
    gate = b.inputs["gate"].detach()
    _close(y.detach(), dense * gate[..., None])
    (y * torch.randn(y.shape, dtype=torch.float64)).sum().backward()
    g = b.inputs["gate"].grad
    assert (g[gate == 0] == 0).all() and (g[gate != 0] != 0).all()


# §5 SPARK procedural -------------------------------------------------------------------------


def test_token_hash_matches_python_integers():
    ids = torch.tensor([0, 1, 2, 65535, 123456789, 2**32 - 1, 2**32 + 7, 2**40 + 3, 2**62])
    expected = [((v * 2654435761) % 2**32) >> 16 for v in ids.tolist()]
    assert token_hash(ids).tolist() == expected


def _group_mlp(b, coef):
    """y = fc2.bias + Σ_g coef_g · act(fc1_g x) W2_gᵀ, one group at a time."""
    p, x = b.params, b.inputs["x"]
    groups = coef.shape[-1]
    size = p["fc1.weight"].shape[0] // groups
    act = {"gelu": F.gelu, "relu": torch.relu}[b.hp["act"]]
    y = p["fc2.bias"].expand_as(x).clone()
    for g in range(groups):
        rows = slice(g * size, (g + 1) * size)
        h = act(x @ p["fc1.weight"][rows].T + p["fc1.bias"][rows])
        y = y + coef[..., g, None] * (h @ p["fc2.weight"][:, rows].T)
    return y


def test_routed_mlp_all_groups_active_is_the_softmax_weighted_dense_mlp():
    b = _nograd(OpCase("routed_mlp", {"x": (2, 5, 8)}, {"hidden": 12, "groups": 4, "active": 4}))
    (y,) = b.run()
    p, x = b.params, b.inputs["x"]
    _close(y, _group_mlp(b, torch.softmax(x @ p["gate.weight"].T + p["gate.bias"], -1)))


def test_routed_mlp_learned_topk_and_hash_selection():
    b = _nograd(OpCase("routed_mlp", {"x": (2, 5, 8)}, {"hidden": 12, "groups": 4, "active": 2}))
    (y,) = b.run()
    p, x = b.params, b.inputs["x"]
    logits = x @ p["gate.weight"].T + p["gate.bias"]
    w = torch.softmax(logits, -1)
    keep = torch.zeros_like(w)
    for idx in np.ndindex(2, 5):
        order = sorted(range(4), key=lambda g: (-float(logits[idx][g]), g))[:2]
        keep[idx][order] = 1
    _close(y, _group_mlp(b, w * keep))
    h = _nograd(
        OpCase(
            "routed_mlp",
            {"x": (2, 5, 8), "tokens": (2, 5)},
            {"hidden": 12, "groups": 3, "active": 2, "route": "hash", "act": "relu"},
        )
    )
    (y,) = h.run()
    coef = torch.zeros(2, 5, 3, dtype=torch.float64)
    for idx in np.ndindex(2, 5):
        v = int(h.inputs["tokens"][idx])
        for j in range(2):
            coef[idx][((((v * 2654435761) % 2**32) >> 16) + j) % 3] = 0.5
    _close(y, _group_mlp(h, coef))


def test_demopack_matches_explicitly_decoded_weight():
    b = _nograd(
        OpCase(
            "demopack_linear",
            {"x": (2, 3, 5)},
            {"out": 4, "codewords": 6, "per_row": 3, "seed": 11},
        )
    )
    with torch.no_grad():
        b.params["scale"].copy_(torch.randn(4, dtype=torch.float64))
    (y,) = b.run()
    p = b.params
    g = torch.Generator().manual_seed(11)
    index = torch.randint(0, 6, (4, 3), generator=g)
    assert torch.equal(p["index"], index)
    w = torch.zeros(4, 5, dtype=torch.float64)
    for r in range(4):
        for j in range(3):
            w[r] += p["codebook"][index[r, j]]
        w[r] *= p["scale"][r] / 3
    _close(y, b.inputs["x"] @ w.T + p["bias"])


def test_lora_matches_per_sample_weight():
    b = _nograd(
        OpCase("lora_linear", {"x": (2, 3, 5), "meta": (2, 4)}, {"out": 6, "rank": 2, "gen_dim": 7})
    )
    p = b.params
    with torch.no_grad():
        p["gen_b.weight"].copy_(torch.randn(12, 7, dtype=torch.float64))
        p["gen_b.bias"].copy_(torch.randn(12, dtype=torch.float64))
    (y,) = b.run()
    for s in range(2):
        lin = lambda t, n: t @ p[f"{n}.weight"].T + p[f"{n}.bias"]
        h = F.gelu(lin(F.gelu(lin(b.inputs["meta"][s], "gen1")), "gen2"))
        a, bm = lin(h, "gen_a").view(2, 5), lin(h, "gen_b").view(6, 2)
        w = p["base.weight"] + bm @ a
        _close(y[s], b.inputs["x"][s] @ w.T + p["base.bias"])
    zero = _nograd(OpCase("lora_linear", {"x": (2, 3, 5), "meta": (2, 4)}, {"out": 6}))
    (y0,) = zero.run()
    _close(y0, zero.inputs["x"] @ zero.params["base.weight"].T + zero.params["base.bias"])
