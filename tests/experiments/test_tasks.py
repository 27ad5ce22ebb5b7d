"""The experiments' task generators and measures (sparkc/experiments/tasks.py, metrics.py).

Generators are deterministic in their `torch.Generator`, and every label is a function of the
model's input, checked against an independent plain-Python solver (a BFS over the edge list, a
stack check of the brackets, a dictionary of the listed pairs): the tasks are solvable in
principle. The AUC is checked against counting all positive-negative pairs.
"""

from __future__ import annotations

import collections
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkc.experiments import tasks
from sparkc.experiments.metrics import accuracy, auc, mean_spread, snr_db

GENERATORS = {
    "reachability": lambda g: tasks.reachability_batch(g, 8, 7, 9, 3),
    "dyck": lambda g: tasks.dyck_batch(g, 8, 20, 4, 3),
    "sinusoid": lambda g: tasks.sinusoid_batch(g, 4, 16, 2, 3, (0.1, 1.0)),
    "recall": lambda g: tasks.recall_batch(g, 4, 3, 5, 4, 10, 10),
    "copy": lambda g: tasks.copy_batch(g, 4, 12, 9),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_are_deterministic_in_their_seed(name):
    make = GENERATORS[name]
    a = make(torch.Generator().manual_seed(5))
    b = make(torch.Generator().manual_seed(5))
    c = make(torch.Generator().manual_seed(6))
    for part_a, part_b in zip(a, b):
        assert part_a.keys() == part_b.keys()
        for key in part_a:
            assert torch.equal(part_a[key], part_b[key]), key
    assert any(not torch.equal(a[0][k], c[0][k]) for k in a[0])


def bfs(adjacency: dict[int, list[int]], start: int) -> dict[int, int]:
    dist, queue = {start: 0}, collections.deque([start])
    while queue:
        node = queue.popleft()
        for nxt in adjacency[node]:
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
    return dist


def test_reachability_labels_match_a_bfs_on_the_edge_list():
    nodes, edges, max_k = 9, 14, 4
    gen = torch.Generator().manual_seed(1)
    inputs, info = tasks.reachability_batch(gen, 400, nodes, edges, max_k)
    src, dst, kind, targets = (inputs[k] for k in ("src", "dst", "kind", "targets"))
    assert src.shape == dst.shape == kind.shape == targets.shape == (400, edges + 1)
    assert int(src.max()) < nodes and int(dst.max()) < nodes and int(kind.max()) <= max_k
    assert (targets[:, :-1] == tasks.IGNORE).all() and (kind[:, :-1] == 0).all()
    for row in range(400):
        pairs = list(zip(src[row, :edges].tolist(), dst[row, :edges].tolist()))
        assert len(set(pairs)) == edges and all(u != v for u, v in pairs)
        assert pairs == [tuple(p) for p in info["edges"][row].tolist()]
        adjacency = collections.defaultdict(list)
        for u, v in pairs:
            adjacency[u].append(v)
        k, u, v = int(kind[row, -1]), int(src[row, -1]), int(dst[row, -1])
        assert 1 <= k <= max_k and u != v and k == int(info["k"][row])
        reachable = bfs(adjacency, u).get(v, math.inf) <= k
        assert reachable == bool(targets[row, -1]) == bool(info["label"][row])
    # Queries are balanced: about half are reachable.
    assert 0.4 < info["label"].float().mean() < 0.6
    fixed, fixed_info = tasks.reachability_batch(gen, 50, nodes, edges, max_k, k=2)
    assert (fixed["kind"][:, -1] == 2).all() and (fixed_info["k"] == 2).all()


def test_hop_distances_match_bfs():
    gen = torch.Generator().manual_seed(3)
    adj = torch.rand(20, 8, 8, generator=gen) < 0.2
    dist = tasks.hop_distances(adj)
    for b in range(20):
        adjacency = {u: [v for v in range(8) if adj[b, u, v]] for u in range(8)}
        for u in range(8):
            found = bfs(adjacency, u)
            assert [found.get(v, 8) for v in range(8)] == dist[b, u].tolist()


def stack_check(seq: list[int], types: int) -> list[bool]:
    """Per prefix: balanced (plain Python)."""
    stack: list[int] = []
    broken, out = False, []
    for tok in seq:
        kind, closing = tok // 2, tok % 2 == 1
        if kind >= types:
            broken = True
        elif closing:
            if not stack or stack[-1] != kind:
                broken = True
            else:
                stack.pop()
        else:
            stack.append(kind)
        out.append(not broken and not stack)
    return out


def test_dyck_strings_and_labels_match_a_stack_check():
    gen = torch.Generator().manual_seed(2)
    balanced = tasks.dyck_balanced(gen, 50, 40, 3, 2)
    for row in balanced.tolist():
        assert stack_check(row, 2)[-1]
        depth = list(itertools.accumulate(1 if t % 2 == 0 else -1 for t in row))
        assert max(depth) <= 3 and min(depth) >= 0
    inputs, info = tasks.dyck_batch(gen, 300, 24, 4, 3)
    for row, labels in zip(inputs["tokens"].tolist(), inputs["targets"].tolist()):
        assert [bool(x) for x in labels] == stack_check(row, 3)
    assert torch.equal(info["label"], inputs["targets"][:, -1].bool())
    assert 0.4 < info["label"].float().mean() < 0.6  # one edit always unbalances


def test_recall_answers_are_the_listed_values():
    inputs, info = tasks.recall_batch(torch.Generator().manual_seed(4), 30, 5, 8, 6, 12, 12)
    lay = tasks.recall_layout(12, 12)
    for tokens, targets, mask in zip(inputs["tokens"].tolist(), inputs["targets"].tolist(),
                                     info["mask"].tolist()):  # fmt: skip
        body = tokens[2 * (8 - 5) : 2 * (8 - 5) + 10]
        assert tokens[: 2 * (8 - 5)] == [lay["pad"]] * 6
        listed = dict(zip(body[0::2], body[1::2]))
        assert len(listed) == 5  # distinct keys
        answers = [(tokens[i], targets[i]) for i in range(len(tokens)) if mask[i]]
        assert len(answers) == 6
        assert all(listed[key] == value for key, value in answers)


def test_copy_second_half_repeats_the_first():
    inputs, info = tasks.copy_batch(torch.Generator().manual_seed(0), 3, 10, 7)
    tokens, targets = inputs["tokens"], inputs["targets"]
    assert torch.equal(tokens[:, 1:], targets[:, :-1])
    assert torch.equal(tokens[:, :5], targets[:, 5:])  # the copied targets
    assert (tokens[:, 5] == 0).all() and info["copy"][:, 5:].all() and not info["copy"][:, :5].any()


def test_sinusoids_have_unit_power_and_the_requested_noise():
    inputs, info = tasks.sinusoid_batch(torch.Generator().manual_seed(0), 64, 64, 3, 4, (), 0.5)
    clean, signal = inputs["clean"], inputs["signal"]
    assert torch.allclose(clean.pow(2).mean(dim=(1, 2)), torch.ones(64), atol=1e-5)
    assert abs(float((signal - clean).std()) - 0.5) < 0.02
    assert (inputs["labels"][:, -16:] == info["class"][:, None]).all()
    assert (inputs["labels"][:, :-16] == tasks.IGNORE).all()
    assert torch.equal(tasks.class_frequencies(4), tasks.class_frequencies(4))


def brute_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=30))
def test_auc_equals_the_pairwise_count(pairs):
    scores = [float(s) for s, _ in pairs]
    labels = [y for _, y in pairs]
    got = auc(torch.tensor(scores), torch.tensor(labels))
    if all(labels) or not any(labels):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(brute_auc(scores, labels))


def test_measures_on_known_values():
    assert auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert auc(torch.tensor([0.9, 0.1]), torch.tensor([False, True])) == 0.0
    assert auc(torch.zeros(4), torch.tensor([True, False, True, False])) == 0.5
    clean = torch.ones(100)
    assert snr_db(clean + 0.1, clean) == pytest.approx(20.0)
    assert snr_db(clean, clean) == math.inf
    assert accuracy(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    assert mean_spread([1.0]) == (1.0, 0.0)
    assert mean_spread([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
