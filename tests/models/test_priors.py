"""Tests of :class:`mixtures.models.priors.PriorSettings`, the Bayesian mixtures' priors.

Oracles: scikit-learn's ``BayesianGaussianMixture`` for every data-dependent and default prior
(its fitted ``weight_concentration_prior_``, ``mean_precision_prior_``, ``mean_prior_``,
``degrees_of_freedom_prior_`` and ``covariance_prior_`` after one iteration on the same data),
``numpy`` / hand-written projections for a ``covariance_prior`` given as a number, a ``[D]``
vector or a ``[D, D]`` matrix, the Wishart / Gamma bounds on the degrees of freedom
(``ν₀ > D − 1`` for ``full``, ``ν₀ > 0`` otherwise), and the exact text of every validation
error in ``mixtures/models/priors.py``.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from mixtures.distributions import (
    DiagCovariance,
    DiagNormalGamma,
    FullCovariance,
    NormalWishart,
    ScalarCovariance,
    ScalarNormalGamma,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    UnitNormalPrior,
)
from mixtures.models.priors import PriorSettings

F64 = torch.float64
K, D = 4, 3
#: this package's covariance types with scikit-learn's names
SKLEARN = {"full": FullCovariance, "diag": DiagCovariance, "spherical": ScalarCovariance}
ALL = {**SKLEARN, "unit": UnitCovariance}


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    """Seeded correlated, shifted points ``[200, 3]`` with unequal variances (float64)."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.tensor([[2.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.2, 1.5]], dtype=F64)
    return torch.randn(200, D, generator=gen, dtype=F64) @ mix.T + torch.tensor([5.0, -1.0, 2.0],
                                                                               dtype=F64)


def sklearn_priors(x: torch.Tensor, covariance_type: str) -> BayesianGaussianMixture:
    """scikit-learn's resolved default priors on ``x`` (one iteration suffices to set them)."""
    bgm = BayesianGaussianMixture(n_components=K, covariance_type=covariance_type, max_iter=1,
                                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return bgm.fit(x.numpy())


def full_message(text: str) -> str:
    """A regex matching ``text`` literally from its start."""
    return "^" + re.escape(text)


# -- defaults ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SKLEARN))
def test_defaults_match_scikit_learn(points, name):
    cov = SKLEARN[name]()
    settings = PriorSettings(cov, K, D)
    bgm = sklearn_priors(points, name)
    assert settings.alpha == pytest.approx(bgm.weight_concentration_prior_) == 1.0 / K
    assert settings.beta0 == pytest.approx(bgm.mean_precision_prior_) == 1.0
    assert settings.nu0 == pytest.approx(bgm.degrees_of_freedom_prior_) == float(D)
    mean = settings.mean(points)
    assert mean.dtype == F64 and mean.shape == (D,)
    np.testing.assert_allclose(mean.numpy(), bgm.mean_prior_, rtol=1e-12)
    scatter = settings.scatter(points)
    assert scatter.dtype == F64
    # the full type adds the floor min_scale² = 1e-6 to the data covariance's diagonal
    np.testing.assert_allclose(scatter.numpy().reshape(np.shape(bgm.covariance_prior_)),
                               bgm.covariance_prior_, rtol=1e-6, atol=2e-6)


def test_default_scatter_is_the_data_covariance_projected_on_each_type(points):
    data_cov = torch.cov(points.T)
    floor = 1e-3**2
    full = PriorSettings(FullCovariance(), K, D).scatter(points)
    torch.testing.assert_close(full, data_cov + floor * torch.eye(D, dtype=F64))
    diag = PriorSettings(DiagCovariance(), K, D).scatter(points)
    torch.testing.assert_close(diag, data_cov.diagonal())
    scalar = PriorSettings(ScalarCovariance(), K, D).scatter(points)
    assert scalar.shape == (1,)
    torch.testing.assert_close(scalar, data_cov.diagonal().mean().reshape(1))
    unit = PriorSettings(UnitCovariance(), K, D).scatter(points)
    assert unit.shape == (0,)


@pytest.mark.parametrize("name", list(ALL))
def test_families_and_their_scatter_shapes(points, name):
    families = {"full": NormalWishart, "diag": DiagNormalGamma,
                "spherical": ScalarNormalGamma, "unit": UnitNormalPrior}
    settings = PriorSettings(ALL[name](), K, D)
    assert type(settings.family) is families[name]
    assert settings.scatter(points).shape == settings.family.scatter_shape(D)


def test_default_degrees_of_freedom_and_concentration_follow_the_sizes():
    settings = PriorSettings(FullCovariance(), 7, 5)
    assert (settings.num_components, settings.num_features) == (7, 5)
    assert settings.alpha == pytest.approx(1 / 7)
    assert settings.nu0 == 5.0
    one = PriorSettings(FullCovariance(), 1, 1)  # D = 1: ν₀ = 1 > 0 is valid
    assert (one.alpha, one.nu0, one.min_nu) == (1.0, 1.0, 0.0)


def test_default_scatter_of_one_feature(points):
    x = points[:, :1]
    settings = PriorSettings(FullCovariance(), K, 1)
    scatter = settings.scatter(x)
    assert scatter.shape == (1, 1)
    torch.testing.assert_close(scatter[0, 0], x[:, 0].var() + 1e-6)


def test_explicit_priors_are_kept_as_floats(points):
    settings = PriorSettings(DiagCovariance(), K, D, weight_concentration_prior=2,
                             mean_precision_prior=0.5, mean_prior=[1, 2, 3],
                             degrees_of_freedom_prior=7)
    assert (settings.alpha, settings.beta0, settings.nu0) == (2.0, 0.5, 7.0)
    assert all(type(v) is float for v in (settings.alpha, settings.beta0, settings.nu0))
    mean = settings.mean(points)
    assert mean.dtype == F64
    torch.testing.assert_close(mean, torch.tensor([1.0, 2.0, 3.0], dtype=F64))


def test_prior_repeats_the_hyper_parameters_per_component(points):
    settings = PriorSettings(FullCovariance(), K, D, mean_precision_prior=0.25,
                             degrees_of_freedom_prior=4.5)
    scatter = settings.scatter(points)
    prior = settings.prior(scatter)
    torch.testing.assert_close(prior.beta, torch.full((K,), 0.25, dtype=F64))
    torch.testing.assert_close(prior.nu, torch.full((K,), 4.5, dtype=F64))
    torch.testing.assert_close(prior.mean, torch.zeros(K, D, dtype=F64))
    torch.testing.assert_close(prior.scatter, scatter.expand(K, D, D))


# -- degrees of freedom ------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "bound"), [("full", D - 1.0), ("diag", 0.0),
                                              ("spherical", 0.0), ("unit", 0.0)])
