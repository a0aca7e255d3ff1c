"""Memoized VI for the DPMM: the summary ELBO is the ELBO, moves are scored exactly from
summaries, the objective never decreases after the first lap, and merges / splits find K."""

from __future__ import annotations

import io

import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from torch.special import xlogy

from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    UnitCovariance,
)
from mixtures.models import DPMM
from mixtures.models.memoized import MemoizedVI

COVARIANCES = [UnitCovariance(), ScalarCovariance(), DiagCovariance(), FullCovariance()]


def _blobs(n=3000, centers=6, d=3, seed=0, std=1.0):
    x, y = make_blobs(n, centers=centers, n_features=d, random_state=seed, cluster_std=std,
                      center_box=(-15, 15))
    return torch.as_tensor(x, dtype=torch.float64), y


def _direct_elbo(model: DPMM, x: torch.Tensor, resp: torch.Tensor) -> float:
    """``L(r, q)`` from the data: Σ r E[log π N] + H(r) − KL, q the model's posterior."""
    ell = model.assignment_log_prob(x)
    return float((resp * ell).sum() - xlogy(resp, resp).sum() - model.kl())


def _set(model: DPMM, stats) -> None:
    for p, s in zip((model.counts, model.sum_x, model.sum_f), stats, strict=True):
        p.data.copy_(s)


@pytest.mark.parametrize("cov", COVARIANCES, ids=lambda c: type(c).__name__)
def test_summary_elbo_is_the_elbo_of_the_cached_responsibilities(cov):
    """After a visit the summaries' ELBO equals L(r, q) computed from the points, for every
    covariance type; at a fixed point it equals the model's collapsed ELBO."""
    x, _ = _blobs()
    model = DPMM(10, 3, cov).double()
    memo = MemoizedVI(model, 1, moves=False)
    memo.initialize([x])
    for _ in range(3):
        resp, _ = model.local_step(x)  # the responsibilities the visit will cache
        memo.visit(0, x)
        memo.end_lap()
        assert float(memo.elbo()) == pytest.approx(_direct_elbo(model, x, resp), rel=1e-10)
    memo.moves = True  # (plain coordinate ascent takes hundreds of laps on this data)
    memo.fit([x], max_laps=300, tol=1e-12)
    assert float(memo.elbo()) == pytest.approx(float(model.elbo(x)), rel=1e-9)


def test_elbo_never_decreases_after_the_first_lap():
    """Mini-batches, moves on: the objective after every visit and every lap's moves is
    non-decreasing (to float64 rounding) — from the first step, since the initialisation
    pass fills every summary."""
    x, _ = _blobs(n=4000, centers=8, d=4, seed=1)
    model = DPMM(16, 4, FullCovariance()).double()
    batches = list(x.split(700))  # a short last batch
    memo = MemoizedVI(model, len(batches))
    memo.initialize(batches, num_clusters=3)
    trace = [float(memo.elbo())]
    for _ in range(8):
        for b, xb in enumerate(batches):
            memo.visit(b, xb)
            trace.append(float(memo.elbo()))
        memo.end_lap()
        trace.append(float(memo.elbo()))
    steps = torch.tensor(trace).diff()
    assert float(steps.min()) >= -1e-9 * abs(trace[-1]), steps.min()


def test_after_one_lap_the_global_statistics_are_the_sum_of_the_batches():
    """Mini-batch memoized VI without moves reaches the full-batch fixed point; the global
    statistics are exactly the sum of the cached ones."""
    x, _ = _blobs(n=2000)
    full, mini = DPMM(8, 3, DiagCovariance()).double(), DPMM(8, 3, DiagCovariance()).double()
    one, many = MemoizedVI(full, 1, moves=False), MemoizedVI(mini, 5, moves=False)
    one.initialize([x])
    batches = list(x.split(400))
    many.initialize(batches, sample=x)
    for _ in range(300):
        one.visit(0, x)
        one.end_lap()
        for b, xb in enumerate(batches):
            many.visit(b, xb)
        many.end_lap()
    for total, name in zip(many.total, ("counts", "sum_x", "sum_f"), strict=True):
        torch.testing.assert_close(total, many.cache[name].sum(0), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(mini.counts, full.counts, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mini.means, full.means, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("start", "batch"), [(None, None), (None, 500), (1, 500), (3, None)])
def test_merges_and_splits_find_the_clusters(start, batch):
    """Truncation 24 on 8 clusters: from 24 starting clusters the merges remove the
    duplicates; from one (or three) the splits create the rest — 8 found, ARI 1."""
    x, y = _blobs(n=4000, centers=8, d=4, seed=2)
    model = DPMM(24, 4, FullCovariance()).double()
    batches = list(x.split(batch or x.shape[0]))
    memo = MemoizedVI(model, len(batches))
    memo.initialize(batches, num_clusters=start)
    memo.fit(batches, max_laps=40)
    assert int((model.weights > 0.01).sum()) == 8
    assert adjusted_rand_score(y, model.predict(x).numpy()) > 0.99


def test_without_room_in_the_truncation_nothing_splits():
    x, _ = _blobs(n=1500, centers=6)
    model = DPMM(3, 3, DiagCovariance()).double()
    memo = MemoizedVI(model, 1)
    memo.initialize([x])
    memo.fit([x], max_laps=5)
    assert int((model.counts > 0).sum()) <= 3
    assert memo.targets.numel() == 0


def test_summaries_round_trip_through_a_state_dict():
    """A killed run resumes: the state (tensors only) restores the same next lap."""
    x, _ = _blobs(n=1500)
    batches = list(x.split(500))

    def start():
        model = DPMM(10, 3, FullCovariance()).double()
        memo = MemoizedVI(model, len(batches))
        memo.initialize(batches, num_clusters=2)
        return model, memo

    model, memo = start()
    for _ in range(2):
        for b, xb in enumerate(batches):
            memo.visit(b, xb)
        memo.end_lap()
    buffer = io.BytesIO()
    torch.save({"memo": memo.state_dict(), "model": model.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # tensors only: no pickle needed
    state, weights = saved["memo"], saved["model"]
    other, resumed = start()
    other.load_state_dict(weights)
    resumed.load_state_dict(state)
    for m in (memo, resumed):
        for b, xb in enumerate(batches):
            m.visit(b, xb)
        m.end_lap()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(other.state_dict()[name], value, rtol=0, atol=0)


def test_bad_settings_are_named():
    x, _ = _blobs(n=100)
    model = DPMM(4, 3).double()
    with pytest.raises(ValueError, match="at least one batch"):
        MemoizedVI(model, 0)
    memo = MemoizedVI(model, 1)
    with pytest.raises(ValueError, match="starting clusters"):
        memo.initialize([x], num_clusters=5)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        memo.initialize([bad])


def test_the_predictive_of_empty_components_is_the_priors_computed_once():
    """Empty components share the prior's predictive: computing it once gives the same
    [N, K] log-densities as computing every column (to float64 rounding)."""
    x, _ = _blobs(n=1000)
    for cov in (DiagCovariance(), FullCovariance()):
        model = DPMM(10, 3, cov).double()
        model.initialize(x)
        for p in (model.counts, model.sum_x, model.sum_f):
            p.data[6:] = 0
        q = model.posterior()
        brute = (model.prior_family.predictive_log_prob((x - model.shift).double(), q)
                 + model.weights.double().log())
        torch.testing.assert_close(model.weighted_log_prob(x), brute, rtol=1e-12, atol=1e-12)
