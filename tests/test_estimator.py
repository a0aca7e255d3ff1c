"""The scikit-learn-compatible ``GaussianMixture``: parity with scikit-learn (EM trace, BIC/AIC,
densities), restarts, initialisations, sampling, persistence, inputs and errors.

Letters: N points, K components, D features.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings

import numpy as np
import pytest
import sklearn.exceptions
import torch
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import mixtures
from mixtures.data import make_blobs
from mixtures.estimator import GaussianMixture

SKLEARN_TYPES = ("full", "tied", "diag", "spherical")


def blobs(n: int = 600, d: int = 2, k: int = 3, seed: int = 0, offset: float = 0.0):
    """Well-separated blobs as float64 numpy: points ``[N, D]`` and labels ``[N]``."""
    x, y, _ = make_blobs(n, d, k, seed=seed, dtype=torch.float64)
    return x.numpy() + offset, y.numpy()


def initial_parameters(x: np.ndarray, k: int, covariance_type: str) -> dict:
    """weights_init, means_init and precisions_init in scikit-learn's shapes."""
    d = x.shape[1]
    means = x[np.random.RandomState(1).choice(len(x), k, replace=False)]
    prec = {"full": np.stack([np.eye(d) * (1.0 + i) for i in range(k)]), "tied": 0.5 * np.eye(d),
            "diag": np.linspace(0.5, 2.0, k * d).reshape(k, d), "spherical": np.full(k, 0.7)}
    return {"weights_init": np.full(k, 1.0 / k), "means_init": means,
            "precisions_init": prec[covariance_type]}


def as_sklearn(model: GaussianMixture) -> SkGaussianMixture:
    """A scikit-learn model carrying ``model``'s fitted parameters."""
    sk = SkGaussianMixture(model.n_components, covariance_type=model.covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_",
                 "n_features_in_", "converged_", "n_iter_", "lower_bound_"):
        setattr(sk, name, getattr(model, name))
    return sk


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
def test_em_trace_matches_sklearn_through_warm_start(covariance_type):
    # Offset data (+50) exercise the conditioning of the expanded second moments.
    x, _ = blobs(400, 3, 3, seed=2, offset=50.0)
    kw = dict(n_components=3, covariance_type=covariance_type, warm_start=True, max_iter=1,
              tol=0.0, **initial_parameters(x, 3, covariance_type))
    ours, theirs = GaussianMixture(**kw, dtype=torch.float64), SkGaussianMixture(**kw)
    trace_ours, trace_theirs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        for _ in range(25):  # each fit is one more EM iteration from the current parameters
            trace_ours.append(ours.fit(x).lower_bound_)
            trace_theirs.append(theirs.fit(x).lower_bound_)
            assert ours.n_iter_ == 1 and not ours.converged_
    trace_ours, trace_theirs = np.array(trace_ours), np.array(trace_theirs)
    assert trace_theirs[-1] > trace_theirs[0] + 0.1  # EM made progress: the trace is informative
    rel = np.abs(trace_ours - trace_theirs) / np.abs(trace_theirs)
    assert rel.max() < 1e-4, rel
    assert np.all(np.diff(trace_ours) > -1e-10)  # EM never decreases the likelihood
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-6,
                                   atol=1e-9, err_msg=name)


def test_warm_start_converges_against_the_previous_lower_bound():
    # As scikit-learn: a second warm fit compares its first lower bound with the first fit's,
    # so a converged model stops after one iteration.
    x, _ = blobs(500, 2, 3, seed=3)
    kw = dict(n_components=3, warm_start=True, random_state=0, tol=1e-2)
    ours, theirs = GaussianMixture(**kw, dtype=torch.float64), SkGaussianMixture(**kw)
    assert ours.fit(x).n_iter_ > 1 and theirs.fit(x).n_iter_ > 1
    ours.fit(x)
    theirs.fit(x)
    assert ours.n_iter_ == theirs.n_iter_ == 1 and ours.converged_ and theirs.converged_


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
def test_bic_aic_and_parameter_count_match_sklearn(covariance_type):
    x, _ = blobs(500, 3, 3, seed=4)
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                            dtype=torch.float64).fit(x)
    sk = as_sklearn(model)
    assert model._n_parameters() == sk._n_parameters()
    assert model.bic(x) == pytest.approx(sk.bic(x), rel=1e-10)
    assert model.aic(x) == pytest.approx(sk.aic(x), rel=1e-10)
    assert model.bic(x) > model.aic(x)  # log N > 2: the parameter penalty differs