def test_minimum_degrees_of_freedom(name, bound):
    cov = ALL[name]()
    assert PriorSettings(cov, K, D).min_nu == bound
    assert PriorSettings(cov, K, D, degrees_of_freedom_prior=bound + 1e-3).nu0 == bound + 1e-3
    message = (f"model.net.degrees_of_freedom_prior={bound} is invalid: it must exceed "
               f"{bound:g}; the default is num_features = {D}.")
    with pytest.raises(ValueError, match=full_message(message)):
        PriorSettings(cov, K, D, degrees_of_freedom_prior=bound)
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        PriorSettings(cov, K, D, degrees_of_freedom_prior=bound - 0.5)


# -- covariance_prior as a number, a vector, a matrix ------------------------------------------
MATRIX = torch.tensor([[4.0, 1.0, 0.5], [1.0, 2.0, -0.3], [0.5, -0.3, 3.0]], dtype=F64)


@pytest.mark.parametrize(
    ("spec", "dense"),
    [
        (2.5, 2.5 * torch.eye(D, dtype=F64)),
        ([1.0, 2.0, 3.0], torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64))),
        (MATRIX, MATRIX),
        (MATRIX.tolist(), MATRIX),
        (np.array([1.0, 2.0, 3.0]), torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64))),
    ],
    ids=["number", "vector", "matrix", "nested-list", "numpy-vector"],
)
def test_covariance_prior_is_projected_on_the_type(points, spec, dense):
    full = PriorSettings(FullCovariance(), K, D, covariance_prior=spec).scatter(points)
    torch.testing.assert_close(full, dense)  # no floor added to a given matrix
    diag = PriorSettings(DiagCovariance(), K, D, covariance_prior=spec).scatter(points)
    torch.testing.assert_close(diag, dense.diagonal())
    scalar = PriorSettings(ScalarCovariance(), K, D, covariance_prior=spec).scatter(points)
    torch.testing.assert_close(scalar, dense.diagonal().mean().reshape(1))
    unit = PriorSettings(UnitCovariance(), K, D, covariance_prior=spec).scatter(points)
    assert unit.shape == (0,)
    for scatter in (full, diag, scalar):
        assert scatter.dtype == F64


