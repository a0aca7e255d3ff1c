"""k-means++ seeding and Lloyd iterations: validity, determinism, agreement with scikit-learn.

Letters: N points, K centres, D features.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from torch import Tensor

from mixtures.data import make_blobs
from mixtures.models.kmeans import assign, kmeans, kmeans_plusplus


def gen(seed: int) -> torch.Generator:
    """A CPU generator with a fixed seed."""
    return torch.Generator().manual_seed(seed)


def row_indices(x: Tensor, rows: Tensor) -> Tensor:
    """Index in ``x [N, D]`` of every row of ``rows [K, D]`` (asserts each is present)."""
    match = (rows[:, None, :] == x[None, :, :]).all(-1)  # [K, N]
    assert bool(match.any(-1).all()), "a centre is not a row of x"
    return match.float().argmax(-1)


@pytest.mark.parametrize(("n", "d", "k"), [(100, 2, 5), (50, 3, 1), (20, 4, 20)])
def test_kmeans_plusplus_returns_distinct_rows(n, d, k):
    """The K seeds are K distinct rows of x (including K = 1 and K = N)."""
    x = torch.randn(n, d, generator=gen(0))
    centres = kmeans_plusplus(x, k, generator=gen(1))
    assert centres.shape == (k, d)
    assert row_indices(x, centres).unique().numel() == k


def test_kmeans_plusplus_is_deterministic():
    """The same generator seed gives the same seeds; another seed gives others."""
    x = torch.randn(200, 2, generator=gen(0))
    a = kmeans_plusplus(x, 6, generator=gen(3))
    b = kmeans_plusplus(x, 6, generator=gen(3))
    c = kmeans_plusplus(x, 6, generator=gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_kmeans_plusplus_spreads_seeds():
    """On well-separated blobs the seeds land in K different blobs."""
    x, y, _ = make_blobs(1000, 2, 5, seed=2)
    centres = kmeans_plusplus(x, 5, generator=gen(5))
    assert y[row_indices(x, centres)].unique().numel() == 5


@pytest.mark.parametrize("k", [0, -1, 11])
def test_kmeans_plusplus_invalid_k_raises(k):
    """K < 1 or K > N is refused."""
    with pytest.raises(ValueError, match="K"):
        kmeans_plusplus(torch.randn(10, 2, generator=gen(0)), k, generator=gen(1))


@pytest.mark.parametrize(("d", "k", "seed"), [(2, 4, 0), (5, 6, 1), (3, 8, 2)])
def test_kmeans_on_blobs_matches_sklearn(d, k, seed):
    """Well-separated blobs: ARI ≥ 0.99 against the truth, and inertia within 1% of
    scikit-learn's Lloyd run from the same k-means++ seeds."""
    x, y, _ = make_blobs(3000, d, k, separation=5.0, seed=seed)
    centres, labels = kmeans(x, k, num_iters=100, generator=gen(seed))
    assert centres.shape == (k, d) and labels.shape == (3000,)
    assert adjusted_rand_score(y.numpy(), labels.numpy()) >= 0.99
    # Labels are the nearest-centre assignment of the returned centres.
    assert torch.equal(labels, assign(x, centres)[0])
    inertia = (x - centres[labels]).square().sum().item()
    seeds = kmeans_plusplus(x, k, generator=gen(seed))  # the seeds kmeans started from
    ref = KMeans(k, init=seeds.double().numpy(), n_init=1, max_iter=100, tol=1e-8)
    ref.fit(x.double().numpy())
    assert inertia == pytest.approx(ref.inertia_, rel=1e-2)


def test_kmeans_improves_on_seeds():
    """Lloyd iterations never increase the inertia of the seeding."""
    x, _, _ = make_blobs(2000, 2, 6, separation=1.5, seed=3)  # overlapping blobs
    seeds = kmeans_plusplus(x, 6, generator=gen(7))
    centres, labels = kmeans(x, 6, generator=gen(7))
    seed_inertia = assign(x, seeds)[1].sum()
    assert (x - centres[labels]).square().sum() <= seed_inertia


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(("n", "k"), [(40, 3), (40, 1), (1, 1)])
def test_kmeans_duplicated_points(n, k):
    """All points equal: finite centres at that point, valid labels, no NaN."""
    x = torch.full((n, 3), 2.5)
    centres, labels = kmeans(x, k, generator=gen(0))
    assert bool(torch.isfinite(centres).all())
    torch.testing.assert_close(centres, torch.full((k, 3), 2.5))
    assert labels.shape == (n,) and bool(((labels >= 0) & (labels < k)).all())


def test_kmeans_fewer_distinct_points_than_clusters():
    """Two distinct locations, K = 4: no NaN and zero inertia."""
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0]]).repeat_interleave(10, dim=0)
    centres, labels = kmeans(x, 4, generator=gen(0))
    assert bool(torch.isfinite(centres).all())
    assert (x - centres[labels]).square().sum().item() == 0.0


def test_kmeans_reseeds_empty_cluster_at_farthest_point(monkeypatch):
    """A cluster emptied by a Lloyd step restarts at the point farthest from the other centres.

    These seeds empty cluster 0 after the first step; the data are shifted so that the farthest
    point is the origin, where an empty cluster's placeholder centre (a zero sum) would sit.
    """
    x = torch.tensor([[-5.0, -4.0], [1.0, -1.0], [0.0, -1.0], [-3.0, 3.0], [-4.0, -4.0],
                      [-5.0, -3.0], [-3.0, 2.0], [5.0, -1.0]], dtype=torch.float64)
    x = x - x[7]
    module = importlib.import_module("mixtures.models.kmeans")
    monkeypatch.setattr(module, "kmeans_plusplus", lambda x_, k, generator=None: x_[[4, 0, 3]])
    _, labels_1 = kmeans(x, 3, num_iters=1)
    assert int((labels_1 == 0).sum()) == 0  # the case under test: cluster 0 emptied
    centres, _ = kmeans(x, 3, num_iters=2)
    farthest = assign(x, centres[1:])[1].argmax()
    torch.testing.assert_close(centres[0], x[farthest])


def test_kmeans_plusplus_returns_the_seed_indices_on_offset_data():
    """Indices are exact even where distances by matrix product would mis-rank the rows."""
    gen = torch.Generator().manual_seed(0)
    x = 1e4 + 1e-5 * torch.randn(2000, 3, dtype=torch.float64, generator=gen)
    centres, idx = kmeans_plusplus(x, 5, torch.Generator().manual_seed(1), return_indices=True)
    assert torch.equal(x[idx], centres)
    assert idx.unique().numel() == 5
