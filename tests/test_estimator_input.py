"""Bad input to the scikit-learn-style ``GaussianMixture``: arrays scikit-learn would reject (or
convert) get its checks and wording; hyper-parameters are validated at fit; degenerate or
out-of-range data fail or warn clearly instead of returning garbage.

Letters: N points, K components, D features.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from mixtures.estimator import GaussianMixture, InvalidParameterError

X = np.random.RandomState(0).normal(size=(200, 3)) + np.array([0.0, 5.0, -3.0])


class FrameLike:
    """What a pandas DataFrame with reordered columns hands numpy: a negative-stride view."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, dtype=None, copy=None):
        return self.values[:, ::-1]


def test_negative_strides_fit_as_their_copy():
    expected = GaussianMixture(2, random_state=0).fit(X[:, ::-1].copy())
    for x in (X[:, ::-1], FrameLike(X)):
        model = GaussianMixture(2, random_state=0).fit(x)
        np.testing.assert_array_equal(model.means_, expected.means_)
        np.testing.assert_array_equal(model.predict(x), expected.predict(X[:, ::-1].copy()))
    # user initial parameters with negative strides, too
    means = X[:2][::-1]
    a = GaussianMixture(2, random_state=0, means_init=means).fit(X)
    b = GaussianMixture(2, random_state=0, means_init=means.copy()).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_complex_input_is_refused():
    with pytest.raises(ValueError, match="Complex data not supported"):
        GaussianMixture(2).fit(X + 1j)
    with pytest.raises(ValueError, match="Complex data not supported"):
        GaussianMixture(2).fit(torch.from_numpy(X + 0j))
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="Complex data not supported"):
        model.predict(X.astype(np.complex64))


def test_sparse_input_asks_for_dense():
    with pytest.raises(TypeError, match="dense input.*X.toarray\\(\\)"):
        GaussianMixture(2).fit(scipy.sparse.csr_matrix(X))
    with pytest.raises(TypeError, match="dense input.*X.to_dense\\(\\)"):
        GaussianMixture(2).fit(torch.from_numpy(X).to_sparse())
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(TypeError, match="X.toarray\\(\\)"):
        model.score_samples(scipy.sparse.coo_matrix(X))


@pytest.mark.parametrize(("param", "value", "match"), [
    ("tol", None, "The 'tol' parameter of GaussianMixture must be a float in the range "
     "\\[0.0, inf\\). Got None instead."),
    ("tol", "1e-3", "'tol' parameter .* Got '1e-3' instead"),
    ("tol", float("nan"), "'tol' parameter"),
    ("reg_covar", None, "The 'reg_covar' parameter of GaussianMixture must be a float"),
    ("n_components", 2.0, "'n_components' parameter .* must be an int"),
    ("n_init", True, "'n_init' parameter"),
    ("max_iter", None, "'max_iter' parameter"),
    ("covariance_type", None, "'covariance_type' parameter .* must be a str among"),
    ("warm_start", "yes", "'warm_start' parameter"),
    ("verbose", -1, "'verbose' parameter"),
    ("random_state", "seed", "'random_state' parameter"),
])
def test_hyper_parameters_are_validated_at_fit(param, value, match):
    model = GaussianMixture(**({"n_components": 2} | {param: value}))  # validated at fit only
    with pytest.raises(InvalidParameterError, match=match) as info:
        model.fit(X)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("method", ["score", "score_samples", "bic", "aic", "predict",
                                    "predict_proba"])
def test_empty_input_is_refused(method):
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match=("Found array with 0 sample\\(s\\) \\(shape=\\(0, 3\\)\\) "
                                          "while a minimum of 1 is required")):
        getattr(model, method)(np.zeros((0, 3)))


def test_zero_features_named_in_user_terms():
    with pytest.raises(ValueError, match="Found array with 0 feature\\(s\\) \\(shape=\\(10, "
                       "0\\)\\) while a minimum of 1 is required by GaussianMixture"):
        GaussianMixture(2).fit(np.zeros((10, 0)))
    with pytest.raises(ValueError, match="0 sample"):
        GaussianMixture(2).fit(np.zeros((0, 3)))


ILL_DEFINED = ("Fitting the mixture model failed because some components have ill-defined "
               "empirical covariance \\(for instance caused by singleton or collapsed samples\\). "
               "Try to decrease the number of components, or increase reg_covar.")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical",
                                             "shared_spherical"])
def test_reg_covar_zero_on_collapsed_points_raises_as_sklearn(covariance_type, dtype):
    collapsed = np.repeat(np.random.RandomState(1).normal(size=(3, 2)), 20, axis=0)
    with pytest.raises(ValueError, match=ILL_DEFINED):
        GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0, random_state=0,
                        dtype=dtype).fit(collapsed)
    # the default reg_covar keeps the same fit well defined; so does data with a spread
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                            dtype=dtype).fit(collapsed)
    assert np.isfinite(model.lower_bound_) and np.isfinite(model.precisions_).all()
    GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0, random_state=0,
                    dtype=dtype).fit(X)


def test_reg_covar_zero_with_a_singleton_raises():
    x = np.vstack([X[:, :2], [[40.0, 40.0]]])  # one far point: its own component
    with pytest.raises(ValueError, match=ILL_DEFINED):
        GaussianMixture(3, reg_covar=0.0, random_state=0).fit(x)