def test_covariance_prior_ignores_the_data(points):
    settings = PriorSettings(FullCovariance(), K, D, covariance_prior=1.5)
    torch.testing.assert_close(settings.scatter(points), settings.scatter(points[:2] * 100.0))
    # and so does a given mean_prior
    settings = PriorSettings(FullCovariance(), K, D, mean_prior=torch.zeros(D))
    torch.testing.assert_close(settings.mean(points * 5 + 3), torch.zeros(D, dtype=F64))


def test_variances_below_the_floor_are_floored():
    cov = DiagCovariance(min_scale=1e-2)
    x = torch.randn(10, D, generator=torch.Generator().manual_seed(1), dtype=F64)
    given = PriorSettings(cov, K, D, covariance_prior=[1e-9, 1.0, 2.0]).scatter(x)
    torch.testing.assert_close(given, torch.tensor([1e-4, 1.0, 2.0], dtype=F64))
    x[:, 0] = 3.0  # a constant feature: zero data variance
    data = PriorSettings(cov, K, D).scatter(x)
    assert float(data[0]) == pytest.approx(1e-4)
    assert float(data[1]) == pytest.approx(float(x[:, 1].var()))


def test_a_constant_feature_keeps_the_full_data_scatter_positive_definite():
    x = torch.randn(50, D, generator=torch.Generator().manual_seed(2), dtype=F64)
    x[:, 2] = -4.0
    scatter = PriorSettings(FullCovariance(min_scale=1e-2), K, D).scatter(x)
    assert torch.linalg.cholesky_ex(scatter)[1] == 0
    assert float(scatter[2, 2]) == pytest.approx(1e-4)


# -- validation errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_components=0), "num_components must be an integer ≥ 1, got 0."),
        (dict(num_components=2.0), "num_components must be an integer ≥ 1, got 2.0."),
        (dict(num_features=0), "num_features must be an integer ≥ 1, got 0."),
        (dict(num_features="3"), "num_features must be an integer ≥ 1, got '3'."),
        (dict(weight_concentration_prior=0.0),
         "model.net.weight_concentration_prior=0.0 is invalid: e.g. 1 / num_components."),
        (dict(weight_concentration_prior=-1),
         "model.net.weight_concentration_prior=-1 is invalid: e.g. 1 / num_components."),
        (dict(weight_concentration_prior=float("nan")),
         "model.net.weight_concentration_prior=nan is invalid"),
        (dict(mean_precision_prior=0.0),
         "model.net.mean_precision_prior=0.0 is invalid: e.g. 1.0."),
        (dict(mean_precision_prior=-2.0),
         "model.net.mean_precision_prior=-2.0 is invalid: e.g. 1.0."),
        (dict(degrees_of_freedom_prior=1.5),
         "model.net.degrees_of_freedom_prior=1.5 is invalid: it must exceed 2; the default is "
         "num_features = 3."),
        (dict(mean_prior=[0.0, 1.0]),
         "model.net.mean_prior must have 3 entries (num_features), got shape [2]."),
        (dict(mean_prior=torch.zeros(1, D)),
         "model.net.mean_prior must have 3 entries (num_features), got shape [1, 3]."),
        (dict(mean_prior=0.0),
         "model.net.mean_prior must have 3 entries (num_features), got shape []."),
    ],
)
def test_invalid_settings_are_rejected_with_their_fix(kwargs, message):
    args = {"covariance": FullCovariance(), "num_components": K, "num_features": D, **kwargs}
    with pytest.raises(ValueError, match=full_message(message)):
        PriorSettings(**args)


@pytest.mark.parametrize("cov", [SharedFullCovariance(), SharedScalarCovariance()],
                         ids=["tied", "shared_spherical"])
def test_shared_covariances_have_no_conjugate_prior(cov):
    message = (f"covariance type {type(cov).__name__} has no conjugate prior in mixtures; "
               "Bayesian mixtures support covariance=unit, scalar, diag or full.")
    with pytest.raises(ValueError, match=full_message(message)):
        PriorSettings(cov, K, D)


