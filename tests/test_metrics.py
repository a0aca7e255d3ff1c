"""Clustering scores against scikit-learn, batch-summed metrics, BIC / AIC closed forms.

Letters: N points, C true classes, K predicted clusters.
"""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch import Tensor

from mixtures.metrics import (
    Calibration,
    ClusteringScores,
    LogLikelihood,
    adjusted_rand_index,
    aic,
    bic,
    contingency_table,
    crps_from_samples,
    normalized_mutual_info,
)


def labelings(kind: str, n: int, c: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """True labels ``[N]`` in ``[0, C)`` and predicted labels ``[N]`` in ``[0, K)``."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(c, (n,), generator=gen)
    if kind == "random":
        z = torch.randint(k, (n,), generator=gen)
    elif kind == "noisy":  # 70% copied through a relabelling, 30% random
        relabel = torch.randperm(max(c, k), generator=gen)[:c] % k
        keep = torch.rand(n, generator=gen) < 0.7
        z = torch.where(keep, relabel[y], torch.randint(k, (n,), generator=gen))
    elif kind == "permuted":  # the same partition under other names
        z = torch.randperm(c, generator=gen)[y]
    elif kind == "one_cluster":  # both trivial
        y, z = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    elif kind == "one_vs_many":  # truth trivial, prediction not
        y, z = torch.zeros(n, dtype=torch.long), torch.randint(k, (n,), generator=gen)
    else:  # "singletons": every point its own cluster on both sides
        y, z = torch.arange(n), torch.randperm(n, generator=gen)
    return y, z


CASES = [
    pytest.param("random", 60, 3, 3, 0, id="random-3x3"),
    pytest.param("random", 500, 2, 7, 1, id="random-2x7"),
    pytest.param("noisy", 300, 4, 4, 2, id="noisy-4x4"),
    pytest.param("noisy", 400, 5, 3, 3, id="noisy-5x3"),
    pytest.param("noisy", 200, 3, 6, 4, id="noisy-3x6"),
    pytest.param("permuted", 100, 5, 5, 5, id="permuted"),
    pytest.param("one_cluster", 20, 1, 1, 6, id="one_cluster"),
    pytest.param("one_vs_many", 50, 1, 4, 7, id="one_vs_many"),
    pytest.param("singletons", 12, 12, 12, 8, id="singletons"),
]


@pytest.mark.parametrize(("kind", "n", "c", "k", "seed"), CASES)
@pytest.mark.parametrize("padding", [0, 2], ids=["tight", "padded"])
def test_scores_match_sklearn(kind, n, c, k, seed, padding):
    """ARI / NMI from the contingency table equal scikit-learn's (also with empty rows and
    columns in the table, i.e. classes or clusters that no point uses)."""
    y, z = labelings(kind, n, c, k, seed)
    table = contingency_table(y, z, c + padding, k + padding)
    assert table.shape == (c + padding, k + padding) and int(table.sum()) == n
    ari, nmi = adjusted_rand_index(table), normalized_mutual_info(table)
    assert ari.item() == pytest.approx(adjusted_rand_score(y.numpy(), z.numpy()), abs=1e-12)
    assert nmi.item() == pytest.approx(normalized_mutual_info_score(y.numpy(), z.numpy()),
                                       abs=1e-12)


@pytest.mark.parametrize("kind", ["permuted", "one_cluster", "singletons"])
def test_identical_partitions_score_one(kind):
    """The same partition under other names scores exactly 1 on both scores."""
    y, z = labelings(kind, 30, 30 if kind == "singletons" else 4, 4, 9)
    table = contingency_table(y, z, int(y.max()) + 1, int(z.max()) + 1)
    assert adjusted_rand_index(table).item() == pytest.approx(1.0, abs=1e-12)
    assert normalized_mutual_info(table).item() == pytest.approx(1.0, abs=1e-12)


def test_contingency_table_counts():
    """Cell (c, k) counts the points with true class c and predicted cluster k."""
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    z = torch.tensor([1, 1, 0, 1, 0, 0])
    expected = torch.tensor([[0, 2], [2, 1], [1, 0]])
    assert torch.equal(contingency_table(y, z, 3, 2), expected)


@pytest.mark.parametrize("batch_size", [1, 37, 100, 1000])
def test_clustering_scores_over_batches(batch_size):
    """Updating over mini-batches gives the full-batch scores (and scikit-learn's)."""
    y, z = labelings("noisy", 1000, 4, 5, 10)
    full = ClusteringScores(4, 5)
    full.update(y, z)
    batched = ClusteringScores(4, 5)
    for yb, zb in zip(y.split(batch_size), z.split(batch_size), strict=True):
        batched.update(yb, zb)
    got, want = batched.compute(), full.compute()
    assert torch.equal(batched.table, full.table)
    assert got["ari"].item() == pytest.approx(want["ari"].item(), abs=1e-12)
    assert got["nmi"].item() == pytest.approx(want["nmi"].item(), abs=1e-12)
    assert got["ari"].item() == pytest.approx(adjusted_rand_score(y.numpy(), z.numpy()),
                                              abs=1e-12)


def test_log_likelihood_metric():
    """Total, count and mean over uneven batches equal those of the concatenation."""
    gen = torch.Generator().manual_seed(11)
    values = -5.0 + torch.randn(103, generator=gen)
    metric = LogLikelihood()
    for chunk in values.split(40):  # 40, 40, 23: uneven on purpose
        metric.update(chunk)
    out = metric.compute()
    assert out["count"].item() == 103
    assert out["total"].item() == pytest.approx(values.double().sum().item(), rel=1e-12)
    assert out["mean"].item() == pytest.approx(values.double().mean().item(), rel=1e-12)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["float", "tensor"])
