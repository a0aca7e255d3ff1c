"""``select_k``: BIC / AIC / held-out likelihood over K and covariance types, checked against
scikit-learn's own ``bic`` / ``aic``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixtures.selection import select_k

COVARIANCES = ("full", "tied", "diag", "spherical")


def _blobs(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    y = rng.integers(0, 3, n)
    return centres[y] + rng.normal(size=(n, 2)) * np.array([1.0, 0.5])


def _sklearn_with(params, cov: str):
    """A scikit-learn GaussianMixture holding our fitted parameters."""
    mixture = pytest.importorskip("sklearn.mixture")
    sk = mixture.GaussianMixture(params.n_components, covariance_type=cov)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(sk, name, np.asarray(getattr(params, name), dtype=np.float64))
    sk.converged_, sk.n_iter_, sk.lower_bound_ = True, 1, 0.0
    sk.n_features_in_ = params.means_.shape[1]
    return sk


@pytest.mark.parametrize("cov", COVARIANCES)
def test_bic_and_aic_are_scikit_learns(cov) -> None:
    """Every candidate's BIC / AIC is scikit-learn's bic / aic of the same fitted mixture
    (a float64 engine, so that only the formula is compared)."""
    x = _blobs()
    result = select_k(x, [2, 3], covariance_types=(cov,), dtype=torch.float64)
    sk = _sklearn_with(result.model, cov)
    row = result.table[0]
    assert row["n_components"] == result.n_components
    np.testing.assert_allclose(row["bic"], sk.bic(x), rtol=1e-10)
    np.testing.assert_allclose(row["aic"], sk.aic(x), rtol=1e-10)


def test_bic_selection_agrees_with_scikit_learn() -> None:
    """Over K = 1..5 and four covariance types, the BIC choice and values are scikit-learn's."""
    mixture = pytest.importorskip("sklearn.mixture")
    x = _blobs()
    result = select_k(x, range(1, 6), covariance_types=COVARIANCES, n_init=2)
    assert len(result.table) == 20
    sk_bic = {}
    for cov in COVARIANCES:
        for k in range(1, 6):
            gm = mixture.GaussianMixture(k, covariance_type=cov, n_init=2, random_state=0)
            sk_bic[k, cov] = gm.fit(x).bic(x)
    assert (result.n_components, result.covariance_type) == min(sk_bic, key=sk_bic.get)
    assert result.n_components == 3
    best = result.table[0]
    np.testing.assert_allclose(best["bic"], sk_bic[3, best["covariance_type"]], rtol=1e-4)
    assert [r["bic"] for r in result.table] == sorted(r["bic"] for r in result.table)
    assert "| n_components | covariance_type | bic | aic | converged |" in result.to_markdown()


def test_aic_and_heldout_likelihood() -> None:
    x = _blobs()
    aic = select_k(x, range(1, 6), criterion="aic")
    assert aic.score == min(r["aic"] for r in aic.table)
    held = select_k(x, range(1, 6), criterion="heldout")
    # held-out likelihood does not penalise K: one or two extra components may tie with 3
    nll = {r["n_components"]: r["heldout_nll"] for r in held.table}
    assert held.n_components >= 3 and nll[3] - held.score < 0.01 < nll[2] - nll[3]
    assert held.score == pytest.approx(min(r["heldout_nll"] for r in held.table))
    # the winner is refitted on all points; with x_val given, the points are not split
    assert held.model.n_features_in_ == 2
    given = select_k(x[:500], [3], criterion="heldout", x_val=x[500:])
    assert given.score == pytest.approx(-given.model.score(x[500:]))


def test_bad_arguments_name_the_fix() -> None:
    x = _blobs(50)
    with pytest.raises(ValueError, match="criterion='icl'"):
        select_k(x, [2], criterion="icl")
    with pytest.raises(ValueError, match="n_components up to 60 but only 50"):
        select_k(x, [60])
    with pytest.raises(ValueError, match=r"x must be \[N, D\]"):
        select_k(x[:, 0], [2])
