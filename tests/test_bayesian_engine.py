"""The engine under ``BayesianGaussianMixture`` (``mixtures.bayesian_engine.Engine``): its lower
bound is the ELBO up to the stated constants, its finite-Dirichlet factor is a Dirichlet, and
its truncation differs from scikit-learn's in the K-th component only."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mixtures import BayesianGaussianMixture
from mixtures.data.blobs import make_blobs

torch.set_num_threads(1)
TYPES = ("full", "diag", "spherical")


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(300, 3, 3, separation=3.0, seed=0)[:2]
    return x.numpy().astype(np.float64), y.numpy()


def _fit(x, **kw) -> BayesianGaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after a few iterations
        return BayesianGaussianMixture(dtype=torch.float64, random_state=0, **kw).fit(x)


@pytest.mark.parametrize("reg_covar", [0.0, 1e-3])
@pytest.mark.parametrize("kind", TYPES)
def test_lower_bound_is_the_elbo_up_to_constants(blobs, kind, reg_covar):
    """``ELBO(r, q) = lower_bound(r) − L₀ − N D/2 log 2π + ½ reg_covar Σ_k N_k tr E[Λ_k]`` at the
    posterior ``q`` of ``r`` (module docstring), the ELBO from the public API: ``Σ r E[log π N]
    + H(r) − KL``."""
    x = blobs[0]
    model = _fit(x, n_components=4, covariance_type=kind, reg_covar=reg_covar, max_iter=3)
    engine, xt = model._model, torch.as_tensor(x)
    resp, _ = engine.local_step(xt)
    engine.m_step(xt, resp, reg_covar)
    entropy = -torch.special.xlogy(resp, resp).sum()
    elbo = (resp * engine.assignment_log_prob(xt)).sum() + entropy - engine.kl()
    n, d = x.shape
    trace = torch.linalg.inv(engine.covariances.double()).diagonal(dim1=-2, dim2=-1).sum(-1)
    correction = 0.5 * reg_covar * float((engine.counts.detach().double() * trace).sum())
    expected = (engine.lower_bound(resp) - engine.prior_bound() - 0.5 * n * d * np.log(2 * np.pi)
                + correction)
    assert float(elbo) == pytest.approx(expected, abs=1e-8)
    assert model.elbo_ == pytest.approx(float(engine.elbo(xt)), rel=1e-3)  # before the extra step


def test_finite_dirichlet_factor_is_a_dirichlet(blobs):
    """``E[log π]``, the weights and the KL of the finite symmetric Dirichlet equal
    torch.distributions' (posterior ``α₀ + N_k``)."""
    model = _fit(blobs[0], n_components=4, max_iter=3,
                 weight_concentration_prior_type="dirichlet_distribution")
    engine = model._model
    alpha = engine.counts.detach().double() + engine.alpha
    q = torch.distributions.Dirichlet(alpha)
    p = torch.distributions.Dirichlet(torch.full_like(alpha, engine.alpha))
    kl_components = engine.prior_family.kl(engine.posterior(), engine.prior()).sum()
    assert float(engine.kl() - kl_components) == pytest.approx(
        float(torch.distributions.kl_divergence(q, p)), rel=1e-10)
    np.testing.assert_allclose(model.weights_, (alpha / alpha.sum()).numpy(), atol=1e-12)
    np.testing.assert_allclose(model.weight_concentration_, alpha.numpy(), atol=1e-12)


def test_truncation_differs_from_scikit_learns_in_the_last_component_only(blobs):
    """Ours: K − 1 Beta sticks and ``v_K = 1``; scikit-learn's (``compat``): K sticks. The
    first K − 1 ``E[log π_k]`` agree exactly; the K-th is higher in ours by
    ``−E[log v_K] = ψ(1 + N_K + α) − ψ(1 + N_K) > 0``."""
    engine = _fit(blobs[0], n_components=4, max_iter=3)._model
    ours = engine.log_weights()
    engine.compat = True
    theirs = engine.log_weights()
    np.testing.assert_array_equal(ours[:-1].numpy(), theirs[:-1].numpy())
    n_k = engine.counts.detach().double()[-1].clamp_min(0)
    gap = torch.digamma(1 + n_k + engine.alpha) - torch.digamma(1 + n_k)
    assert float(ours[-1] - theirs[-1]) == pytest.approx(float(gap), rel=1e-10)
    assert float(gap) > 0