def test_parameter_count_of_extra_types():
    x, _ = blobs(300, 3, 2)
    k, d = 2, 3
    unit = GaussianMixture(k, covariance_type="unit").fit(x)
    shared = GaussianMixture(k, covariance_type="shared_spherical").fit(x)
    assert unit._n_parameters() == (k - 1) + k * d
    assert shared._n_parameters() == (k - 1) + k * d + 1
    np.testing.assert_allclose(unit.covariances_, 1.0)
    assert shared.covariances_.shape == () and unit.covariances_.shape == ()


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
def test_densities_match_sklearn_with_copied_parameters(covariance_type):
    x, _ = blobs(500, 3, 3, seed=5)
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                            dtype=torch.float64).fit(x)
    sk = as_sklearn(model)
    x_test = x[::3] + 0.3
    np.testing.assert_allclose(model.score_samples(x_test), sk.score_samples(x_test), rtol=1e-9)
    np.testing.assert_allclose(model.predict_proba(x_test), sk.predict_proba(x_test), atol=1e-9)
    np.testing.assert_array_equal(model.predict(x_test), sk.predict(x_test))
    assert model.score(x_test) == pytest.approx(sk.score(x_test), rel=1e-10)
    expected = {"full": (3, 3, 3), "tied": (3, 3), "diag": (3, 3), "spherical": (3,)}
    assert model.covariances_.shape == expected[covariance_type]
    assert model.precisions_cholesky_.shape == expected[covariance_type]


@pytest.mark.parametrize("covariance_type", [*SKLEARN_TYPES, "shared_spherical"])
def test_reg_covar_keeps_a_constant_column_finite(covariance_type):
    x, _ = blobs(400, 2, 2, seed=6)
    x = np.column_stack([x, np.full(len(x), 3.0)])  # zero variance in the last feature
    model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(x)
    assert np.isfinite(model.lower_bound_)
    for name in ("weights_", "means_", "covariances_", "precisions_"):
        assert np.isfinite(getattr(model, name)).all(), name
    if covariance_type == "diag":
        np.testing.assert_allclose(model.covariances_[:, -1], 1e-6, rtol=1e-3)
    assert set(np.unique(model.predict(x))) <= {0, 1}
    assert np.isfinite(model.score_samples(x)).all()


def test_n_init_keeps_the_best_restart():
    # Overlapping blobs and random points as seeds: restarts end in different optima.
    x, _ = blobs(600, 2, 6, seed=7)
    kw = dict(n_components=6, init_params="random_from_data", dtype=torch.float64, max_iter=300)
    # Restart r of random_state=s is initialised with seed s + r: n_init=1 fits reproduce it.
    singles = [GaussianMixture(**kw, random_state=5 + r).fit(x).lower_bound_ for r in range(3)]
    best = GaussianMixture(**kw, n_init=3, random_state=5).fit(x)
    assert max(singles) - min(singles) > 1e-3  # the restarts really differ
    assert all(best.lower_bound_ >= s - 1e-9 for s in singles)
    assert best.lower_bound_ == pytest.approx(max(singles), rel=1e-9)
    assert best.converged_ and 1 < best.n_iter_ < 300
    assert len(best.lower_bounds_) == best.n_iter_
    assert best.lower_bounds_[-1] == best.lower_bound_


def test_not_converged_warns():
    x, _ = blobs(300, 2, 3)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="did not converge"):
        model = GaussianMixture(3, max_iter=1, random_state=0).fit(x)
    assert not model.converged_ and model.n_iter_ == 1


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_fits_separated_blobs(init_params):
    x, y = blobs(800, 2, 4, seed=3)
    # random responsibilities start all means near the data mean: EM needs a small tol to
    # leave that saddle (as in scikit-learn). Random seeds may share a blob and end in a local
    # optimum (in ~30% of single runs of random_from_data here): four batched restarts.
    tol = 1e-6 if init_params == "random" else 1e-3
    model = GaussianMixture(4, init_params=init_params, n_init=4, tol=tol, max_iter=500,
                            random_state=0)
    labels = model.fit_predict(x)
    np.testing.assert_array_equal(labels, model.predict(x))
    assert adjusted_rand_score(y, labels) >= 0.95
    assert model.converged_


