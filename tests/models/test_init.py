"""One initialisation for every model (mixtures.models.init): scikit-learn's meanings."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from mixtures.data.blobs import make_blobs
from mixtures.distributions import DiagCovariance, FullCovariance, SharedFullCovariance
from mixtures.models.init import (
    INIT_METHODS,
    check_init,
    cluster_moments,
    initial_responsibilities,
    kmeans_labels,
)
from mixtures.models.kmeans import assign, kmeans, kmeans_plusplus


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return make_blobs(600, 2, 4, separation=5.0, seed=1, dtype=torch.float64)[0]


def test_the_methods_are_scikit_learns():
    assert INIT_METHODS == ("kmeans", "k-means++", "random", "random_from_data")


def test_kmeans_is_one_hot_on_the_kmeans_labels(x):
    resp = initial_responsibilities(x, 4, 1, "kmeans", seed=7, kmeans_iters=50)
    _, labels = kmeans(x, 4, 50, torch.Generator().manual_seed(7))
    assert resp.shape == (600, 1, 4)
    assert torch.equal(resp[:, 0], torch.nn.functional.one_hot(labels, 4).double())


def test_kmeans_plus_plus_marks_the_seeds_or_assigns_every_point(x):
    resp = initial_responsibilities(x, 4, 1, "k-means++", seed=2)[:, 0]
    seeds, idx = kmeans_plusplus(x, 4, torch.Generator().manual_seed(2), return_indices=True)
    assert torch.equal(resp.sum(0), torch.ones(4, dtype=resp.dtype))
    assert torch.equal(resp[idx], torch.eye(4, dtype=resp.dtype))
    assert int((resp.sum(-1) > 0).sum()) == 4
    every = initial_responsibilities(x, 4, 1, "k-means++", seed=2, assign_all=True)[:, 0]
    assert torch.equal(every.argmax(-1), assign(x, seeds)[0])
    assert torch.equal(every.sum(-1), torch.ones(600, dtype=every.dtype))


def test_random_and_random_from_data(x):
    soft = initial_responsibilities(x, 4, 1, "random", seed=0)[:, 0]
    assert (soft > 0).all()
    torch.testing.assert_close(soft.sum(-1), torch.ones(600, dtype=soft.dtype))
    hard = initial_responsibilities(x, 4, 1, "random_from_data", seed=0)[:, 0]
    rows = (hard.sum(-1) > 0).nonzero().flatten()
    assert rows.numel() == 4 and torch.equal(hard[rows].sum(0), torch.ones(4, dtype=hard.dtype))


def test_restart_r_uses_seed_plus_r(x):
    resp = initial_responsibilities(x, 4, 3, "kmeans", seed=10, kmeans_iters=20)
    for r in range(3):
        single = initial_responsibilities(x, 4, 1, "kmeans", seed=10 + r, kmeans_iters=20)
        assert torch.equal(resp[:, r], single[:, 0])


def test_a_given_generator_is_used(x):
    a = initial_responsibilities(x, 4, 1, "random", generator=torch.Generator().manual_seed(5))
    b = initial_responsibilities(x, 4, 1, "random", seed=5)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="a generator serves one restart"):
        initial_responsibilities(x, 4, 2, "random", generator=torch.Generator())


def test_bad_arguments_are_clear(x):
    with pytest.raises(ValueError, match="model.net.init='spectral' is unknown"):
        check_init("spectral", name="model.net.init")
    with pytest.raises(ValueError, match="kmeans_iters must be an integer ≥ 0"):
        check_init("kmeans", -1)
    with pytest.raises(ValueError, match="num_components=700 exceeds the number of training"):
        initial_responsibilities(x, 700)


@pytest.mark.parametrize("cov", [FullCovariance(min_scale=1e-6), DiagCovariance(min_scale=1e-6),
                                 SharedFullCovariance(min_scale=1e-6)])
def test_cluster_moments_are_the_clusters_mean_and_covariance(x, cov):
    """Hard labels: counts, means and (population) covariances of each cluster, projected on the
    type — pooled within-cluster for the shared type, diagonal for diag."""
    resp = initial_responsibilities(x, 4, 1, "kmeans", seed=0)[:, 0]
    counts, means, raw = cluster_moments(x, resp, cov, reg_covar=0.0)
    labels = resp.argmax(-1).numpy()
    xn = x.numpy()
    covs = []
    for k in range(4):
        xk = xn[labels == k]
        assert counts[k].item() == pytest.approx(len(xk))
        np.testing.assert_allclose(means[k].numpy(), xk.mean(0), rtol=1e-10, atol=1e-10)
        covs.append(np.cov(xk.T, bias=True))
    dense = cov.covariance(raw, 2).expand(4, 2, 2).numpy()
    if cov.shared:
        pooled = sum(c * counts[k].item() for k, c in enumerate(covs)) / len(xn)
        np.testing.assert_allclose(dense[0], pooled, rtol=1e-8)
    elif isinstance(cov, DiagCovariance):
        for k in range(4):
            np.testing.assert_allclose(np.diag(dense[k]), np.diag(covs[k]), rtol=1e-8)
    else:
        np.testing.assert_allclose(dense, np.stack(covs), rtol=1e-8, atol=1e-12)


def test_float32_points_give_float32_responsibilities_of_the_float64_clustering():
    """No float64 detour: float32 points give float32 responsibilities, and the same k-means
    clustering as the float64 copy of the points."""
    x32 = make_blobs(3000, 3, 5, separation=2.0, seed=8)[0]
    r32 = initial_responsibilities(x32, 5, 2, "kmeans", seed=1)
    r64 = initial_responsibilities(x32.double(), 5, 2, "kmeans", seed=1)
    assert r32.dtype == torch.float32 and r64.dtype == torch.float64
    assert (r32.argmax(-1) != r64.argmax(-1)).sum() <= 2
    for method in ("k-means++", "random_from_data"):
        every = initial_responsibilities(x32, 5, 1, method, seed=1, assign_all=True)
        assert every.dtype == torch.float32
        assert torch.equal(every.sum(-1), torch.ones(3000, 1))


def test_restarts_on_a_subsample_use_seed_plus_r(monkeypatch):
    """Past the subsample size, restarts still run together and restart r is seed + r alone."""
    monkeypatch.setattr(importlib.import_module("mixtures.models.kmeans"), "_SAMPLE", 400)  # < N
    x = make_blobs(4000, 2, 4, separation=1.5, seed=2)[0]
    resp = initial_responsibilities(x, 4, 3, "kmeans", seed=20, kmeans_iters=30)
    for r in range(3):
        single = initial_responsibilities(x, 4, 1, "kmeans", seed=20 + r, kmeans_iters=30)
        assert torch.equal(resp[:, r], single[:, 0])


def test_kmeans_labels_are_the_kmeans_responsibilities():
    """``kmeans_labels`` ``[N, R]`` one-hot encoded is ``initial_responsibilities(kmeans)``."""
    x, _, _ = make_blobs(3000, 3, 5, separation=2.0, seed=9)
    labels = kmeans_labels(x, 5, 3, seed=4)
    resp = initial_responsibilities(x, 5, 3, "kmeans", 4)
    assert labels.shape == (3000, 3) and labels.dtype == torch.int64
    assert torch.equal(resp.argmax(-1), labels) and bool((resp.sum(-1) == 1).all())
    with pytest.raises(ValueError, match="a generator serves one restart"):
        kmeans_labels(x, 5, 2, generator=torch.Generator())
