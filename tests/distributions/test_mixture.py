"""Tests of :mod:`mixtures.distributions.mixture` (mixture moments, marginal CDFs and modes).

Oracles:

* ``torch.distributions.MixtureSameFamily`` over ``MultivariateNormal`` components for the mean,
  the per-feature variances and the density; the full covariance against the law of total
  variance in its textbook (uncentred) form and against a seeded Monte-Carlo estimate;
* ``MixtureSameFamily`` over 1-D ``Normal`` components for every feature's marginal CDF, and an
  empirical CDF of seeded samples for a full-covariance mixture;
* a brute-force grid search of the mixture density for the mode, on 1-D and 2-D mixtures.

Every function is checked on unbatched mixtures (means ``[K, D]``) and on batched ones as a
mixture density network predicts them (means ``[B, K, D]`` and ``[B1, B2, K, D]``), with the
covariance types ``full``, ``diag``, ``scalar``, ``unit`` and the shared ones. Raw covariance
tensors are built as the models build them, ``cov.from_covariance(dense, weights)``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal, Normal

from mixtures.distributions import (
    CovarianceType,
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    component_variances,
    mixture_covariance,
    mixture_log_prob,
    mixture_marginal_cdf,
    mixture_mean,
    mixture_mode,
)

F64 = torch.float64

COVARIANCES = {
    "full": FullCovariance,
    "diag": DiagCovariance,
    "scalar": ScalarCovariance,
    "tied": SharedFullCovariance,
    "shared_scalar": SharedScalarCovariance,
    "unit": lambda: UnitCovariance(scale=0.7),
}
BATCHES = [(), (3,), (2, 3)]


def random_mixture(
    batch: tuple[int, ...], k: int, d: int, cov: CovarianceType, seed: int = 0,
    spread: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_weights [*R, K], means [*R, K, D], raw [*R, K or 1, P])`` in float64, with random
    SPD covariances projected onto ``cov`` by ``from_covariance``."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch, k, generator=gen, dtype=F64)
    log_weights = torch.log_softmax(logits, -1)
    means = spread * torch.randn(*batch, k, d, generator=gen, dtype=F64)
    a = torch.randn(*batch, k, d, d, generator=gen, dtype=F64)
    dense = a @ a.transpose(-1, -2) / d + 0.3 * torch.eye(d, dtype=F64)
    raw = cov.from_covariance(dense, log_weights.exp())
    return log_weights, means, raw


def dense_covariances(raw: torch.Tensor, cov: CovarianceType, k: int, d: int) -> torch.Tensor:
    """The components' dense covariances ``[*R, K, D, D]`` (shared ones expanded over K)."""
    dense = cov.covariance(raw, d)
    return dense.expand(*dense.shape[:-3], k, d, d)


def oracle(log_weights, means, raw, cov) -> MixtureSameFamily:
    """The same mixture as a ``torch.distributions`` object."""
    k, d = means.shape[-2:]
    return MixtureSameFamily(
        Categorical(logits=log_weights),
        MultivariateNormal(means, covariance_matrix=dense_covariances(raw, cov, k, d)),
    )


# -- moments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", BATCHES)
def test_mixture_mean_matches_mixture_same_family(batch):
    cov = FullCovariance()
    log_weights, means, raw = random_mixture(batch, 4, 3, cov)
    got = mixture_mean(log_weights, means)
    assert got.shape == (*batch, 3)
    torch.testing.assert_close(got, oracle(log_weights, means, raw, cov).mean)


def test_mixture_mean_of_one_component_and_of_equal_weights():
    means = torch.tensor([[[1.0, -2.0]], [[3.0, 4.0]]], dtype=F64)  # [B=2, K=1, D=2]
    torch.testing.assert_close(mixture_mean(torch.zeros(2, 1, dtype=F64), means), means[:, 0])
    means = torch.tensor([[0.0, 0.0], [2.0, -4.0]], dtype=F64)
    equal = torch.full((2,), math.log(0.5), dtype=F64)
    torch.testing.assert_close(mixture_mean(equal, means),
                               torch.tensor([1.0, -2.0], dtype=F64))