def test_sample_moments_and_reproducibility():
    x, _ = blobs(600, 2, 3, seed=8)
    model = GaussianMixture(3, random_state=0, dtype="float64").fit(x)
    points, labels = model.sample(20000)
    assert points.shape == (20000, 2) and points.dtype == np.float64 and labels.dtype == np.int64
    assert np.all(np.diff(labels) >= 0)  # grouped by component, as scikit-learn
    w, mu, cov = model.weights_, model.means_, model.covariances_
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + mu[:, :, None] * mu[:, None, :])
    np.testing.assert_allclose(points.mean(0), mean, atol=0.1)
    np.testing.assert_allclose(np.cov(points.T), second - np.outer(mean, mean), atol=0.3)
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 20000, w, atol=0.02)
    np.testing.assert_array_equal(model.sample(5)[0], model.sample(5)[0])  # integer seed
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0)


@pytest.mark.parametrize("covariance_type", ["full", "spherical", "unit"])
def test_save_load_roundtrip(tmp_path, covariance_type):
    x, _ = blobs(400, 2, 3, seed=9)
    model = GaussianMixture(3, covariance_type=covariance_type, n_init=2, random_state=0,
                            means_init=x[:3]).fit(x)
    model.save(tmp_path / "gmm.pt")
    loaded = GaussianMixture.load(tmp_path / "gmm.pt")
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    np.testing.assert_array_equal(loaded.score_samples(x), model.score_samples(x))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert (loaded.n_iter_, loaded.converged_, loaded.lower_bound_) == \
        (model.n_iter_, model.converged_, model.lower_bound_)
    assert loaded.get_params()["n_init"] == 2


def test_numpy_and_torch_inputs_agree():
    x, _ = blobs(500, 2, 3, seed=10)
    a = GaussianMixture(3, random_state=0).fit(x)
    b = GaussianMixture(3, random_state=0).fit(torch.from_numpy(x).float())
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.predict(torch.from_numpy(x)), b.predict(x.tolist()))
    assert isinstance(a.predict_proba(torch.from_numpy(x)), np.ndarray)


