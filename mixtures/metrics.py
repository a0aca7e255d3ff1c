"""Evaluation metrics: clustering agreement (ARI, NMI), held-out likelihood, BIC / AIC.

Clustering scores are computed from a contingency table, which is a *sum* over points: the
:class:`ClusteringScores` metric therefore reduces exactly across mini-batches and DDP ranks.

Letters: N points, C true classes, K predicted clusters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "contingency_table",
    "adjusted_rand_index",
    "normalized_mutual_info",
    "ClusteringScores",
    "LogLikelihood",
    "bic",
    "aic",
]


def contingency_table(labels_true: Tensor, labels_pred: Tensor, num_true: int, num_pred: int):
    """Counts ``[C, K]`` of points with true class c and predicted cluster k."""
    idx = labels_true.long() * num_pred + labels_pred.long()
    counts = torch.bincount(idx, minlength=num_true * num_pred)
    return counts.reshape(num_true, num_pred)


def _comb2(x: Tensor) -> Tensor:
    return x * (x - 1) / 2


def adjusted_rand_index(table: Tensor) -> Tensor:
    """Adjusted Rand index (Hubert & Arabie) from a contingency table ``[C, K]``."""
    t = table.double()
    n = t.sum()
    sum_cells = _comb2(t).sum()
    sum_rows = _comb2(t.sum(1)).sum()
    sum_cols = _comb2(t.sum(0)).sum()
    total = _comb2(n)
    expected = sum_rows * sum_cols / total if total > 0 else torch.zeros_like(n)
    max_index = (sum_rows + sum_cols) / 2
    denom = max_index - expected
    if denom == 0:  # both partitions trivial (one cluster each, or all singletons)
        return torch.ones((), dtype=torch.float64, device=t.device)
    return (sum_cells - expected) / denom


def normalized_mutual_info(table: Tensor) -> Tensor:
    """Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's
    default), from a contingency table ``[C, K]``."""
    t = table.double()
    n = t.sum()
    p = t / n
    pr = p.sum(1, keepdim=True)
    pc = p.sum(0, keepdim=True)
    nz = p > 0
    mi = (p[nz] * (p[nz].log() - (pr * pc).expand_as(p)[nz].log())).sum()
    h_r = -(pr[pr > 0] * pr[pr > 0].log()).sum()
    h_c = -(pc[pc > 0] * pc[pc > 0].log()).sum()
    if h_r == 0 and h_c == 0:
        return torch.ones((), dtype=torch.float64, device=t.device)
    denom = (h_r + h_c) / 2
    return (mi / denom).clamp(0.0, 1.0)


class ClusteringScores(Metric):
    """ARI and NMI between true classes and predicted clusters, summed over batches / ranks.

    Args:
        num_true: number of true classes C.
        num_pred: number of clusters K.
    """

    full_state_update = False

    def __init__(self, num_true: int, num_pred: int) -> None:
        super().__init__()
        self.num_true, self.num_pred = int(num_true), int(num_pred)
        self.add_state(
            "table", torch.zeros(self.num_true, self.num_pred, dtype=torch.long), "sum"
        )

    def update(self, labels_true: Tensor, labels_pred: Tensor) -> None:
        self.table += contingency_table(labels_true, labels_pred, self.num_true, self.num_pred)

    def compute(self) -> dict[str, Tensor]:
        return {"ari": adjusted_rand_index(self.table), "nmi": normalized_mutual_info(self.table)}


class LogLikelihood(Metric):
    """Sum of per-point log-likelihoods and the number of points (exact under DDP)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), "sum")

    def update(self, log_prob: Tensor) -> None:
        self.total += log_prob.detach().double().sum()
        self.count += log_prob.numel()

    def compute(self) -> dict[str, Tensor]:
        return {"total": self.total, "count": self.count, "mean": self.total / self.count}


def bic(total_log_likelihood: float | Tensor, num_parameters: int, num_points: int | Tensor):
    """Bayesian information criterion ``−2 log L + p log N`` (lower is better)."""
    return -2.0 * total_log_likelihood + num_parameters * math.log(float(num_points))


def aic(total_log_likelihood: float | Tensor, num_parameters: int):
    """Akaike information criterion ``−2 log L + 2 p`` (lower is better)."""
    return -2.0 * total_log_likelihood + 2.0 * num_parameters
