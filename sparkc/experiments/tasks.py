"""The synthetic tasks of the experiments, drawn deterministically from a `torch.Generator`.

Each generator consumes a generator and sizes and produces a pair `(inputs, info)`: `inputs`
are the model's inputs (`tokens`/`targets`, or float signals), `info` what the evaluation needs
besides (the hop budget and label of a reachability query, a noise level, ...). The same
generator state gives the same tensors on every machine (all draws happen on the CPU).

- `reachability_batch`: a random directed graph as one position per edge (source and target
  ids), then a query position (u, v, hop budget k); label: v reachable from u in at most k hops
  (by `hop_distances`, a BFS by boolean matrix products), positives and negatives in equal
  measure.
- `dyck_batch`: balanced bracket strings of bounded depth, half of them corrupted by one edit;
  label at every position: the prefix is balanced (`prefix_balanced`, a stack check).
- `sinusoid_batch`: sums of sinusoids whose frequencies depend on a class, plus Gaussian noise.
- `recall_batch`: multi-query associative recall (key-value pairs, then queried keys).
- `copy_batch`: a random segment, a separator, and the segment again (long-range copying).
"""

from __future__ import annotations

import math

import torch

IGNORE = -100  # cross_entropy's ignore_index

Batch = dict[str, torch.Tensor]


# ---- k-hop reachability ------------------------------------------------------------------


def hop_distances(adj: torch.Tensor) -> torch.Tensor:
    """Shortest-path lengths of the directed graphs `adj` [B, n, n] (bool, adj[b, u, v]: edge
    u -> v); unreachable pairs get n, a node reaches itself in 0 hops."""
    batch, n, _ = adj.shape
    eye = torch.eye(n, dtype=torch.bool).expand(batch, n, n)
    dist = torch.full((batch, n, n), n, dtype=torch.long)
    dist[eye] = 0
    reach = eye.clone()
    step_adj = adj.double()
    for step in range(1, n):
        grown = reach | (torch.bmm(reach.double(), step_adj) > 0)
        dist[grown & ~reach] = step
        if torch.equal(grown, reach):
            break
        reach = grown
    return dist


def reachability_batch(
    gen: torch.Generator, batch: int, nodes: int, edges: int, max_k: int, k: int | None = None
) -> tuple[Batch, Batch]:
    """`batch` graphs of `nodes` nodes and `edges` distinct directed edges (no self loops) in
    random order, then one query position. Position i < edges is the edge `src[i] -> dst[i]`
    with `kind` 0; the last position holds the query pair (u, v) in `src`/`dst` and the hop
    budget in `kind` (1..max_k; `k` fixes it, default uniform), and the target (0/1). Half the
    queries are reachable within the budget; of the others, half (where the graph has one) are
    at a finite distance beyond it. Info: `k`, `label`, `edges` [B, E, 2]."""
    if not 0 < edges <= nodes * (nodes - 1):
        raise ValueError(f"edges must be in 1..{nodes * (nodes - 1)}")
    scores = torch.rand(batch, nodes * nodes, generator=gen)
    scores[:, torch.arange(nodes) * (nodes + 1)] = 2.0  # never a self loop
    flat = torch.argsort(scores, dim=1)[:, :edges]
    u_e, v_e = flat // nodes, flat % nodes
    adj = torch.zeros(batch, nodes, nodes, dtype=torch.bool)
    adj.view(batch, -1).scatter_(1, flat, True)
    dist = hop_distances(adj)
    if k is None:
        hops = torch.randint(1, max_k + 1, (batch,), generator=gen)
    else:
        hops = torch.full((batch,), k, dtype=torch.long)
    want = torch.rand(batch, generator=gen) < 0.5
    hard = torch.rand(batch, generator=gen) < 0.5
    off = ~torch.eye(nodes, dtype=torch.bool)
    bound = hops[:, None, None]
    pos = ((dist <= bound) & off).view(batch, -1)
    neg = (dist > bound).view(batch, -1)
    near = ((dist > bound) & (dist < nodes)).view(batch, -1)
    neg = torch.where((hard[:, None] & near.any(1, keepdim=True)), near, neg)
    mask = torch.where(want[:, None], pos, neg)
    other = torch.where(want[:, None], neg, pos)
    mask = torch.where(mask.any(1, keepdim=True), mask, other)
    pick = torch.multinomial(mask.double(), 1, generator=gen)[:, 0]
    qu, qv = pick // nodes, pick % nodes
    label = dist[torch.arange(batch), qu, qv] <= hops
    src = torch.cat([u_e, qu[:, None]], 1)
    dst = torch.cat([v_e, qv[:, None]], 1)
    kind = torch.zeros_like(src)
    kind[:, -1] = hops
    targets = torch.full_like(src, IGNORE)
    targets[:, -1] = label.long()
    info = {"k": hops, "label": label, "edges": torch.stack([u_e, v_e], -1)}
    return {"src": src, "dst": dst, "kind": kind, "targets": targets}, info