@pytest.mark.parametrize("name", list(COVARIANCES))
@pytest.mark.parametrize("batch", BATCHES)
def test_component_variances_are_the_diagonals_of_the_covariances(name, batch):
    cov = COVARIANCES[name]()
    k, d = 4, 3
    _, _, raw = random_mixture(batch, k, d, cov, seed=1)
    got = component_variances(raw, cov, d)
    assert got.shape == (*batch, 1 if cov.shared else k, d)
    torch.testing.assert_close(got, cov.covariance(raw, d).diagonal(dim1=-2, dim2=-1))


def test_component_variances_follow_the_projection_of_each_type():
    """Diag keeps the diagonal of the given covariance, scalar its mean, the shared scalar the
    weight-pooled mean; the full type keeps it all."""
    dense = torch.tensor([[[4.0, 1.0], [1.0, 1.0]], [[9.0, -2.0], [-2.0, 25.0]]], dtype=F64)
    weights = torch.tensor([0.25, 0.75], dtype=F64)
    diag = dense.diagonal(dim1=-2, dim2=-1)
    expected = {
        FullCovariance(): diag,
        DiagCovariance(): diag,
        ScalarCovariance(): diag.mean(-1, keepdim=True).expand(2, 2),
        SharedScalarCovariance(): (weights * diag.mean(-1)).sum().expand(1, 2),
    }
    for cov, want in expected.items():
        got = component_variances(cov.from_covariance(dense, weights), cov, 2)
        torch.testing.assert_close(got, want, msg=repr(cov))


def test_component_variances_of_the_unit_covariance():
    cov = UnitCovariance(scale=2.0)
    raw = cov.from_covariance(torch.eye(3, dtype=F64).expand(5, 4, 3, 3))  # [B, K, 0]
    assert raw.shape == (5, 4, 0)
    torch.testing.assert_close(component_variances(raw, cov, 3),
                               torch.full((5, 4, 3), 4.0, dtype=F64))


@pytest.mark.parametrize("name", list(COVARIANCES))
@pytest.mark.parametrize("batch", BATCHES)
def test_mixture_covariance_is_the_law_of_total_variance(name, batch):
    """``Σ_k π_k (Σ_k + μ_k μ_kᵀ) − m mᵀ`` in its uncentred form, and its diagonal is
    ``MixtureSameFamily.variance``."""
    cov = COVARIANCES[name]()
    k, d = 4, 3
    log_weights, means, raw = random_mixture(batch, k, d, cov, seed=2)
    got = mixture_covariance(log_weights, means, raw, cov)
    assert got.shape == (*batch, d, d)
    w = log_weights.exp()[..., None, None]
    outer = means.unsqueeze(-1) * means.unsqueeze(-2)
    m = mixture_mean(log_weights, means)
    expected = (w * (dense_covariances(raw, cov, k, d) + outer)).sum(-3)
    expected = expected - m.unsqueeze(-1) * m.unsqueeze(-2)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.diagonal(dim1=-2, dim2=-1),
                               oracle(log_weights, means, raw, cov).variance)
    torch.testing.assert_close(got, got.transpose(-1, -2))
    assert bool((torch.linalg.eigvalsh(got) > 0).all())


@pytest.mark.parametrize("name", ["full", "diag", "tied"])
def test_mixture_covariance_matches_monte_carlo(name):
    """Sample covariance of 200k seeded draws of each of two batched mixtures."""
    cov = COVARIANCES[name]()
    log_weights, means, raw = random_mixture((2,), 3, 2, cov, seed=3)
    torch.manual_seed(0)
    draws = oracle(log_weights, means, raw, cov).sample((200_000,))  # [S, B, D]
    centred = draws - draws.mean(0)
    empirical = torch.einsum("sbi,sbj->bij", centred, centred) / (draws.shape[0] - 1)
    got = mixture_covariance(log_weights, means, raw, cov)
    scale = got.diagonal(dim1=-2, dim2=-1).amax(-1)[:, None, None]
    torch.testing.assert_close(got / scale, empirical / scale, atol=0.02, rtol=0)