def test_float32_default_is_close_to_float64():
    x, _ = blobs(600, 3, 3, seed=11, offset=50.0)
    single = GaussianMixture(3, random_state=0).fit(x)
    double = GaussianMixture(3, random_state=0, dtype=torch.float64).fit(x)
    assert single._em.means.dtype == torch.float32 and double._em.means.dtype == torch.float64
    np.testing.assert_allclose(single.means_, double.means_, rtol=1e-4)
    np.testing.assert_allclose(single.covariances_, double.covariances_, atol=1e-3)
    assert single.lower_bound_ == pytest.approx(double.lower_bound_, rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu():
    x, _ = blobs(2000, 3, 4, seed=12)
    cpu = GaussianMixture(4, n_init=3, random_state=0, dtype=torch.float64).fit(x)
    gpu = GaussianMixture(4, n_init=3, random_state=0, dtype=torch.float64, device="cuda")
    gpu.fit(torch.from_numpy(x).cuda())
    np.testing.assert_allclose(gpu.means_, cpu.means_, rtol=1e-6)
    np.testing.assert_allclose(gpu.score_samples(x), cpu.score_samples(x), rtol=1e-6)


X_GOOD = np.random.RandomState(0).normal(size=(20, 2))


@pytest.mark.parametrize(("kwargs", "x", "match"), [
    ({"n_components": 0}, X_GOOD, "The 'n_components' parameter of GaussianMixture must be an "
     "int in the range \\[1, inf\\). Got 0 instead."),
    ({"covariance_type": "banana"}, X_GOOD, "'covariance_type' parameter .* Got 'banana'"),
    ({"init_params": "kmeans+"}, X_GOOD, "'init_params' parameter .* Got 'kmeans\\+'"),
    ({"reg_covar": -1.0}, X_GOOD, "'reg_covar' parameter .* must be a float in the range"),
    ({"max_iter": -1}, X_GOOD, "'max_iter' parameter .* int in the range \\[0, inf\\)"),
    ({"n_init": 0}, X_GOOD, "'n_init' parameter .* int in the range \\[1, inf\\)"),
    ({"dtype": "float16"}, X_GOOD, "dtype='float16' is not supported"),
    ({}, np.where(np.eye(20, 2) > 0, np.nan, X_GOOD), "NaN or infinity"),
    ({}, np.where(np.eye(20, 2) > 0, np.inf, X_GOOD), "NaN or infinity"),
    ({}, X_GOOD[:, 0], "Expected a 2-D array"),
    ({"n_components": 21}, X_GOOD, "Expected n_samples >= n_components"),
    ({"n_components": 2, "weights_init": [0.2, 0.2]}, X_GOOD, "'weights' should be normalized"),
    # the maximum named as such (scikit-learn's message swaps them: sklearn_suite's xfail)
    ({"n_components": 2, "weights_init": [1.2, 1.5]}, X_GOOD,
     "'weights' should be in the range \\[0, 1\\], but got max value 1.50000, min value 1.20000"),
    ({"n_components": 2, "means_init": np.zeros((2, 3))}, X_GOOD,
     "'means' should have the shape of"),
    ({"n_components": 2, "precisions_init": np.ones(2)}, X_GOOD, "'full precision' should have"),
    ({"n_components": 2, "covariance_type": "tied", "precisions_init": -np.eye(2)}, X_GOOD,
     "'tied precision' should be symmetric, positive-definite"),
    ({"covariance_type": "unit", "precisions_init": 1.0}, X_GOOD, "cannot be set"),
])
def test_invalid_arguments_raise(kwargs, x, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs).fit(x)


def test_predict_errors():
    with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted yet"):
        GaussianMixture().predict(X_GOOD)
    model = GaussianMixture(2, random_state=0).fit(X_GOOD)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="invalid parameter 'n_component'"):
        model.set_params(n_component=3)


def test_imports_without_sklearn(monkeypatch):
    for name in ("sklearn", "sklearn.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import sklearn…` fail
    spec = importlib.util.spec_from_file_location("estimator_without_sklearn",
                                                  mixtures.estimator.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.NotFittedError, RuntimeError)
    assert issubclass(module.ConvergenceWarning, UserWarning)
    with pytest.raises(module.NotFittedError):
        module.GaussianMixture().score(X_GOOD)


def test_clone_repr_and_verbose(capsys):
    model = GaussianMixture(3, covariance_type="diag", dtype="float64", verbose=2,
                            verbose_interval=1)
    assert repr(model) == ("GaussianMixture(n_components=3, covariance_type='diag', verbose=2, "
                           "verbose_interval=1, dtype='float64')")
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    copy.fit(blobs(200, 2, 3)[0])
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1" in out and "converged" in out


def describe_best_model(estimator_class, x):
    """Code written against scikit-learn's API only: choose K by BIC, describe the fit."""
    fits = [estimator_class(n_components=k, random_state=0).fit(x) for k in range(1, 6)]
    best = min(fits, key=lambda m: m.bic(x))
    order = np.argsort(best.means_[:, 0])
    return {"k": best.means_.shape[0], "means": best.means_[order],
            "covariances": best.covariances_[order], "converged": best.converged_,
            "labels": best.predict(x)}


def test_code_written_for_sklearn_runs_unchanged():
    x, y = blobs(900, 2, 3, seed=13)
    ours = describe_best_model(GaussianMixture, x)
    theirs = describe_best_model(SkGaussianMixture, x)
    assert ours["k"] == theirs["k"] == 3
    assert ours["converged"] and theirs["converged"]
    np.testing.assert_allclose(ours["means"], theirs["means"], atol=1e-3)
    np.testing.assert_allclose(ours["covariances"], theirs["covariances"], atol=1e-3)
    assert adjusted_rand_score(ours["labels"], theirs["labels"]) > 0.99
    assert adjusted_rand_score(y, ours["labels"]) > 0.95