# ---- Dyck ----------------------------------------------------------------------------------


def dyck_balanced(
    gen: torch.Generator, batch: int, length: int, max_depth: int, types: int
) -> torch.Tensor:
    """Balanced strings of even `length` with nesting depth <= `max_depth`: token `2t` opens a
    bracket of type t, `2t + 1` closes it. At each free step an opening is drawn with p = ½."""
    if length % 2 or length < 2 or max_depth < 1 or types < 1:
        raise ValueError("need an even length >= 2, max_depth >= 1 and types >= 1")
    rows = torch.arange(batch)
    stack = torch.zeros(batch, max_depth + 1, dtype=torch.long)
    depth = torch.zeros(batch, dtype=torch.long)
    out = torch.empty(batch, length, dtype=torch.long)
    for t in range(length):
        remaining = length - t
        must_close = (depth >= remaining) | (depth >= max_depth)
        coin = torch.rand(batch, generator=gen) < 0.5
        opening = (depth == 0) | (~must_close & coin)
        kind = torch.randint(types, (batch,), generator=gen)
        top = stack[rows, (depth - 1).clamp(min=0)]
        stack[rows, depth.clamp(max=max_depth)] = torch.where(opening, kind, stack[rows, depth])
        out[:, t] = torch.where(opening, 2 * kind, 2 * top + 1)
        depth = depth + torch.where(opening, 1, -1)
    return out


def prefix_balanced(tokens: torch.Tensor, types: int) -> torch.Tensor:
    """[B, L] bool: tokens[:, :t+1] is a balanced string (a stack check: every closing bracket
    matches the innermost open one, and none is left open)."""
    batch, length = tokens.shape
    rows = torch.arange(batch)
    stack = torch.zeros(batch, length + 1, dtype=torch.long)
    depth = torch.zeros(batch, dtype=torch.long)
    broken = torch.zeros(batch, dtype=torch.bool)
    out = torch.empty(batch, length, dtype=torch.bool)
    for t in range(length):
        tok = tokens[:, t]
        kind, closing = tok // 2, (tok % 2) == 1
        top = stack[rows, (depth - 1).clamp(min=0)]
        bad = closing & ((depth == 0) | (top != kind))
        broken = broken | bad | (kind >= types)
        stack[rows, depth] = torch.where(closing, stack[rows, depth], kind)
        depth = torch.where(closing, (depth - 1).clamp(min=0), depth + 1)
        out[:, t] = ~broken & (depth == 0)
    return out