def test_mixture_covariance_does_not_cancel_far_from_the_origin():
    """Centred form: a mixture 1e8 from the origin keeps its O(1) covariance in float64,
    where ``E[yyᵀ] − m mᵀ`` would lose all digits."""
    cov = DiagCovariance()
    log_weights, means, raw = random_mixture((), 3, 2, cov, seed=4)
    near = mixture_covariance(log_weights, means, raw, cov)
    far = mixture_covariance(log_weights, means + 1e8, raw, cov)
    torch.testing.assert_close(far, near, rtol=1e-6, atol=1e-6)


# -- marginal CDF ----------------------------------------------------------------------------
def marginal_cdf_oracle(y, log_weights, means, raw, cov) -> torch.Tensor:
    """Per-feature CDF from a ``MixtureSameFamily`` of 1-D ``Normal``s (std from the dense
    covariance's diagonal): ``y [*E, *R, D]`` → ``[*E, *R, D]``."""
    k, d = means.shape[-2:]
    std = dense_covariances(raw, cov, k, d).diagonal(dim1=-2, dim2=-1).sqrt()  # [*R, K, D]
    out = []
    for j in range(d):
        marginal = MixtureSameFamily(Categorical(logits=log_weights),
                                     Normal(means[..., j], std[..., j]))
        out.append(marginal.cdf(y[..., j]))
    return torch.stack(out, -1)


@pytest.mark.parametrize("name", list(COVARIANCES))
@pytest.mark.parametrize("batch", BATCHES)
def test_marginal_cdf_matches_normal_mixtures(name, batch):
    cov = COVARIANCES[name]()
    k, d = 3, 2
    log_weights, means, raw = random_mixture(batch, k, d, cov, seed=5)
    gen = torch.Generator().manual_seed(6)
    y = 3.0 * torch.randn(*batch, d, generator=gen, dtype=F64)
    got = mixture_marginal_cdf(y, log_weights, means, raw, cov)
    assert got.shape == (*batch, d)
    torch.testing.assert_close(got, marginal_cdf_oracle(y, log_weights, means, raw, cov))


def test_marginal_cdf_with_extra_leading_dimensions():
    """``y [S, B, D]`` against mixtures ``[B, K, D]``, as for the PIT of many samples."""
    cov = FullCovariance()
    log_weights, means, raw = random_mixture((4,), 3, 2, cov, seed=7)
    gen = torch.Generator().manual_seed(8)
    y = 3.0 * torch.randn(5, 4, 2, generator=gen, dtype=F64)
    got = mixture_marginal_cdf(y, log_weights, means, raw, cov)
    assert got.shape == (5, 4, 2)
    torch.testing.assert_close(got, marginal_cdf_oracle(y, log_weights, means, raw, cov))
    for s in range(5):  # the same as one call per sample
        torch.testing.assert_close(got[s], mixture_marginal_cdf(y[s], log_weights, means, raw,
                                                                cov))


