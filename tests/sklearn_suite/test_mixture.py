# Authors: The scikit-learn developers
# SPDX-License-Identifier: BSD-3-Clause
#
# A copy of scikit-learn 1.9.1's sklearn/mixture/tests/test_mixture.py (BSD-3-Clause licence:
# https://github.com/scikit-learn/scikit-learn/blob/1.9.1/COPYING), run against
# mixtures.GaussianMixture.

"""scikit-learn's common mixture tests, with ``GaussianMixture`` ours.

Unchanged but for the imports (and a skip where scikit-learn is not installed): nothing is
marked. The ``BayesianGaussianMixture`` parameter runs scikit-learn's own class (there is no
drop-in for it); it is kept so that the file stays scikit-learn's.
"""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.mixture import BayesianGaussianMixture

from mixtures import GaussianMixture


@pytest.mark.parametrize("estimator", [GaussianMixture(), BayesianGaussianMixture()])
def test_gaussian_mixture_n_iter(estimator):
    # check that n_iter is the number of iteration performed.
    estimator = clone(estimator)  # Avoid side effects from shared instances
    rng = np.random.RandomState(0)
    X = rng.rand(10, 5)
    max_iter = 1
    estimator.set_params(max_iter=max_iter)
    estimator.fit(X)
    assert estimator.n_iter_ == max_iter


@pytest.mark.parametrize("estimator", [GaussianMixture(), BayesianGaussianMixture()])
def test_mixture_n_components_greater_than_n_samples_error(estimator):
    """Check error when n_components <= n_samples"""
    estimator = clone(estimator)  # Avoid side effects from shared instances
    rng = np.random.RandomState(0)
    X = rng.rand(10, 5)
    estimator.set_params(n_components=12)

    msg = "Expected n_samples >= n_components"
    with pytest.raises(ValueError, match=msg):
        estimator.fit(X)
