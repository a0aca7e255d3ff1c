"""The prediction API written once (mixtures.models.base.MixtureDensity), against scikit-learn
and against each model's own hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from mixtures.data.blobs import make_blobs
from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
)
from mixtures.models import (
    DPMM,
    GaussianMixtureEM,
    GaussianMixtureModel,
    MixtureDensity,
    VariationalGMM,
)
from mixtures.models.base import all_finite

TYPES = {"full": FullCovariance, "diag": DiagCovariance, "spherical": ScalarCovariance,
         "tied": SharedFullCovariance}


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    x, _, _ = make_blobs(1500, 2, 3, separation=4.0, seed=3, dtype=torch.float64)
    return x[:1000], x[1000:]


def _dense(sk: GaussianMixture, name: str, k: int, d: int) -> torch.Tensor:
    cov = torch.as_tensor(sk.covariances_)
    if name == "full":
        return cov
    if name == "tied":
        return cov.expand(k, d, d)
    if name == "diag":
        return torch.diag_embed(cov)
    return cov[:, None, None] * torch.eye(d, dtype=cov.dtype)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_predictions_equal_sklearn_for_the_same_parameters(data, name):
    """predict / predict_proba / score_samples / score / bic / aic of a GaussianMixtureModel
    loaded with scikit-learn's fitted parameters are scikit-learn's."""
    xtr, xte = data
    sk = GaussianMixture(3, covariance_type=name, random_state=0).fit(xtr.numpy())
    model = GaussianMixtureModel(3, 2, TYPES[name](min_scale=1e-6)).double()
    model._load(torch.as_tensor(sk.means_), _dense(sk, name, 3, 2), torch.as_tensor(sk.weights_))
    xn = xte.numpy()
    np.testing.assert_allclose(model.score_samples(xte).numpy(), sk.score_samples(xn),
                               rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(xte).numpy(), sk.predict_proba(xn),
                               atol=1e-10)
    np.testing.assert_array_equal(model.predict(xte).numpy(), sk.predict(xn))
    assert model.score(xte) == pytest.approx(sk.score(xn), rel=1e-12)
    assert model.bic(xte) == pytest.approx(sk.bic(xn), rel=1e-12)
    assert model.aic(xte) == pytest.approx(sk.aic(xn), rel=1e-12)


def _fitted(kind: str, xtr: torch.Tensor) -> MixtureDensity:
    if kind == "gmm":
        model = GaussianMixtureModel(3, 2, FullCovariance()).double()
        model.initialize(xtr)
    elif kind == "em":
        model = GaussianMixtureEM(3, 2, FullCovariance(), num_restarts=2).double()
        model.initialize(xtr)
        model.fit(xtr, max_iter=20)
    elif kind == "dpmm":
        model = DPMM(6, 2, FullCovariance()).double()
        model.initialize(xtr)
    else:
        model = VariationalGMM(3, 2, FullCovariance()).double()
        model.initialize(xtr)
    return model


@pytest.mark.parametrize("kind", ["gmm", "em", "dpmm", "vi"])
def test_the_api_is_consistent_with_the_hooks(data, kind):
    """Every model: score_samples is the logsumexp of weighted_log_prob, predict_proba's rows
    sum to one and rank as predict, score_and_predict is both in one call, BIC and AIC follow
    their formulas, mixture_parameters are detached [K] / [K, D] / [K, D, D]."""
    xtr, xte = data
    model = _fitted(kind, xtr)
    k = model.num_components
    weighted = model.weighted_log_prob(xte)
    assert weighted.shape == (xte.shape[0], k)
    torch.testing.assert_close(model.score_samples(xte), torch.logsumexp(weighted, -1))
    proba = model.predict_proba(xte)
    torch.testing.assert_close(proba.sum(-1), torch.ones(xte.shape[0], dtype=proba.dtype))
    labels = model.predict(xte)
    assert torch.equal(proba.argmax(-1), labels)
    log_density, labels2 = model.score_and_predict(xte)
    assert torch.equal(labels2, labels)
    torch.testing.assert_close(log_density, model.score_samples(xte))
    total = float(model.score_samples(xte).sum())
    p = model.num_parameters()
    assert model.bic(xte) == pytest.approx(-2 * total + p * math.log(xte.shape[0]))
    assert model.aic(xte) == pytest.approx(-2 * total + 2 * p)
    params = model.mixture_parameters()
    assert params["weights"].shape == (k,) and params["means"].shape == (k, 2)
    assert params["covariances"].shape == (k, 2, 2)
    assert not any(v.requires_grad for v in params.values())
    assert float(params["weights"].sum()) == pytest.approx(1.0)


def test_the_dpmm_assigns_by_the_variational_responsibilities(data):
    """The DPMM scores by its Student-t predictive but assigns by E[log π N(x | k)]."""
    xtr, xte = data
    model = _fitted("dpmm", xtr)
    resp, _ = model.local_step(xte)
    torch.testing.assert_close(model.predict_proba(xte), resp, atol=1e-12, rtol=0)
    assert not model.assignment_is_density


def test_em_predicts_with_its_best_restart(data):
    xtr, xte = data
    model = _fitted("em", xtr)
    best = model.best_restart
    assert best == int(model.lower_bound.argmax())
    torch.testing.assert_close(model.weighted_log_prob(xte),
                               model.restart_weighted_log_prob(xte)[:, best])
    torch.testing.assert_close(model.mixture_parameters()["means"], model.means[best])


@pytest.mark.parametrize("kind", ["gmm", "em", "vi"])
def test_sample_has_the_mixtures_moments(data, kind):
    """The default sample (one implementation) draws from the mixture of mixture_parameters."""
    model = _fitted(kind, data[0])
    params = model.mixture_parameters()
    x, labels = model.sample(60_000, torch.Generator().manual_seed(0))
    assert x.shape == (60_000, 2) and labels.shape == (60_000,)
    freq = torch.bincount(labels, minlength=3).double() / 60_000
    torch.testing.assert_close(freq, params["weights"].double(), atol=0.01, rtol=0)
    for k in range(3):
        xk = x[labels == k].double()
        torch.testing.assert_close(xk.mean(0), params["means"][k].double(), atol=0.05, rtol=0)
        torch.testing.assert_close(torch.cov(xk.T), params["covariances"][k].double(),
                                   atol=0.05, rtol=0.05)


def test_wrong_feature_count_names_the_sizes():
    model = GaussianMixtureModel(2, 3)
    with pytest.raises(ValueError, match=r"expected points of shape \[N, 3\], got \[4, 2\]"):
        model.predict(torch.randn(4, 2))
    with pytest.raises(ValueError, match="num_features must be an integer ≥ 1"):
        GaussianMixtureModel(2, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_finite_finds_every_non_finite_value_and_tolerates_an_overflowing_sum(dtype):
    big = torch.finfo(dtype).max / 4
    x = torch.full((1000, 3), big, dtype=dtype)  # finite, but its sum overflows
    assert all_finite(x)
    assert all_finite(torch.empty(0, 3, dtype=dtype))
    for bad in (math.nan, math.inf, -math.inf):
        y = torch.randn(1000, 3, dtype=dtype)
        y[417, 2] = bad
        assert not all_finite(y)
    y = torch.full((10, 2), big, dtype=dtype)
    y[3, 1] = math.inf
    assert not all_finite(y)