def test_marginal_cdf_limits_and_monotonicity():
    cov = ScalarCovariance()
    log_weights, means, raw = random_mixture((2,), 3, 2, cov, seed=9)
    grid = torch.linspace(-60.0, 60.0, 2001, dtype=F64)[:, None, None].expand(-1, 2, 2)
    cdf = mixture_marginal_cdf(grid, log_weights, means, raw, cov)  # [G, B, D]
    assert bool((cdf[1:] >= cdf[:-1]).all())
    torch.testing.assert_close(cdf[0], torch.zeros(2, 2, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(cdf[-1], torch.ones(2, 2, dtype=F64), atol=1e-12, rtol=0)


def test_marginal_cdf_of_a_correlated_mixture_matches_the_empirical_cdf():
    """The marginals of full covariances use ``diag Σ_k``: compare with the empirical CDF of
    seeded draws, so that the diagonal of ``L Lᵀ`` (not of ``L``) is what counts."""
    cov = FullCovariance()
    dense = torch.tensor([[[1.0, 0.9], [0.9, 1.0]], [[2.0, -1.2], [-1.2, 1.0]]], dtype=F64)
    log_weights = torch.tensor([0.3, 0.7], dtype=F64).log()
    means = torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=F64)
    raw = cov.from_covariance(dense)
    torch.manual_seed(0)
    draws = oracle(log_weights, means, raw, cov).sample((100_000,))  # [S, D]
    points = torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 0.5], [2.5, 1.5]], dtype=F64)
    got = mixture_marginal_cdf(points, log_weights, means, raw, cov)
    empirical = (draws[:, None, :] <= points[None]).double().mean(0)
    torch.testing.assert_close(got, empirical, atol=6e-3, rtol=0)


# -- mode ------------------------------------------------------------------------------------
def grid_mode_1d(log_weights, means, raw, cov, lo=-10.0, hi=10.0, n=200_001):
    grid = torch.linspace(lo, hi, n, dtype=F64)[:, None]
    logp = mixture_log_prob(grid, log_weights, means, raw, cov)
    return grid[logp.argmax()], (hi - lo) / (n - 1)


def test_mode_of_a_bimodal_1d_mixture_matches_grid_search():
    """Unequal modes: the taller one wins, and it is not exactly at its component mean."""
    cov = ScalarCovariance()
    log_weights = torch.tensor([0.55, 0.45], dtype=F64).log()
    means = torch.tensor([[-1.5], [1.5]], dtype=F64)
    raw = cov.from_covariance(torch.tensor([[[1.0]], [[0.36]]], dtype=F64))
    want, step = grid_mode_1d(log_weights, means, raw, cov)
    got = mixture_mode(log_weights, means, raw, cov)
    assert got.shape == (1,)
    assert float(want) > 1.0  # the narrow component is the taller peak
    assert abs(float(got - want)) <= step
    assert abs(float(got - means[1])) > 10 * step  # pulled off its mean by the other component


@pytest.mark.parametrize("name", ["scalar", "diag", "full", "shared_scalar", "tied"])
def test_mode_of_a_unimodal_mixture_between_two_means(name):
    """Two close components: the only mode lies between the means, at no component mean."""
    cov = COVARIANCES[name]()
    log_weights = torch.tensor([0.5, 0.5], dtype=F64).log()
    means = torch.tensor([[-0.6], [0.4]], dtype=F64)
    raw = cov.from_covariance(torch.tensor([[[1.0]], [[1.2]]], dtype=F64),
                              log_weights.exp())
    want, step = grid_mode_1d(log_weights, means, raw, cov)
    got = mixture_mode(log_weights, means, raw, cov)
    assert abs(float(got - want)) <= 2 * step
    assert float(means.min()) + 0.1 < float(got) < float(means.max()) - 0.1


def test_mode_of_a_2d_full_covariance_mixture_matches_grid_search():
    cov = FullCovariance()
    log_weights = torch.tensor([0.5, 0.3, 0.2], dtype=F64).log()
    means = torch.tensor([[0.0, 0.0], [1.0, 0.8], [-2.5, 2.0]], dtype=F64)
    dense = torch.tensor([[[1.0, 0.6], [0.6, 0.8]], [[0.5, -0.2], [-0.2, 0.4]],
                          [[0.2, 0.0], [0.0, 0.2]]], dtype=F64)
    raw = cov.from_covariance(dense)
    axis = torch.linspace(-4.0, 4.0, 801, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    logp = mixture_log_prob(grid, log_weights, means, raw, cov)
    want = grid[logp.argmax()]
    got = mixture_mode(log_weights, means, raw, cov)
    assert got.shape == (2,)
    step = float(axis[1] - axis[0])
    assert float((got - want).abs().max()) <= step
    # and it is a stationary point of the density, at least as high as the grid's best
    assert float(mixture_log_prob(got, log_weights, means, raw, cov)) >= float(logp.max())
    y = got.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture_log_prob(y, log_weights, means, raw, cov), y)
    assert float(grad.abs().max()) < 1e-6


