"""The measures the experiments report, written out so that no extra library is needed.

Consumes score, label and signal tensors; produces plain floats: `auc` (area under the ROC
curve by the rank-sum formula, ties counted half), `accuracy`, `snr_db` (signal-to-noise ratio
of a reconstruction in decibels), and `mean_spread` (mean and sample standard deviation over
seeds, 0 for a single seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """P(score of a random positive > score of a random negative) + ½ P(equal).

    The Mann-Whitney form: with average ranks `r` of the scores (ties share their mean rank),
    AUC = (Σ r over positives − n⁺(n⁺+1)/2) / (n⁺ n⁻). NaN when either class is empty."""
    scores = scores.detach().double().flatten()
    labels = labels.detach().flatten().bool()
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # Average ranks over runs of equal scores.
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of equal entries (NaN for no entries)."""
    if predictions.numel() == 0:
        return math.nan
    return float((predictions.flatten() == labels.flatten()).double().mean())


def snr_db(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    """10·log10(Σ clean² / Σ (estimate − clean)²): the reconstruction's SNR in dB."""
    clean = clean.double()
    error = float(((estimate.double() - clean) ** 2).sum())
    power = float((clean**2).sum())
    if error == 0.0:
        return math.inf
    return 10.0 * math.log10(power / error)


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); the spread of a single value is 0."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)
