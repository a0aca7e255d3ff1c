"""Evaluation metrics: clustering agreement (ARI, NMI), held-out likelihood, BIC / AIC, and
for conditional densities calibration (PIT histogram, interval coverage) and CRPS.

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
    "Calibration",
    "ClassificationScores",
    "auroc",
    "crps_from_samples",
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


def crps_from_samples(samples: Tensor, y: Tensor) -> Tensor:
    """Continuous ranked probability score of ``y`` under the distribution of ``samples``, by
    the unbiased ("fair") estimator ``mean_i |X_i − y| − Σ_{i≠j} |X_i − X_j| / (2 S (S − 1))``;
    the pair sum is ``2 Σ_i (2i − S − 1) X_(i)`` over the sorted samples (O(S log S)).

    Args:
        samples: ``[S, *B]`` draws (S ≥ 2) of a scalar predictive distribution.
        y: observations ``[*B]``.

    Returns:
        ``[*B]`` (lower is better; in the units of ``y``).
    """
    s = samples.shape[0]
    if s < 2:
        raise ValueError(f"CRPS by sampling needs at least 2 samples, got {s}.")
    spread = (samples - y).abs().mean(0)
    ordered = samples.sort(0).values
    rank = torch.arange(1, s + 1, device=samples.device, dtype=samples.dtype)
    coef = (2 * rank - s - 1).reshape(s, *([1] * (samples.dim() - 1)))
    pairs = 2 * (coef * ordered).sum(0)  # Σ_{i,j} |X_i − X_j|
    return spread - pairs / (2 * s * (s - 1))


class Calibration(Metric):
    """Calibration of predictive distributions from PIT values ``u = F(y)`` (uniform when the
    predictions are calibrated), summed over batches and DDP ranks.

    Tracks a histogram of ``u`` per target dimension and the coverage of central intervals:
    the ``α`` central interval contains ``y`` iff ``|u − ½| ≤ α/2``.

    Args:
        num_targets: D (PIT values are per target dimension).
        num_bins: histogram bins on [0, 1].
        levels: central-interval levels α whose coverage is reported.
    """

    full_state_update = False

    def __init__(self, num_targets: int, num_bins: int = 20,
                 levels: tuple[float, ...] = (0.5, 0.9)) -> None:
        super().__init__()
        if not all(0 < a < 1 for a in levels):
            raise ValueError(f"coverage levels must lie in (0, 1), got {levels}.")
        self.num_bins, self.levels = int(num_bins), tuple(float(a) for a in levels)
        self.add_state("histogram", torch.zeros(num_targets, self.num_bins, dtype=torch.long),
                       "sum")
        self.add_state("covered", torch.zeros(len(self.levels), dtype=torch.long), "sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), "sum")

    def update(self, pit: Tensor) -> None:
        """``pit``: ``[N, D]`` values in [0, 1]."""
        pit = pit.detach().reshape(-1, self.histogram.shape[0]).double().clamp(0, 1)
        bins = (pit * self.num_bins).long().clamp_max(self.num_bins - 1)  # [N, D]
        offset = torch.arange(pit.shape[1], device=pit.device) * self.num_bins
        counts = torch.bincount((bins + offset).flatten(), minlength=self.histogram.numel())
        self.histogram += counts.reshape(self.histogram.shape)
        half = torch.tensor(self.levels, device=pit.device, dtype=pit.dtype) / 2
        inside = (pit - 0.5).abs().unsqueeze(-1) <= half  # [N, D, L]
        self.covered += inside.sum((0, 1))
        self.count += pit.numel()

    def compute(self) -> dict[str, Tensor]:
        """``coverage`` ``[L]`` (fraction of targets, over points and dimensions, inside each
        central interval), ``histogram`` ``[D, bins]`` and ``error``: the largest gap between
        the PIT's empirical CDF and the uniform CDF at the bin edges (0 when calibrated)."""
        count = self.count.double().clamp_min(1)
        hist = self.histogram.double()
        cdf = hist.cumsum(-1) / hist.sum(-1, keepdim=True).clamp_min(1)
        edges = torch.arange(1, self.num_bins + 1, device=cdf.device, dtype=cdf.dtype)
        error = (cdf - edges / self.num_bins).abs().amax()
        return {"coverage": self.covered.double() / count, "histogram": self.histogram,
                "error": error}


class ClassificationScores(Metric):
    """Accuracy, mean NLL and expected calibration error (ECE) of class log-probabilities,
    from sums over batches and DDP ranks (exact: the states are counts and sums).

    ECE = Σ_b (n_b / N) |acc_b − conf_b| over ``num_bins`` equal-width bins of the top-class
    confidence (Guo et al. 2017, 15 bins by default).
    """

    full_state_update = False

    def __init__(self, num_bins: int = 15) -> None:
        super().__init__()
        self.num_bins = int(num_bins)
        self.add_state("count", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("correct", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("nll", torch.zeros((), dtype=torch.float64), "sum")
        for name in ("bin_count", "bin_conf", "bin_correct"):
            self.add_state(name, torch.zeros(self.num_bins, dtype=torch.float64), "sum")

    def update(self, log_probs: Tensor, labels: Tensor) -> None:
        """``log_probs`` ``[N, C]`` (normalised), ``labels`` ``[N]``."""
        log_probs = log_probs.detach().double()
        labels = labels.long()
        conf, pred = log_probs.max(-1)
        conf = conf.exp()
        hit = (pred == labels).double()
        self.count += labels.numel()
        self.correct += hit.sum()
        self.nll -= log_probs.gather(-1, labels[:, None]).sum()
        bins = (conf * self.num_bins).long().clamp(0, self.num_bins - 1)
        self.bin_count += torch.bincount(bins, minlength=self.num_bins).double()
        self.bin_conf += torch.bincount(bins, weights=conf, minlength=self.num_bins)
        self.bin_correct += torch.bincount(bins, weights=hit, minlength=self.num_bins)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp_min(1)
        ece = (self.bin_correct - self.bin_conf).abs().sum() / n
        return {"acc": self.correct / n, "nll": self.nll / n, "ece": ece}


def auroc(scores_in: Tensor, scores_out: Tensor) -> float:
    """Area under the ROC curve for telling in-distribution inputs (higher score) from
    out-of-distribution ones: the probability that a random in-distribution score exceeds a
    random out-of-distribution one, ties counting one half (Mann-Whitney U)."""
    s = torch.cat([scores_in.flatten(), scores_out.flatten()]).double().cpu()
    n_in, n_out = scores_in.numel(), scores_out.numel()
    order = s.argsort()
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=s.dtype)
    # average ranks over ties
    uniq, inverse = torch.unique(s, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=s.dtype).index_add_(0, inverse, ranks)
    counts = torch.zeros(uniq.numel(), dtype=s.dtype).index_add_(0, inverse, torch.ones_like(s))
    ranks = (sums / counts)[inverse]
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2
    return float(u / (n_in * n_out))