@pytest.mark.parametrize("name", list(COVARIANCES))
def test_mode_of_batched_mixtures_matches_per_mixture_grid_search(name):
    """A batch ``[B=2, 3]`` of 1-D mixtures: each mode equals its own grid search."""
    cov = COVARIANCES[name]()
    log_weights, means, raw = random_mixture((2, 3), 3, 1, cov, seed=10, spread=1.5)
    got = mixture_mode(log_weights, means, raw, cov)
    assert got.shape == (2, 3, 1)
    for i in range(2):
        for j in range(3):
            r = raw[i, j]
            want, step = grid_mode_1d(log_weights[i, j], means[i, j], r, cov, n=40_001)
            got_ij = mixture_mode(log_weights[i, j], means[i, j], r, cov)
            torch.testing.assert_close(got[i, j], got_ij)
            assert abs(float(got_ij - want)) <= step, (i, j, float(got_ij), float(want))


def test_mode_with_zero_steps_is_the_best_component_mean():
    cov = DiagCovariance()
    log_weights, means, raw = random_mixture((4,), 3, 2, cov, seed=11)
    got = mixture_mode(log_weights, means, raw, cov, num_steps=0)
    density = mixture_log_prob(means.movedim(-2, 0), log_weights, means, raw, cov)  # [K, B]
    best = density.argmax(0)
    torch.testing.assert_close(got, means[torch.arange(4), best])
    # more steps never lower the density
    refined = mixture_mode(log_weights, means, raw, cov)
    assert bool((mixture_log_prob(refined, log_weights, means, raw, cov)
                 >= mixture_log_prob(got, log_weights, means, raw, cov) - 1e-12).all())


def test_a_component_of_zero_weight_is_ignored():
    """``log π_k = −inf`` (a pruned component, far from the others): every summary equals that
    of the mixture without it."""
    cov = FullCovariance()
    log_weights, means, raw = random_mixture((2,), 2, 2, cov, seed=14)
    pruned = torch.cat([log_weights, torch.full((2, 1), -math.inf, dtype=F64)], -1)
    far = torch.cat([means, torch.full((2, 1, 2), 50.0, dtype=F64)], -2)
    raw_far = torch.cat([raw, raw[:, :1]], -2)
    torch.testing.assert_close(mixture_mean(pruned, far), mixture_mean(log_weights, means))
    torch.testing.assert_close(mixture_covariance(pruned, far, raw_far, cov),
                               mixture_covariance(log_weights, means, raw, cov))
    torch.testing.assert_close(mixture_mode(pruned, far, raw_far, cov),
                               mixture_mode(log_weights, means, raw, cov))
    y = torch.zeros(2, 2, dtype=F64)
    torch.testing.assert_close(mixture_marginal_cdf(y, pruned, far, raw_far, cov),
                               mixture_marginal_cdf(y, log_weights, means, raw, cov))


def test_mode_of_one_component_is_its_mean():
    cov = FullCovariance()
    log_weights, means, raw = random_mixture((3,), 1, 2, cov, seed=12)
    for steps in (0, 5):
        torch.testing.assert_close(mixture_mode(log_weights, means, raw, cov, num_steps=steps),
                                   means[:, 0])


def test_mode_in_float32():
    cov = FullCovariance()
    log_weights, means, raw = random_mixture((4,), 3, 2, cov, seed=13)
    want = mixture_mode(log_weights, means, raw, cov)
    got = mixture_mode(log_weights.float(), means.float(), raw.float(), cov)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=0)
