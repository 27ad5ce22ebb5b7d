"""Independent cross-checks of the SPEC §1–§2 references (float64): each op against a formulation
that shares no code with the rule (torch.nn.functional, explicit loops, closed forms, numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _opharness import OpCase, build
from sparkc.runtime.reference import REFERENCE, RefContext

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _close(a, b, **tol):
    torch.testing.assert_close(a, b, **(tol or TOL))


def _nograd(case: OpCase, seed: int = 0):
    return build(case, seed=seed, requires_grad=False)


# §1 primitives ------------------------------------------------------------------------------


def test_layernorm_and_rmsnorm_match_torch():
    b = _nograd(OpCase("layernorm", {"x": (2, 3, 6)}, {"eps": 1e-3}))
    w, bias = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    (y,) = b.run(params={"weight": w, "bias": bias})
    _close(y, F.layer_norm(b.inputs["x"], (6,), w, bias, 1e-3))
    r = _nograd(OpCase("rmsnorm", {"x": (2, 3, 6)}))
    (y,) = r.run(params={"weight": w})
    x = r.inputs["x"]
    _close(y, x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w)


@pytest.mark.parametrize("kernel,causal", [(1, True), (3, True), (4, True), (3, False), (5, False)])
def test_conv1d_matches_f_conv1d(kernel, causal):
    b = _nograd(OpCase("conv1d", {"x": (2, 7, 5)}, {"kernel": kernel, "causal": causal}))
    (y,) = b.run()
    w, bias, x = b.params["weight"], b.params["bias"], b.inputs["x"].transpose(1, 2)
    if causal:
        ref = F.conv1d(F.pad(x, (kernel - 1, 0)), w, bias, groups=5)
    else:
        ref = F.conv1d(x, w, bias, padding=(kernel - 1) // 2, groups=5)
    _close(y, ref.transpose(1, 2))


def test_rope_matches_complex_rotation_and_offset():
    b = _nograd(OpCase("rope", {"x": (2, 6, 3, 8)}, {"base": 100.0}))
    x = b.inputs["x"]
    (y,) = b.run()
    half = 4
    theta = 100.0 ** (-2 * torch.arange(half, dtype=torch.float64) / 8)
    t = torch.arange(6, dtype=torch.float64)
    z = (
        torch.complex(x[..., :half], x[..., half:])
        * torch.polar(torch.ones(6, half, dtype=torch.float64), t[:, None] * theta)[
            None, :, None, :
        ]
    )
    _close(y, torch.cat((z.real, z.imag), -1))
    # Decoding: rows 3.. computed alone at offset 3 equal rows 3.. of the full call.
    (tail,) = b.run(inputs={"x": x[:, 3:]}, position_offset=3)
    _close(tail, y[:, 3:])


def test_cross_entropy_matches_torch_and_all_ignored_is_zero_with_gradient():
    b = build(OpCase("cross_entropy", {"logits": (2, 5, 9), "targets": (2, 5)}))
    (loss,) = b.run()
    ref = F.cross_entropy(
        b.inputs["logits"].reshape(-1, 9), b.inputs["targets"].reshape(-1), ignore_index=-100
    )
    _close(loss, ref)
    ignored = torch.full((2, 5), -100)
    (zero,) = b.run(inputs={"logits": b.inputs["logits"], "targets": ignored})
    zero.backward()
    assert zero.item() == 0.0
    assert torch.equal(b.inputs["logits"].grad, torch.zeros_like(b.inputs["logits"]))


def test_mlp_swiglu_and_tied_linear():
    b = _nograd(OpCase("swiglu", {"x": (2, 3, 4)}, {"hidden": 6}))
    p, x = b.params, b.inputs["x"]
    (y,) = b.run()
    h = F.silu(x @ p["w_gate.weight"].T) * (x @ p["w_up.weight"].T)
    _close(y, h @ p["w_down.weight"].T)
    m = _nograd(OpCase("mlp", {"x": (2, 3, 4)}, {"hidden": 6, "act": "tanh"}))
    p, x = m.params, m.inputs["x"]
    (y,) = m.run()
    _close(y, torch.tanh(x @ p["fc1.weight"].T + p["fc1.bias"]) @ p["fc2.weight"].T + p["fc2.bias"])
    table = torch.randn(11, 4, dtype=torch.float64)
    bias = torch.randn(11, dtype=torch.float64)
    hp = {"out": 11, "bias": True, "tie": "tok"}
    (y,) = REFERENCE["linear"]({"x": x}, {"weight": table, "bias": bias}, hp, RefContext())
    _close(y, x @ table.T + bias)


def test_pos_embed_offset_reads_the_right_rows():
    b = _nograd(OpCase("pos_embed", {"x": (1, 3, 4)}, {"max_len": 6}))
    (y,) = b.run(position_offset=2)
    _close(y, b.inputs["x"] + b.params["weight"][2:5])


# §1.1 attention and §5.5 basis ---------------------------------------------------------------


@pytest.mark.parametrize("heads,kv,causal", [(2, 2, True), (4, 2, True), (4, 1, False)])
def test_attention_matches_sdpa(heads, kv, causal):
    b = _nograd(
        OpCase("attention", {"x": (2, 7, 8)}, {"heads": heads, "kv_heads": kv, "causal": causal})
    )
    (y,) = b.run()
    x, p = b.inputs["x"], b.params
    d = 8 // heads
    q = (x @ p["wq.weight"].T).view(2, 7, heads, d).transpose(1, 2)
    k = (x @ p["wk.weight"].T).view(2, 7, kv, d).transpose(1, 2)
    v = (x @ p["wv.weight"].T).view(2, 7, kv, d).transpose(1, 2)
    k, v = (t.repeat_interleave(heads // kv, dim=1) for t in (k, v))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    _close(y, o.transpose(1, 2).reshape(2, 7, 8) @ p["wo.weight"].T)


def test_attention_rope_decoding_offset_shifts_positions_consistently():
    """RoPE scores depend on i − j only: a shifted window gives the same output."""
    b = _nograd(OpCase("attention", {"x": (1, 5, 8)}, {"heads": 2, "rope": True}))
    (y,) = b.run()
    (y_shift,) = b.run(position_offset=9)
    _close(y, y_shift, rtol=1e-9, atol=1e-9)


def _legendre(order: int, y: float) -> float:
    coef = np.zeros(order + 1)
    coef[order] = 1.0
    return float(np.polynomial.legendre.legval(y, coef))


@pytest.mark.parametrize("over,causal", [("distance", True), ("key", False)])
def test_basis_bias_matches_explicit_atoms(over, causal):
    spec = {"freqs": 2, "legendre": 3, "over": over, "max_len": 9}
    case = OpCase("attention", {"x": (1, 6, 4)}, {"heads": 2, "causal": causal, "basis": spec})
    b = _nograd(case)
    gains = torch.randn(2, 7, dtype=torch.float64)
    params = dict(
        b.params, **{"basis.gains": gains, "wq.weight": torch.zeros(4, 4, dtype=torch.float64)}
    )
    (y,) = b.run(params=params)  # q = 0: the scores are the bias alone
    n, d = 6, 2
    v = (b.inputs["x"] @ params["wv.weight"].T).view(n, 2, d)
    o = torch.zeros(n, 2, d, dtype=torch.float64)
    for h in range(2):
        for i in range(n):
            js = range(i + 1) if causal else range(n)
            scores = []
            for j in js:
                x = abs(i - j) / 9 if over == "distance" else j / 9
                atoms = [math.sin(math.pi * f * x) for f in (1, 2)]
                atoms += [math.cos(math.pi * f * x) for f in (1, 2)]
                atoms += [_legendre(k, 2 * x - 1) for k in (1, 2, 3)]
                scores.append(sum(float(gains[h, a]) * atoms[a] for a in range(7)))
            w = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
            o[i, h] = sum(w[m] * v[j, h] for m, j in enumerate(js))
    _close(y[0], o.reshape(n, 4) @ params["wo.weight"].T)


# §2 SPaR-K ----------------------------------------------------------------------------------


def _fk_dense(b, hops: int, beta: float, causal: bool, heads: int):
    x, p = b.inputs["x"], b.params
    bsz, n, dm = x.shape
    d = dm // heads
    q, k, v = (
        (x @ p[f"{w}.weight"].T).view(bsz, n, heads, d).transpose(1, 2) for w in ("wq", "wk", "wv")
    )
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    a = torch.softmax(s, -1)
    return a, v, lambda r: r.transpose(1, 2).reshape(bsz, n, dm) @ p["wo.weight"].T + p["wo.bias"]


@pytest.mark.parametrize("causal,normalize", [(True, False), (False, True)])
def test_fk_attention_matches_matrix_power_series(causal, normalize):
    hops, beta = 4, 0.7
    b = _nograd(
        OpCase(
            "fk_attention",
            {"x": (2, 6, 8)},
            {"heads": 2, "hops": hops, "beta": beta, "causal": causal, "normalize": normalize},
        )
    )
    (y,) = b.run()
    a, v, out = _fk_dense(b, hops, beta, causal, 2)
    op = sum(beta**k * torch.linalg.matrix_power(a, k) for k in range(hops + 1))
    if normalize:
        op = op * (1 - beta) / (1 - beta ** (hops + 1))
        assert torch.allclose(
            op.sum(-1), torch.ones((), dtype=op.dtype), atol=1e-12
        )  # rows sum to 1
    _close(y, out(op @ v))


def test_fk_attention_long_series_approaches_the_resolvent():
    beta = 0.5
    b = _nograd(OpCase("fk_attention", {"x": (1, 5, 4)}, {"heads": 1, "hops": 60, "beta": beta}))
    (y,) = b.run()
    a, v, out = _fk_dense(b, 60, beta, True, 1)
    _close(y, out(torch.linalg.solve(torch.eye(5, dtype=torch.float64) - beta * a, v)))


def test_spd_router_softmax_gate_and_loss_formula():
    case = OpCase("spd_router", {"x": (2, 4, 8)}, {"gate": "softmax", "sep_weight": 0.3})
    b = _nograd(case)
    p, x = b.params, b.inputs["x"]
    y, xs, xp, loss = b.run()
    basis = x @ p["basis.weight"].T
    g_s = xs / basis
    _close(g_s.sum(-1), torch.ones(2, 4, dtype=torch.float64))  # softmax over the Ds features
    lin = lambda t, n: t @ p[f"{n}.weight"].T + p[f"{n}.bias"]
    pred = lin(torch.relu(lin(xs, "pred1")), "pred2")
    ent = -(xp.abs() * torch.log(xp.abs() + 1e-8)).sum(-1).mean()
    _close(loss, 0.3 * (((pred - x) ** 2).mean() - 0.1 * ent))
    ys = lin(
        torch.relu(
            F.layer_norm(
                lin(lin(xs, "coeffs"), "proc_s1"),
                (4,),
                p["proc_s_norm.weight"],
                p["proc_s_norm.bias"],
            )
        ),
        "proc_s2",
    )
    yp = F.layer_norm(
        lin(torch.relu(lin(xp, "proc_p1")), "proc_p2"),
        (4,),
        p["proc_p_norm.weight"],
        p["proc_p_norm.bias"],
    )
    _close(y, lin(torch.cat((ys, yp), -1), "reconstruct"))


def test_verifier_stack_matches_scalar_loop():
    case = OpCase("verifier_stack", {"h": (1, 6, 8)}, {"stack": 4, "penalty": 2.0})
    b = _nograd(case)
    p, h = b.params, b.inputs["h"][0]
    with torch.no_grad():
        p["ctrl2.bias"].copy_(torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64))
    read, sig, ptr, loss = b.run()
    pi = torch.softmax(
        torch.relu(h @ p["ctrl1.weight"].T + p["ctrl1.bias"]) @ p["ctrl2.weight"].T
        + p["ctrl2.bias"],
        -1,
    ).tolist()
    e = (h @ p["enc.weight"].T + p["enc.bias"]).tolist()
    size, elem = 4, 4
    mem = [[0.0] * elem for _ in range(size)]
    ptr_v, reads, ptrs, under, over = 0.0, [], [], 0.0, 0.0
    for t in range(6):
        push, pop, _ = pi[t]
        z = [math.exp(-((s - ptr_v) ** 2) / 2) for s in range(size)]
        w = [zi / sum(z) for zi in z]
        mem = [
            [mem[s][f] * (1 - push * w[s]) + push * w[s] * e[t][f] for f in range(elem)]
            for s in range(size)
        ]
        under += pop * max(0.0, 1 - ptr_v)
        over += push * max(0.0, ptr_v - (size - 2))
        ptr_v = min(max(ptr_v + push - pop, 0.0), size - 1.0)
        zu = [math.exp(-((s - (ptr_v - 1)) ** 2) / 2) for s in range(size)]
        reads.append([sum(zu[s] / sum(zu) * mem[s][f] for s in range(size)) for f in range(elem)])
        ptrs.append(ptr_v)
    _close(read[0], torch.tensor(reads, dtype=torch.float64))
    _close(ptr[0], torch.tensor(ptrs, dtype=torch.float64))
    _close(loss, torch.tensor(2.0 * (under + over) / 6, dtype=torch.float64))
    hr = torch.cat((h, read[0]), -1)
    ref_sig = torch.sigmoid(
        torch.relu(hr @ p["head1.weight"].T + p["head1.bias"]) @ p["head2.weight"].T
        + p["head2.bias"]
    )
    _close(sig[0], ref_sig)


@pytest.mark.parametrize("heads,kv_heads,nq,nk", [(4, 4, 5, 5), (4, 2, 3, 11), (6, 1, 1, 7)])
def test_fused_attention_of_cached_rows_matches_the_explicit_scores(heads, kv_heads, nq, nk):
    """`attend_fused` (torch's fused attention, used by cached prefills) against the explicit
    softmax of q·kᵀ/√d over the keys each query may read (positions nk − nq … nk − 1 reading
    0 … own), with grouped key/value heads read by query head h as head ⌊h / G⌋."""
    from sparkc.runtime.reference.attention import attend_fused, causal_mask

    g = torch.Generator().manual_seed(heads * 100 + nk)
    d = 8
    q = torch.randn(2, nq, heads, d, generator=g, dtype=torch.float64)
    k = torch.randn(2, nk, kv_heads, d, generator=g, dtype=torch.float64)
    v = torch.randn(2, nk, kv_heads, d, generator=g, dtype=torch.float64)
    q_pos, k_pos = torch.arange(nk - nq, nk), torch.arange(nk)
    got = attend_fused(q, k, v, causal_mask(nq, nk, q_pos, k_pos))
    want = torch.empty_like(got)
    group = heads // kv_heads
    for b in range(2):
        for h in range(heads):
            for i in range(nq):
                keys = slice(0, int(q_pos[i]) + 1)
                s = k[b, keys, h // group] @ q[b, i, h] / math.sqrt(d)
                want[b, i, h] = torch.softmax(s, 0) @ v[b, keys, h // group]
    _close(got, want)
