"""MixtureDensityNetwork against torch.distributions, closed forms and goodness-of-fit tests."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal, Normal

from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    component_log_prob,
)
from mixtures.models import MixtureDensityNetwork

COVARIANCES = {
    "full": FullCovariance,
    "diag": DiagCovariance,
    "scalar": ScalarCovariance,
    "shared_scalar": SharedScalarCovariance,
    "shared_full": SharedFullCovariance,
    "unit": lambda: UnitCovariance(scale=0.7),
}


def _mdn(cov: str, f: int = 3, d: int = 3, k: int = 4, seed: int = 0,
         gain: float = 3.0) -> MixtureDensityNetwork:
    """A float64 MDN with random, varied outputs (head weights scaled up by ``gain``)."""
    torch.manual_seed(seed)
    mdn = MixtureDensityNetwork(f, d, k, (16, 16), "tanh", COVARIANCES[cov]()).double()
    with torch.no_grad():
        mdn.head.weight.mul_(gain)
        mdn.head.bias.normal_()
    return mdn


def _reference(mdn: MixtureDensityNetwork, x: torch.Tensor) -> MixtureSameFamily:
    """torch.distributions' mixture with the MDN's weights, means and Cholesky factors."""
    log_w, means, raw = mdn(x)
    tril = mdn.cov.scale_tril(raw, mdn.num_targets).expand(*means.shape, means.shape[-1])
    return MixtureSameFamily(Categorical(logits=log_w), MultivariateNormal(means, scale_tril=tril))


@pytest.mark.parametrize("cov", sorted(COVARIANCES))
def test_log_prob_matches_torch_distributions(cov):
    """Random parameters, batch shape [4, 5], D_y = 3: log p(y | x) equals
    MixtureSameFamily(MultivariateNormal) to 1e-5; also for y with an extra leading dim."""
    mdn = _mdn(cov)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    y = 2 * torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    ref = _reference(mdn, x)
    torch.testing.assert_close(mdn.log_prob(x, y), ref.log_prob(y), atol=1e-5, rtol=0)
    grid = 2 * torch.randn(7, 4, 5, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mdn.log_prob(x, grid), ref.log_prob(grid), atol=1e-5, rtol=0)
    # the parameters vary with x (not a constant mixture)
    log_w, means, _ = mdn(x)
    assert log_w.std(dim=(0, 1)).min() > 0.05 and means.std(dim=(0, 1)).min() > 0.05


@pytest.mark.parametrize("cov", ["scalar", "shared_scalar"])
def test_isotropic_scales_are_per_component_for_several_targets(cov):
    """The reference implementation's bug: per-component σ repeated with ``repeat`` instead of
    ``repeat_interleave`` mixes components when D_y > 1. Here component k must be
    N(μ_k, σ_k² I) with its own σ_k in every dimension."""
    mdn = _mdn(cov, d=3, k=4)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randn(6, 3, dtype=torch.float64)
    _, means, raw = mdn(x)
    sigma = mdn.cov.scale(raw)  # [B, K or 1, 1]
    assert sigma.shape[-1] == 1
    if cov == "scalar":
        assert sigma[..., 0].std(-1).min() > 1e-3  # distinct σ_k per component
    per_dim = Normal(means, sigma.expand_as(means)).log_prob(y.unsqueeze(-2)).sum(-1)
    torch.testing.assert_close(component_log_prob(y, means, raw, mdn.cov), per_dim,
                               atol=1e-10, rtol=0)
    dense = mdn.cov.covariance(raw, 3)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(dense, sigma[..., None].square() * eye)


@pytest.mark.parametrize("cov", sorted(COVARIANCES))
def test_mean_and_variance_match_torch_distributions(cov):
    """Predictive mean and law-of-total-variance variance equal torch.distributions'; the full
    covariance equals Σ_k π_k (Σ_k + μ_k μ_kᵀ) − m mᵀ."""
    mdn = _mdn(cov)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    ref = _reference(mdn, x)
    torch.testing.assert_close(mdn.mean(x), ref.mean)
    torch.testing.assert_close(mdn.variance(x), ref.variance)
    log_w, means, raw = mdn(x)
    w = log_w.exp()[..., None, None]
    second = (w * (mdn.cov.covariance(raw, 3) + means[..., :, None] * means[..., None, :]))
    m = ref.mean
    expected = second.sum(-3) - m[..., :, None] * m[..., None, :]
    torch.testing.assert_close(mdn.covariance(x), expected)


def test_samples_pass_a_ks_test_against_the_cdf():
    """20k draws for one fixed input (K = 3, D_y = 1): their PIT values F(y | x) are uniform
    (Kolmogorov–Smirnov), and the CDF agrees with the integral of exp(log_prob)."""
    mdn = _mdn("full", f=2, d=1, k=3, seed=3)
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    draws = mdn.sample(x, 20_000, gen)  # [S, 1, 1]
    assert draws.shape == (20_000, 1, 1)
    pit = mdn.marginal_cdf(x, draws)[:, 0, 0].detach()
    assert stats.kstest(pit.numpy(), "uniform").pvalue > 0.01
    # a wrong sampler (e.g. the first component only) fails the same test
    log_w, means, raw = mdn(x)
    wrong = means[0, 0, 0] + mdn.cov.scale_tril(raw, 1)[0, 0, 0, 0] * torch.randn(
        20_000, 1, 1, generator=gen, dtype=torch.float64)
    assert stats.kstest(mdn.marginal_cdf(x, wrong)[:, 0, 0].detach().numpy(),
                        "uniform").pvalue < 1e-6
    # CDF = ∫ exp(log_prob) (trapezoid on a fine grid)
    grid = torch.linspace(-40, 40, 200_001, dtype=torch.float64)[:, None, None]
    with torch.no_grad():
        dens = mdn.log_prob(x, grid).exp()[:, 0]
        cdf = torch.cumulative_trapezoid(dens, grid[:, 0, 0])
        at = torch.tensor([10_000, 90_000, 100_000, 110_000, 190_000])
        torch.testing.assert_close(cdf[at - 1], mdn.marginal_cdf(x, grid[at])[:, 0, 0],
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("cov", ["full", "shared_full", "scalar", "diag"])
def test_samples_match_the_analytic_moments_in_two_dimensions(cov):
    """For 2-D targets and three inputs at once, the sample mean and covariance of 40k draws
    agree with the mixture's mean and law-of-total-variance covariance within 5 standard
    errors (the errors from the sample's own fourth moments)."""
    mdn = _mdn(cov, f=1, d=2, k=3, seed=5)
    x = torch.tensor([[-1.0], [0.0], [1.0]], dtype=torch.float64)
    s = 40_000
    draws = mdn.sample(x, s, torch.Generator().manual_seed(2))  # [S, 3, 2]
    with torch.no_grad():
        mean, cov_true = mdn.mean(x), mdn.covariance(x)
    centred = draws - draws.mean(0)
    se_mean = draws.std(0) / math.sqrt(s)
    assert ((draws.mean(0) - mean).abs() <= 5 * se_mean).all()
    prods = centred[..., :, None] * centred[..., None, :]  # [S, 3, 2, 2]
    se_cov = prods.std(0) / math.sqrt(s)
    assert ((prods.mean(0) - cov_true).abs() <= 5 * se_cov).all()


def test_mode_is_the_highest_density_point():
    """The mode beats every component mean and matches a grid search (1-D, bimodal)."""
    mdn = _mdn("diag", f=1, d=1, k=3, seed=7)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    mode = mdn.mode(x)  # [9, 1]
    assert torch.isfinite(mode).all()
    with torch.no_grad():
        _, means, _ = mdn(x)
        at_mode = mdn.log_prob(x, mode)
        at_means = mdn.log_prob(x, means.movedim(-2, 0))  # [K, 9]
        assert (at_mode >= at_means.amax(0) - 1e-9).all()
        grid = torch.linspace(-30, 30, 600_001, dtype=torch.float64)[:, None, None]
        best = grid[mdn.log_prob(x, grid).argmax(0), 0, 0]
        # the grid's best point is at most half a step (5e-5) from the true mode
        assert (at_mode >= mdn.log_prob(x, best[:, None]) - 1e-6).all()
    # one component: the mode is the mean
    single = _mdn("full", f=1, d=2, k=1)
    torch.testing.assert_close(single.mode(x), single.mean(x).detach())


@pytest.mark.parametrize("cov", sorted(COVARIANCES))
def test_any_leading_batch_shape(cov):
    """Inputs [2, 3, F]: every method keeps the batch shape and equals the flattened batch."""
    mdn = _mdn(cov, f=2, d=2, k=3)
    x = torch.randn(2, 3, 2, dtype=torch.float64)
    y = torch.randn(2, 3, 2, dtype=torch.float64)
    flat_x, flat_y = x.reshape(6, 2), y.reshape(6, 2)
    assert mdn.log_prob(x, y).shape == (2, 3)
    torch.testing.assert_close(mdn.log_prob(x, y).reshape(6), mdn.log_prob(flat_x, flat_y))
    assert mdn.sample(x, 5).shape == (5, 2, 3, 2)
    for name in ("mean", "variance", "mode"):
        value = getattr(mdn, name)(x)
        assert value.shape == (2, 3, 2), name
        torch.testing.assert_close(value.reshape(6, 2), getattr(mdn, name)(flat_x))
    assert mdn.covariance(x).shape == (2, 3, 2, 2)
    assert mdn.marginal_cdf(x, y).shape == (2, 3, 2)


@pytest.mark.parametrize("cov", sorted(COVARIANCES))
def test_every_parameter_gets_a_gradient(cov):
    """Weights, means and (learnable) scales all depend on x and are trained."""
    mdn = _mdn(cov, d=2)
    loss = -mdn.log_prob(torch.randn(8, 3, dtype=torch.float64),
                         torch.randn(8, 2, dtype=torch.float64)).mean()
    loss.backward()
    grad = mdn.head.weight.grad  # rows: K logits, K·D means, K'·P raw scales
    k, kd = mdn.num_components, mdn.num_components * mdn.num_targets
    assert grad[:k].abs().sum() > 0 and grad[k:k + kd].abs().sum() > 0
    if cov == "unit":
        assert grad.shape[0] == k + kd  # nothing to learn about the scales
    else:
        assert grad[k + kd:].abs().sum() > 0
    assert all(p.grad is not None for p in mdn.parameters())


def test_scales_keep_their_floor_and_unit_is_fixed():
    mdn = _mdn("diag", d=2, gain=200.0)  # extreme raw outputs
    x = 5 * torch.randn(200, 3, dtype=torch.float64)
    _, _, raw = mdn(x)
    assert mdn.cov.scale(raw).min() >= mdn.cov.min_scale
    unit = _mdn("unit", d=2)
    assert unit.raw_size == 0
    # the within-component part of the variance is the fixed σ² = 0.49
    assert (unit.variance(torch.zeros(1, 3, dtype=torch.float64)) >= 0.49 - 1e-12).all()


def test_initialize_spreads_the_components_over_the_targets():
    y = torch.cat([torch.randn(300, 1) - 5, torch.randn(300, 1) + 5])
    mdn = MixtureDensityNetwork(1, 1, 2, (8,))
    mdn.initialize(y, torch.Generator().manual_seed(0))
    _, means, _ = mdn(torch.zeros(1, 1))
    assert sorted(means[0, :, 0].tolist()) == pytest.approx([-5, 5], abs=0.5)
    assert bool(mdn.initialized)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_targets": 0}, "num_targets must be an integer ≥ 1"),
        ({"num_components": 0}, "num_components must be an integer ≥ 1"),
        ({"activation": "sigmoidal"}, "model.net.activation='sigmoidal' is not a torch.nn"),
        ({"hidden_sizes": [8, 0]}, "hidden_sizes must be positive"),
    ],
)
def test_bad_construction_names_the_field(kwargs, message):
    args = {"num_features": 2, "num_targets": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        MixtureDensityNetwork(**args)


def test_wrong_input_or_target_size_is_a_clear_error():
    mdn = MixtureDensityNetwork(2, 1, 2)
    with pytest.raises(ValueError, match="inputs have 3 features but model.net.num_features=2"):
        mdn.log_prob(torch.zeros(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="targets have 2 dimensions but model.net.num_targets=1"):
        mdn.log_prob(torch.zeros(4, 2), torch.zeros(4, 2))