def dyck_batch(
    gen: torch.Generator, batch: int, length: int, max_depth: int, types: int
) -> tuple[Batch, Batch]:
    """Balanced strings, half of them corrupted at one random position (a closing bracket's or
    an opening bracket's type changed, or a bracket's direction flipped: never balanced
    afterwards). Targets: `prefix_balanced` at every position. Info: `label` (the whole
    string is balanced)."""
    tokens = dyck_balanced(gen, batch, length, max_depth, types)
    corrupt = torch.rand(batch, generator=gen) < 0.5
    where = torch.randint(length, (batch,), generator=gen)
    retype = (torch.rand(batch, generator=gen) < 0.5) & (types > 1)
    shift = torch.randint(1, max(types, 2), (batch,), generator=gen)
    rows = torch.arange(batch)
    old = tokens[rows, where]
    new = torch.where(retype, 2 * ((old // 2 + shift) % types) + old % 2, old ^ 1)
    tokens[rows, where] = torch.where(corrupt, new, old)
    labels = prefix_balanced(tokens, types)
    return {"tokens": tokens, "targets": labels.long()}, {"label": labels[:, -1]}


# ---- structured signals plus noise -----------------------------------------------------------

CLASS_BANK_SEED = 20_231_123  # the task's definition: the same frequencies for every run


def class_frequencies(classes: int, per_class: int = 3) -> torch.Tensor:
    """[classes, per_class] frequencies in cycles per position, fixed for the task."""
    gen = torch.Generator().manual_seed(CLASS_BANK_SEED)
    return 0.02 + 0.2 * torch.rand(classes, per_class, generator=gen, dtype=torch.float64)


def sinusoid_batch(
    gen: torch.Generator,
    batch: int,
    length: int,
    channels: int,
    classes: int,
    levels: tuple[float, ...],
    level: float | None = None,
) -> tuple[Batch, Batch]:
    """Per sample a class c, per channel a sum of sinusoids at c's frequencies with random
    amplitudes (0.5..1) and phases, scaled to unit mean power; `signal = clean + sigma * noise`
    with sigma from `levels` (or `level`). The class is the target of the last quarter of the
    positions. Info: `sigma` [B], `class` [B]."""
    freqs = class_frequencies(classes)
    cls = torch.randint(classes, (batch,), generator=gen)
    f = freqs[cls][:, None, :]  # [B, 1, F]
    amp = 0.5 + 0.5 * torch.rand(batch, channels, f.shape[-1], generator=gen, dtype=torch.float64)
    phase = (
        2 * math.pi * torch.rand(batch, channels, f.shape[-1], generator=gen, dtype=torch.float64)
    )
    t = torch.arange(length, dtype=torch.float64)[None, :, None, None]
    waves = amp[:, None] * torch.sin(2 * math.pi * f[:, :, None, :] * t + phase[:, None])
    clean = waves.sum(-1)  # [B, N, C]
    clean = clean / clean.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
    if level is None:
        pick = torch.randint(len(levels), (batch,), generator=gen)
        sigma = torch.tensor(levels, dtype=torch.float64)[pick]
    else:
        sigma = torch.full((batch,), float(level), dtype=torch.float64)
    noise = torch.randn(batch, length, channels, generator=gen, dtype=torch.float64)
    signal = clean + sigma[:, None, None] * noise
    labels = torch.full((batch, length), IGNORE, dtype=torch.long)
    labels[:, length - max(1, length // 4) :] = cls[:, None]
    inputs = {"signal": signal.float(), "clean": clean.float(), "labels": labels}
    return inputs, {"sigma": sigma, "class": cls}


# ---- associative recall and copying ----------------------------------------------------------


def recall_layout(n_keys: int, n_values: int) -> dict[str, int]:
    """Token ids: 0 padding, keys 1..n_keys, values after them; `vocab` the size."""
    return {"pad": 0, "key": 1, "value": 1 + n_keys, "vocab": 1 + n_keys + n_values}


def recall_batch(
    gen: torch.Generator,
    batch: int,
    pairs: int,
    max_pairs: int,
    queries: int,
    n_keys: int,
    n_values: int,
) -> tuple[Batch, Batch]:
    """Multi-query associative recall: left padding, `pairs` (distinct key, random value)
    pairs, then `queries` (key, value) pairs whose keys are drawn from the listed ones; the
    target at each queried key is its value. Length `2 * (max_pairs + queries)` for every
    `pairs <= max_pairs`. Info: `mask` of the answer positions."""
    if not 0 < pairs <= min(max_pairs, n_keys):
        raise ValueError(f"pairs must be in 1..{min(max_pairs, n_keys)}")
    lay = recall_layout(n_keys, n_values)
    keys = torch.argsort(torch.rand(batch, n_keys, generator=gen), 1)[:, :pairs]
    values = torch.randint(n_values, (batch, pairs), generator=gen)
    asked = torch.randint(pairs, (batch, queries), generator=gen)
    q_keys, q_values = keys.gather(1, asked), values.gather(1, asked)
    listed = torch.stack([lay["key"] + keys, lay["value"] + values], 2).view(batch, -1)
    probe = torch.stack([lay["key"] + q_keys, lay["value"] + q_values], 2).view(batch, -1)
    pad = torch.zeros(batch, 2 * (max_pairs - pairs), dtype=torch.long)
    tokens = torch.cat([pad, listed, probe], 1)
    targets = torch.full_like(tokens, IGNORE)
    start = tokens.shape[1] - 2 * queries
    targets[:, start::2] = lay["value"] + q_values
    return {"tokens": tokens, "targets": targets}, {"mask": targets != IGNORE}


def copy_batch(gen: torch.Generator, batch: int, length: int, vocab: int) -> tuple[Batch, Batch]:
    """Next-token prediction on `segment, separator, segment` (`length` positions, even; the
    segment is `length / 2` random tokens of 1..vocab-1, the separator 0). Info: `copy`, the
    positions whose target is a copied token (the second half)."""
    if length % 2 or length < 4:
        raise ValueError("the copy task needs an even length >= 4")
    half = length // 2
    seg = torch.randint(1, vocab, (batch, half), generator=gen)
    full = torch.cat([seg, torch.zeros(batch, 1, dtype=torch.long), seg], 1)
    copy = torch.zeros(batch, length, dtype=torch.bool)
    copy[:, half:] = True
    return {"tokens": full[:, :-1], "targets": full[:, 1:]}, {"copy": copy}
