"""ClassDensity: each class's mixture is GaussianMixtureEM's fit of that class's features,
the density is the frequency-weighted mixture of the classes, state round-trips."""

from __future__ import annotations

import pytest
import torch

from mixtures.distributions import DiagCovariance, FullCovariance, ScalarCovariance
from mixtures.models import GaussianMixtureEM
from mixtures.models.class_density import ClassDensity


def _data(n: int = 240, c: int = 4, d: int = 3):
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, c, (n,), generator=gen)
    centres = 4 * torch.randn(c, 2, d, generator=gen)
    z = centres[y, torch.randint(0, 2, (n,), generator=gen)] + torch.randn(n, d, generator=gen)
    return z.double(), y


@pytest.mark.parametrize("cov", [FullCovariance, DiagCovariance, ScalarCovariance])
def test_each_class_is_the_em_fit_of_its_features(cov):
    z, y = _data()
    density = ClassDensity(4, 3, num_components=2, covariance=cov(), reg_covar=1e-5,
                           seed=3).double()
    density.fit(z, y)
    ll = density.class_log_likelihood(z)  # [N, 4]
    for k in range(4):
        em = GaussianMixtureEM(2, 3, covariance=cov(), reg_covar=1e-5, seed=3 + k).double()
        em.initialize(z[y == k])
        em.fit(z[y == k])
        assert torch.allclose(ll[:, k], em.score_samples(z), atol=1e-8)
    prior = torch.bincount(y, minlength=4).double() / y.numel()
    expected = torch.logsumexp(ll + prior.log(), -1)
    assert torch.allclose(density.log_prob(z), expected, atol=1e-10)


def test_class_without_features_has_no_density_and_state_round_trips():
    z, y = _data()
    keep = y != 2
    density = ClassDensity(4, 3, num_components=1)
    out = density.fit(z[keep].float(), y[keep])
    assert out["n_iter"][2] == 0 and bool(out["converged"][[0, 1, 3]].all())
    assert torch.isinf(density.class_log_likelihood(z.float())[:, 2]).all()
    assert torch.isfinite(density.log_prob(z.float())).all()
    again = ClassDensity(4, 3, num_components=1)
    assert not again.is_fitted
    again.load_state_dict(density.state_dict())
    assert again.is_fitted and torch.equal(again.log_prob(z.float()), density.log_prob(z.float()))


def test_errors_name_the_fix():
    z, y = _data()
    with pytest.raises(RuntimeError, match="not fitted"):
        ClassDensity(4, 3).log_prob(z.float())
    with pytest.raises(ValueError, match="fewer training features than num_components=5"):
        ClassDensity(4, 3, num_components=5).fit(z[:12], y[:12])
    with pytest.raises(ValueError, match="density has 2 classes"):
        ClassDensity(2, 3).fit(z, y)
    with pytest.raises(ValueError, match="features \\[N, 5\\]"):
        ClassDensity(4, 5).fit(z, y)
    with pytest.raises(ValueError, match="num_components"):
        ClassDensity(4, 3, num_components=0)
    with pytest.raises(ValueError, match="reg_covar"):
        ClassDensity(4, 3, reg_covar=-1.0)
