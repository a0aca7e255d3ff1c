"""scikit-learn's layouts of the covariance types (``sklearn_name``, ``sklearn_shape``,
``to_sklearn``, ``from_sklearn``) against a fitted ``sklearn.mixture.GaussianMixture``.

Letters: N points, K components, D features.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from mixtures.distributions import (
    SKLEARN_COVARIANCE_TYPES,
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    covariance_from_sklearn_name,
)

F64 = torch.float64
K, D = 3, 4
SKLEARN_NAMES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def fitted() -> dict[str, SkGaussianMixture]:
    """scikit-learn's mixtures fitted on small seeded, anisotropic data, one per type."""
    rng = np.random.RandomState(0)
    centres = 4.0 * rng.normal(size=(K, D))
    x = np.concatenate([c + rng.normal(size=(60, D)) @ rng.normal(size=(D, D)) for c in centres])
    return {name: SkGaussianMixture(K, covariance_type=name, random_state=0).fit(x)
            for name in SKLEARN_NAMES}


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=F64)


def test_names_map_to_the_classes():
    expected = {"full": FullCovariance, "tied": SharedFullCovariance, "diag": DiagCovariance,
                "spherical": ScalarCovariance, "shared_spherical": SharedScalarCovariance,
                "unit": UnitCovariance}
    assert SKLEARN_COVARIANCE_TYPES == expected
    for name, cls in expected.items():
        cov = covariance_from_sklearn_name(name, min_scale=0.25)
        assert type(cov) is cls and cov.min_scale == 0.25
        assert cls.sklearn_name == (name if name in SKLEARN_NAMES else None)
    with pytest.raises(ValueError, match="covariance_type='banana' is unknown; choose one of"):
        covariance_from_sklearn_name("banana")


@pytest.mark.parametrize("name", SKLEARN_NAMES)
def test_round_trip_through_sklearn_shapes(fitted, name):
    """``to_sklearn(from_sklearn(a)) == a`` for scikit-learn's own ``covariances_``,
    ``precisions_`` and ``precisions_cholesky_``; the dense matrices are the ones they mean."""
    sk, cov = fitted[name], covariance_from_sklearn_name(name)
    assert cov.sklearn_shape(K, D) == sk.covariances_.shape
    for attr in ("covariances_", "precisions_", "precisions_cholesky_"):
        array = _t(getattr(sk, attr))
        dense = cov.from_sklearn(array, K, D)
        assert dense.shape == (K, D, D)
        torch.testing.assert_close(cov.to_sklearn(dense), array, rtol=0, atol=0)
    # the dense covariances, written out per scikit-learn's documentation
    c = _t(sk.covariances_)
    eye = torch.eye(D, dtype=F64)
    want = {"full": lambda: c, "tied": lambda: c.expand(K, D, D),
            "diag": lambda: torch.diag_embed(c), "spherical": lambda: c[:, None, None] * eye}
    want = want[name]()
    torch.testing.assert_close(cov.from_sklearn(c, K, D), want, rtol=0, atol=0)


@pytest.mark.parametrize("name", SKLEARN_NAMES)
def test_dense_precisions_project_to_sklearns(fitted, name):
    """What the estimator exports: ``to_sklearn`` of the dense ``Σ⁻¹`` and of ``L⁻ᵀ`` (L the
    Cholesky factor of Σ) are scikit-learn's ``precisions_`` and ``precisions_cholesky_``."""
    sk, cov = fitted[name], covariance_from_sklearn_name(name)
    sigma = cov.from_sklearn(_t(sk.covariances_), K, D)
    tril = torch.linalg.cholesky(sigma)
    prec_chol = torch.linalg.solve_triangular(tril, torch.eye(D, dtype=F64), upper=False).mT
    torch.testing.assert_close(cov.to_sklearn(prec_chol @ prec_chol.mT), _t(sk.precisions_),
                               rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(cov.to_sklearn(prec_chol), _t(sk.precisions_cholesky_),
                               rtol=1e-9, atol=1e-12)


def test_to_sklearn_keeps_leading_dimensions():
    """A batch of restarts ``[R, K, D, D]`` (``[R, 1, D, D]`` for shared types)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, K, D, D, generator=gen, dtype=F64)
    dense = a @ a.mT + torch.eye(D, dtype=F64)
    for name in SKLEARN_COVARIANCE_TYPES:
        cov = covariance_from_sklearn_name(name)
        given = dense[:, :1] if cov.shared else dense
        out = cov.to_sklearn(given)
        assert out.shape == (2, *cov.sklearn_shape(K, D)), name
        torch.testing.assert_close(out[1], cov.to_sklearn(given[1]))


@pytest.mark.parametrize("cov", [UnitCovariance(), SharedScalarCovariance()],
                         ids=["unit", "shared_scalar"])
def test_one_variance_types(cov):
    """Types scikit-learn lacks: one variance for all components, shape ``()``."""
    assert cov.sklearn_name is None and cov.sklearn_shape(K, D) == ()
    dense = cov.from_sklearn(torch.tensor(2.5, dtype=F64), K, D)
    torch.testing.assert_close(dense, 2.5 * torch.eye(D, dtype=F64).expand(K, D, D))
    assert cov.to_sklearn(dense).shape == ()
    assert float(cov.to_sklearn(dense)) == 2.5


@pytest.mark.parametrize("name", list(SKLEARN_COVARIANCE_TYPES))
def test_from_sklearn_rejects_other_shapes(name):
    cov = covariance_from_sklearn_name(name)
    wrong = torch.ones(*cov.sklearn_shape(K, D), 2, dtype=F64)
    with pytest.raises(ValueError, match="expects scikit-learn's shape"):
        cov.from_sklearn(wrong, K, D)