def test_bic_aic_closed_forms(as_tensor):
    """BIC = −2 log L + p log N and AIC = −2 log L + 2 p."""
    log_lik = torch.tensor(-120.5, dtype=torch.float64) if as_tensor else -120.5
    assert float(bic(log_lik, 7, 300)) == pytest.approx(241.0 + 7 * math.log(300), rel=1e-12)
    assert float(aic(log_lik, 7)) == pytest.approx(241.0 + 14.0, rel=1e-12)
    assert float(bic(log_lik, 0, 1)) == pytest.approx(241.0, rel=1e-12)


def _gaussian_crps(mu: Tensor, sigma: Tensor, y: Tensor) -> Tensor:
    """Closed form (Gneiting & Raftery 2007): σ [z (2Φ(z) − 1) + 2φ(z) − 1/√π]."""
    z = (y - mu) / sigma
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return sigma * (z * (2 * torch.special.ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def test_crps_by_sampling_matches_the_gaussian_closed_form():
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.0, 1.0, -2.0, 5.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 2.0, 0.1], dtype=torch.float64)
    y = torch.tensor([0.3, -0.5, 1.0, 5.0], dtype=torch.float64)
    s = 200_000
    draws = mu + sigma * torch.randn(s, 4, generator=gen, dtype=torch.float64)
    est = crps_from_samples(draws, y)
    # the estimator's standard error is below σ / √S; allow 5 of them
    assert ((est - _gaussian_crps(mu, sigma, y)).abs() <= 5 * sigma / math.sqrt(s)).all()


def test_crps_sorted_formula_equals_the_pairwise_sum():
    """The O(S log S) pair sum equals the fair estimator's explicit O(S²) form."""
    gen = torch.Generator().manual_seed(1)
    draws = torch.randn(7, 3, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    pairs = (draws[:, None] - draws[None, :]).abs().sum((0, 1))
    brute = (draws - y).abs().mean(0) - pairs / (2 * 7 * 6)
    torch.testing.assert_close(crps_from_samples(draws, y), brute)
    with pytest.raises(ValueError, match="at least 2 samples"):
        crps_from_samples(draws[:1], y)


def test_calibration_of_uniform_pit_and_summed_batches():
    """Uniform PIT values: coverage ≈ the levels, small error; two batches sum to one."""
    gen = torch.Generator().manual_seed(2)
    pit = torch.rand(20_000, 2, generator=gen, dtype=torch.float64)
    whole, parts = Calibration(2, 10), Calibration(2, 10)
    whole.update(pit)
    parts.update(pit[:7000])
    parts.update(pit[7000:])
    a, b = whole.compute(), parts.compute()
    assert torch.equal(a["histogram"], b["histogram"]) and torch.equal(a["coverage"],
                                                                       b["coverage"])
    assert a["histogram"].sum() == 40_000 and a["histogram"].shape == (2, 10)
    assert torch.allclose(a["coverage"], torch.tensor([0.5, 0.9], dtype=torch.float64),
                          atol=0.01)
    assert a["error"] < 0.01
    # over-confident predictions (PIT piled at the ends) cover too little
    bad = Calibration(1, 10)
    bad.update(torch.cat([torch.full((50, 1), 0.01), torch.full((50, 1), 0.99)]))
    assert bad.compute()["coverage"][1] == 0 and bad.compute()["error"] == pytest.approx(0.4)
