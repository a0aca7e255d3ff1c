"""The drop-in as a scikit-learn estimator: tags, Pipeline, GridSearchCV, cross_val_score and
scikit-learn's own ``check_estimator`` (issue: the drop-in held to scikit-learn's tests)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_outlier_detector
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_estimator

from mixtures import GaussianMixture
from mixtures.data.blobs import make_blobs


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return make_blobs(1500, 2, 3, separation=3.0, seed=0)[0].numpy().astype(np.float64)


def test_it_has_scikit_learns_tags_and_clones():
    tags = get_tags(GaussianMixture())
    assert tags.estimator_type == "density_estimator" and not is_outlier_detector(
        GaussianMixture())
    copy = clone(GaussianMixture(4, covariance_type="diag", random_state=3))
    assert copy.get_params()["n_components"] == 4 and copy.covariance_type == "diag"
    assert not hasattr(copy, "weights_")


def test_pipeline_fits_and_scores_as_scikit_learns(x):
    ours = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(x)
    ref = make_pipeline(StandardScaler(), SkGaussianMixture(3, random_state=0)).fit(x)
    assert ours.score(x) == pytest.approx(ref.score(x), abs=1e-4)
    assert (ours.predict(x[:5]) >= 0).all()


def test_grid_search_chooses_the_true_number_of_components(x):
    grid = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3, 4]}, cv=3)
    grid.fit(x)
    assert grid.best_params_ == {"n_components": 3}
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


def test_cross_val_score_of_a_pipeline_is_finite_and_equals_scikit_learns(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "Scoring failed … set to nan" is an error
        ours = cross_val_score(make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)),
                               x, cv=3)
    ref = cross_val_score(make_pipeline(StandardScaler(), SkGaussianMixture(3, random_state=0)),
                          x, cv=3)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


#: checks that fail by a documented, deliberate difference, with the reason
KNOWN_DIFFERENCES = {
    # float32 engine by default (speed); outputs are float64 for float64 input, and a subset's
    # scores then differ from the whole set's by a float32 rounding (~2e-7), above the check's
    # 1e-7 tolerance. With dtype=torch.float64 the check passes (the float64 case below).
    "check_methods_subset_invariance": "float32 engine",
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", [None, torch.float64])
def test_scikit_learns_estimator_checks_pass(dtype):
    """Every check of ``check_estimator`` that runs passes (41 with scikit-learn 1.9: one is
    skipped by scikit-learn itself), but for the listed differences of the float32 default."""
    results = check_estimator(GaussianMixture(dtype=dtype), on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:200] for r in results
              if r["status"] == "failed"}
    allowed = KNOWN_DIFFERENCES if dtype is None else {}
    assert set(failed) <= set(allowed), failed
    assert sum(r["status"] == "passed" for r in results) >= 35


@pytest.mark.parametrize(("dtype", "expected"), [(np.float64, np.float64), (np.float32, np.float32),
                                                 (np.int64, np.float64)])
def test_outputs_have_the_datas_float_dtype(x, dtype, expected):
    """As scikit-learn: float64 results for float64 input (they were float32 from the float32
    engine, while ``sample`` gave float64), float32 for float32; the engine stays float32."""
    data = (x * 10).astype(dtype)
    model = GaussianMixture(3, random_state=0).fit(data)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(model, name).dtype == expected, name
    assert model.predict_proba(data[:4]).dtype == expected
    assert model.score_samples(data[:4]).dtype == expected
    assert model.sample(3)[0].dtype == np.float64
    ref = SkGaussianMixture(3, random_state=0).fit(data)
    assert ref.means_.dtype == expected


def test_max_iter_zero_returns_the_initialisation_as_scikit_learn(x):
    """``max_iter=0`` (refused before): the parameters of the initialisation, not converged,
    no iteration, a lower bound of −∞ and, as scikit-learn, no ConvergenceWarning."""
    means = [[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = GaussianMixture(3, means_init=means, max_iter=0, random_state=0).fit(x)
        ref = SkGaussianMixture(3, means_init=means, max_iter=0, random_state=0).fit(x)
    np.testing.assert_allclose(ours.means_, means)
    assert (ours.n_iter_, ours.converged_, ours.lower_bound_) == (0, False, -np.inf)
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-5)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-4)


def test_sample_of_no_points_is_refused_in_scikit_learns_words(x):
    model = GaussianMixture(3, random_state=0).fit(x)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        model.sample(0)