def test_the_sizes_are_checked_before_the_covariance_type():
    with pytest.raises(ValueError, match="num_components must be an integer"):
        PriorSettings(SharedFullCovariance(), 0, D)


def test_data_scatter_needs_two_points(points):
    settings = PriorSettings(DiagCovariance(), K, D)
    with pytest.raises(ValueError, match=full_message(
            "covariance_prior needs at least 2 points, or set it.")):
        settings.scatter(points[:1])
    given = PriorSettings(DiagCovariance(), K, D, covariance_prior=1.0)
    torch.testing.assert_close(given.scatter(points[:1]), torch.ones(D, dtype=F64))


@pytest.mark.parametrize("spec", [[1.0, 2.0], torch.ones(2, 3), torch.ones(D, D, 1)],
                         ids=["short-vector", "non-square", "3-d"])
@pytest.mark.parametrize("name", list(ALL))
def test_covariance_prior_of_the_wrong_shape(points, name, spec):
    shape = list(torch.as_tensor(spec).shape)
    message = f"model.net.covariance_prior must be a number, [3] or [3, 3]; got shape {shape}."
    settings = PriorSettings(ALL[name](), K, D, covariance_prior=spec)  # checked on use
    with pytest.raises(ValueError, match=full_message(message)):
        settings.scatter(points)


NON_POSITIVE = {"zero": 0.0, "negative": -1.0, "nan": float("nan"),
                "negative-diagonal": (-MATRIX).tolist()}


@pytest.mark.parametrize("name", ["diag", "spherical"])
@pytest.mark.parametrize("spec", list(NON_POSITIVE.values()), ids=list(NON_POSITIVE))
def test_non_positive_variances_are_rejected(points, name, spec):
    settings = PriorSettings(SKLEARN[name](), K, D, covariance_prior=spec)
    with pytest.raises(ValueError, match=full_message(
            "model.net.covariance_prior must be positive and finite (its variances); got ")):
        settings.scatter(points)


@pytest.mark.parametrize("spec", [[1.0, -2.0, 3.0], [1.0, 0.0, 1.0]],
                         ids=["negative-entry", "zero-entry"])
def test_one_non_positive_variance(points, spec):
    """The diag type rejects it; the spherical type sees only the (positive) mean variance."""
    with pytest.raises(ValueError, match="must be positive"):
        PriorSettings(DiagCovariance(), K, D, covariance_prior=spec).scatter(points)
    scalar = PriorSettings(ScalarCovariance(), K, D, covariance_prior=spec).scatter(points)
    torch.testing.assert_close(scalar, torch.tensor([2.0 / 3.0], dtype=F64))


@pytest.mark.parametrize("spec", [0.0, -1.0, [1.0, -2.0, 3.0], float("nan"),
                                  [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                                  [[1.0, float("inf"), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]],
                         ids=["zero", "negative", "negative-entry", "nan", "indefinite", "inf"])
def test_non_positive_definite_full_prior_is_rejected(points, spec):
    settings = PriorSettings(FullCovariance(), K, D, covariance_prior=spec)
    message = ("model.net.covariance_prior is not positive definite; give a positive-definite "
               "matrix or a positive number.")
    with pytest.raises(ValueError, match=full_message(message)):
        settings.scatter(points)


@pytest.mark.parametrize("kwargs", [dict(weight_concentration_prior=float("inf")),
                                    dict(mean_precision_prior=float("inf")),
                                    dict(degrees_of_freedom_prior=float("inf")),
                                    dict(mean_prior=[float("nan"), 0.0, 0.0])],
                         ids=["alpha", "beta", "nu", "mean"])
def test_non_finite_priors_are_rejected(kwargs):
    """A non-finite prior would give NaN densities after training (found by this test)."""
    with pytest.raises(ValueError, match="model.net.* (is invalid|must be finite)"):
        PriorSettings(DiagCovariance(), K, D, **kwargs)


@pytest.mark.parametrize("name", ["diag", "spherical"])
def test_infinite_variances_are_rejected(points, name):
    settings = PriorSettings(SKLEARN[name](), K, D, covariance_prior=[float("inf"), 1.0, 1.0])
    with pytest.raises(ValueError, match="must be positive and finite"):
        settings.scatter(points)
