"""Bad input to the scikit-learn-style ``GaussianMixture``: arrays scikit-learn would reject (or
convert) get its checks and wording; hyper-parameters are validated at fit; degenerate or
out-of-range data fail or warn clearly instead of returning garbage.

Letters: N points, K components, D features.
"""

from __future__ import annotations

import warnings

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
               "Try to decrease the number of components, increase reg_covar, or scale the input "
               "data\\.")


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


BLOBS = np.concatenate([np.random.RandomState(2).normal(size=(150, 2)) + c
                        for c in ([0.0, 0.0], [6.0, 1.0], [2.0, 7.0])])


@pytest.mark.parametrize("factor", [1e18, 1e-15])
def test_data_far_from_unit_scale_fit_as_rescaled(factor, tmp_path):
    # float32 second moments overflow from ~1e18 (NaN parameters before); the fit is made on
    # the points divided by a power of two and mapped back (a GMM is scale-equivariant)
    d = BLOBS.shape[1]
    kw = dict(n_components=3, random_state=0, reg_covar=1e-6 * factor**2)
    base = GaussianMixture(**kw | {"reg_covar": 1e-6}).fit(BLOBS)
    model = GaussianMixture(**kw).fit(BLOBS * factor)
    np.testing.assert_allclose(model.weights_, base.weights_, rtol=1e-4)
    np.testing.assert_allclose(model.means_, base.means_ * factor, rtol=1e-4, atol=1e-4 * factor)
    np.testing.assert_allclose(model.covariances_ / factor**2, base.covariances_, rtol=1e-3,
                               atol=1e-4)
    np.testing.assert_allclose(model.precisions_ * factor**2, base.precisions_, rtol=1e-3,
                               atol=1e-4)
    np.testing.assert_allclose(model.precisions_cholesky_ * factor, base.precisions_cholesky_,
                               rtol=1e-3, atol=1e-4)
    shift = d * np.log(factor)
    assert model.lower_bound_ == pytest.approx(base.lower_bound_ - shift, abs=1e-3)
    assert model.lower_bounds_[-1] == model.lower_bound_
    np.testing.assert_allclose(model.score_samples(BLOBS * factor),
                               base.score_samples(BLOBS) - shift, atol=1e-3)
    assert model.score(BLOBS * factor) == pytest.approx(base.score(BLOBS) - shift, abs=1e-3)
    n = len(BLOBS)
    assert model.bic(BLOBS * factor) == pytest.approx(base.bic(BLOBS) + 2 * n * shift, abs=1)
    assert model.aic(BLOBS * factor) == pytest.approx(base.aic(BLOBS) + 2 * n * shift, abs=1)
    np.testing.assert_array_equal(model.predict(BLOBS * factor), base.predict(BLOBS))
    points, _ = model.sample(2000)
    np.testing.assert_allclose(points.mean(0) / factor, BLOBS.mean(0), atol=0.3)
    model.save(tmp_path / "gmm.pt")
    loaded = GaussianMixture.load(tmp_path / "gmm.pt")
    np.testing.assert_array_equal(loaded.score_samples(BLOBS * factor),
                                  model.score_samples(BLOBS * factor))
    np.testing.assert_array_equal(loaded.covariances_, model.covariances_)


def test_rescaled_fit_matches_sklearn_in_float64():
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    factor = 3e9  # beyond 2**20: rescaled internally, initial parameters with it
    x = BLOBS * factor
    init = dict(weights_init=np.full(3, 1 / 3), means_init=x[[0, 200, 400]],
                precisions_init=np.stack([np.eye(2) / factor**2] * 3))
    kw = dict(n_components=3, tol=1e-8, max_iter=200, reg_covar=1e-6 * factor**2, **init)
    ours = GaussianMixture(**kw, dtype=torch.float64).fit(x)
    theirs = SkGaussianMixture(**kw).fit(x)
    assert ours._scale != 1.0
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-6,
                                   err_msg=name)
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-9)
    np.testing.assert_allclose(ours.score_samples(x), theirs.score_samples(x), rtol=1e-9)
    assert ours.bic(x) == pytest.approx(theirs.bic(x), rel=1e-9)


def test_ordinary_data_are_not_rescaled_nor_copied():
    x = torch.from_numpy(BLOBS).float()
    model = GaussianMixture(3, random_state=0).fit(x)
    assert model._scale == 1.0
    assert model._tensor(x, torch.device("cpu"), torch.float32, None).data_ptr() == x.data_ptr()


def test_variances_beyond_float32_raise():
    # 1e25-scale data fit, but their variances (~1e50) do not fit in float32: a clear error
    # instead of infinite covariances
    with pytest.raises(ValueError, match="non-finite covariances_ .*dtype=torch.float64"):
        GaussianMixture(3, random_state=0).fit(BLOBS * 1e25)
    model = GaussianMixture(3, random_state=0, dtype="float64").fit(BLOBS * 1e25)
    assert np.isfinite(model.covariances_).all() and np.isfinite(model.lower_bound_)


def test_too_few_points_for_float32_warn():
    # D = 200 features, N = 60 points: the covariance is reg_covar in 140 directions, below
    # float32's rounding of the second moments (negative eigenvalues before, silently)
    x = np.random.RandomState(3).normal(size=(60, 200))
    with pytest.warns(RuntimeWarning, match="rounding error.*dtype=torch.float64, or a larger "
                      "reg_covar"):
        GaussianMixture(1, random_state=0).fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        GaussianMixture(1, random_state=0, dtype="float64").fit(x)
        GaussianMixture(1, random_state=0, reg_covar=1e-2).fit(x)


def test_rescaling_applies_to_tensors_and_failed_refits_keep_nothing_stale():
    x = BLOBS * 1e18
    a = GaussianMixture(3, random_state=0).fit(x)
    for t in (torch.from_numpy(x).float(), torch.from_numpy(x)):
        b = GaussianMixture(3, random_state=0).fit(t)
        np.testing.assert_allclose(b.means_, a.means_, rtol=1e-6)
        assert b.score(t) == pytest.approx(a.score(x), abs=1e-4)
    model = GaussianMixture(3, random_state=0).fit(BLOBS)
    score = model.score(BLOBS)
    with pytest.raises(ValueError, match=ILL_DEFINED):  # a failed refit: the fit stands
        model.set_params(reg_covar=0.0).fit(np.repeat(BLOBS[:3] * 1e18, 20, axis=0))
    assert model.score(BLOBS) == score
    with pytest.raises(ValueError, match="non-finite"):  # non-finite: no fitted model left
        model.set_params(reg_covar=1e-6).fit(BLOBS * 1e25)
    with pytest.raises(Exception, match="not fitted yet"):
        model.predict(BLOBS)


def test_a_fixed_unit_covariance_is_not_rescaled():
    # σ = 1 in the data's units: dividing the points would change the model
    model = GaussianMixture(3, covariance_type="unit", random_state=0).fit(BLOBS * 2**22)
    assert model._scale == 1.0
    np.testing.assert_allclose(model.covariances_, 1.0)
