"""Merge / split proposals scored from summaries: equal to the ELBO of the moved
responsibilities computed from the data; the candidate pairs are the duplicates; children
statistics are exact Gaussian moments."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import make_blobs
from torch.special import xlogy

from mixtures.distributions import DiagCovariance, FullCovariance
from mixtures.models import DPMM
from mixtures.models.dpmm_proposals import child_statistics, merge_candidates, summary_elbo


def _blobs(n=3000, centers=6, d=3, seed=0):
    x, y = make_blobs(n, centers=centers, n_features=d, random_state=seed,
                      center_box=(-15, 15))
    return torch.as_tensor(x, dtype=torch.float64), y


def _direct_elbo(model: DPMM, x: torch.Tensor, resp: torch.Tensor) -> float:
    """``L(r, q)`` from the data: Σ r E[log π N] + H(r) − KL, q the model's posterior."""
    ell = model.assignment_log_prob(x)
    return float((resp * ell).sum() - xlogy(resp, resp).sum() - model.kl())


def _set(model: DPMM, stats) -> None:
    for p, s in zip((model.counts, model.sum_x, model.sum_f), stats, strict=True):
        p.data.copy_(s)


@pytest.mark.parametrize("cov", [DiagCovariance(), FullCovariance()],
                         ids=lambda c: type(c).__name__)
def test_merge_and_split_gains_equal_the_elbo_of_the_moved_responsibilities(cov):
    """A merge (r_j + r_k) and a split (r_k s, r_k (1 − s)) scored from statistics and
    entropies alone equal the ELBO computed from the moved responsibilities and the data."""
    x, _ = _blobs()
    model = DPMM(8, 3, cov).double()
    model.initialize(x)
    resp, _ = model.local_step(x)
    # merge components 1 and 4
    merged = resp.clone()
    merged[:, 1] += merged[:, 4]
    merged[:, 4] = 0
    stats = model.statistics(x, merged)
    _set(model, stats)
    entropy = -xlogy(merged, merged).sum()
    assert float(summary_elbo(model, *stats, entropy)) == pytest.approx(
        _direct_elbo(model, x, merged), rel=1e-10)
    # split component 1 into slot 4 by arbitrary sub-responsibilities
    s = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    split = merged.clone()
    split[:, 1], split[:, 4] = merged[:, 1] * s, merged[:, 1] * (1 - s)
    stats = model.statistics(x, split)
    _set(model, stats)
    entropy = -xlogy(split, split).sum()
    assert float(summary_elbo(model, *stats, entropy)) == pytest.approx(
        _direct_elbo(model, x, split), rel=1e-10)


def test_merge_candidates_are_the_duplicated_clusters():
    """Two components sharing one cluster half-and-half are the top candidate pair; two
    components on different clusters are not a candidate (their upper bound is negative)."""
    x, y = _blobs(n=2000, centers=3)
    model = DPMM(4, 3, FullCovariance()).double()
    labels = torch.as_tensor(y)
    resp = torch.nn.functional.one_hot(labels, 4).double()
    first = (labels == 0).nonzero().flatten()
    resp[first[::2], 0], resp[first[::2], 3] = 0.0, 1.0  # cluster 0 split over 0 and 3
    model.initialize(x, resp=resp)
    active = torch.arange(4)
    pairs = merge_candidates(model, model.counts.double(), model.sum_x.double(),
                             model.sum_f.double(), active, 6)
    assert pairs[0].tolist() == [0, 3]
    assert [1, 2] not in pairs.tolist()


def test_children_carry_the_parents_count_mean_and_moments():
    """The two children's statistics sum to a Gaussian's with the parent's count and mean,
    and the children's covariance is the parent's less the split direction's share."""
    x, _ = _blobs(n=1000, centers=1)
    model = DPMM(2, 3, FullCovariance()).double()
    model.initialize(x, resp=torch.ones(1000, 1).double().expand(1000, 2) / 2)
    counts, sum_x, sum_f = child_statistics(model, model.counts.double()[:1],
                                            model.sum_x.double()[:1], model.sum_f.double()[:1])
    assert counts.tolist() == pytest.approx([250.0, 250.0])
    parent_mean = model.posterior().mean[0]
    torch.testing.assert_close(sum_x.sum(0) / counts.sum(), parent_mean)
