"""Reparameterised draws of the Normal–precision distributions (black-box VI) against oracles.

Oracles: closed-form moments (E[Λ] = ν Ψ⁻¹, E[log |Λ|], E[μ], Cov[μ] = E[(βΛ)⁻¹]), densities of
``torch.distributions`` (Wishart, Gamma, MultivariateNormal), the analytic KL, and the
closed-form gradient of E[log |Λ|] (checks the implicit reparameterisation through the Gamma /
χ² parts). Seeded; Monte-Carlo comparisons allow ``Z`` standard errors (see
``test_conjugate.py``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Gamma, MultivariateNormal, Wishart

from mixtures.distributions import FullCovariance, PrecisionDraw, expfam_log_prob
from tests.distributions.test_conjugate import F64, KINDS, SIGMA, D, Z, make_problem

S = 40_000


def _dense_precision(kind: str, draw: PrecisionDraw) -> torch.Tensor:
    """``[S, K, D, D]`` from the type's precision form."""
    prec = draw.precision
    if kind == "full":
        return prec
    return torch.diag_embed(prec.expand(*prec.shape[:-1], D))


def _within(mc: torch.Tensor, exact: torch.Tensor, se: torch.Tensor, what: str) -> None:
    err = (mc - exact).abs() / (se + 1e-12 * (1 + exact.abs()))  # exact for fixed parts
    assert bool((err < Z).all()), f"{what}: {err.max():.1f} standard errors off"


@pytest.mark.parametrize("kind", KINDS)
def test_draw_moments_match_closed_forms(kind):
    family, _, q, *_ = make_problem(kind)
    torch.manual_seed(3)
    draw = family.rsample(q, S)
    k = q.mean.shape[0]
    prec = _dense_precision(kind, draw)  # [S, K, D, D]
    # E[Λ] = ν Ψ⁻¹ (the inverse of the expected covariance)
    expected_cov = family.expected_covariance(q)  # Ψ / ν
    e_prec = torch.linalg.inv(expected_cov)  # the oracle may invert
    _within(prec.mean(0), e_prec, prec.std(0) / math.sqrt(S), "E[Λ]")
    # E[log |Λ|] = log |E Λ| + gap
    e_logdet = torch.logdet(e_prec) + family.log_det_gap(q, D)
    _within(draw.log_det.mean(0), e_logdet, draw.log_det.std(0) / math.sqrt(S), "E[log|Λ|]")
    assert torch.allclose(draw.log_det, torch.logdet(prec), atol=1e-9)
    # μ: mean m, covariance E[(β Λ)⁻¹]
    _within(draw.mean.mean(0), q.mean, draw.mean.std(0) / math.sqrt(S), "E[μ]")
    centred = draw.mean - q.mean
    emp_cov = torch.einsum("ski,skj->kij", centred, centred) / S
    if kind == "unit":
        exact = SIGMA**2 / q.beta[:, None, None] * torch.eye(D, dtype=F64).expand(k, D, D)
    elif kind == "full":  # E[Λ⁻¹] = Ψ / (ν − D − 1)
        exact = q.scatter / ((q.nu - D - 1) * q.beta)[:, None, None]
    else:  # E[1/λ] = rate / (shape − 1)
        c = 1.0 if kind == "diag" else D
        var = (c * q.scatter / 2) / (c * q.nu[:, None] / 2 - 1) / q.beta[:, None]
        exact = torch.diag_embed(var.expand(k, D))
    se = (centred.unsqueeze(-1) * centred.unsqueeze(-2)).std(0) / math.sqrt(S)
    _within(emp_cov, exact, se, "Cov[μ]")


@pytest.mark.parametrize("kind", KINDS)
def test_log_density_matches_torch_distributions(kind):
    family, p, q, *_ = make_problem(kind)
    torch.manual_seed(4)
    draw = family.rsample(q, 7)
    prec = _dense_precision(kind, draw)
    for dist in (p, q):  # evaluate both at q's draws (the Monte-Carlo KL does)
        ours = family.log_density(dist, draw)  # [7, K]
        theirs = MultivariateNormal(dist.mean, precision_matrix=dist.beta[:, None, None] * prec
                                    ).log_prob(draw.mean)
        if kind == "full":
            theirs = theirs + Wishart(dist.nu, precision_matrix=dist.scatter).log_prob(prec)
        elif kind == "diag":
            theirs = theirs + Gamma(dist.nu[:, None] / 2, dist.scatter / 2).log_prob(
                draw.precision).sum(-1)
        elif kind == "scalar":
            theirs = theirs + Gamma(D * dist.nu / 2, D * dist.scatter[:, 0] / 2).log_prob(
                draw.precision[..., 0])
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-9), kind


@pytest.mark.parametrize("kind", KINDS)
def test_monte_carlo_kl_matches_analytic_kl(kind):
    family, p, q, *_ = make_problem(kind)
    torch.manual_seed(5)
    draw = family.rsample(q, S)
    log_ratio = family.log_density(q, draw) - family.log_density(p, draw)  # [S, K]
    _within(log_ratio.mean(0), family.kl(q, p), log_ratio.std(0) / math.sqrt(S), "KL")


@pytest.mark.parametrize("kind", KINDS)
def test_draw_coefficients_give_the_gaussian_log_density(kind):
    family, _, q, x, *_ = make_problem(kind)
    torch.manual_seed(6)
    draw = family.rsample(q, 3)
    ours = expfam_log_prob(family.cov.moment_features(x), x, *family.draw_coefficients(draw))
    theirs = MultivariateNormal(draw.mean, precision_matrix=_dense_precision(kind, draw)
                                ).log_prob(x[:, None, None, :])  # [N, 3, K]
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["scalar", "diag", "full"])
def test_reparameterised_gradient_of_expected_log_det(kind):
    """d/dθ of the Monte-Carlo E[log |Λ|] equals the gradient of its closed form, for ν and Ψ:
    the gradients flow through the Gamma / χ² draws (implicit reparameterisation)."""
    family, _, q, *_ = make_problem(kind)
    nu = q.nu.clone().requires_grad_(True)
    scatter = q.scatter.clone().requires_grad_(True)
    q_grad = type(q)(beta=q.beta, mean=q.mean, nu=nu, scatter=scatter)
    closed = (torch.logdet(torch.linalg.inv(family.expected_covariance(q_grad)))
              + family.log_det_gap(q_grad, D)).sum()
    g_nu, g_psi = torch.autograd.grad(closed, (nu, scatter))
    torch.manual_seed(7)
    mc = family.rsample(q_grad, S).log_det.mean(0).sum()
    m_nu, m_psi = torch.autograd.grad(mc, (nu, scatter))
    assert torch.allclose(m_nu, g_nu, rtol=0.02, atol=1e-3), (m_nu, g_nu)
    assert torch.allclose(m_psi, g_psi, rtol=1e-8, atol=1e-10)  # exact: log |Ψ| is not random


def test_full_draws_need_no_inverse_of_lambda():
    """Bartlett draws are symmetric positive definite, in float32 too."""
    family, _, q, *_ = make_problem("full")
    q32 = type(q)(q.beta.float(), q.mean.float(), q.nu.float(), q.scatter.float())
    torch.manual_seed(8)
    draw = family.rsample(q32, 1000)
    assert draw.precision.dtype == torch.float32
    assert torch.allclose(draw.precision, draw.precision.transpose(-1, -2))
    assert bool((torch.linalg.eigvalsh(draw.precision.double()) > 0).all())
    assert isinstance(family.cov, FullCovariance)
