"""Conjugate Normal–precision priors against independent oracles.

Oracles: the textbook conjugate update written from raw points and responsibilities,
scikit-learn's ``BayesianGaussianMixture`` M-step, closed forms written here (Bishop §10.2,
Murphy 2007), Monte-Carlo averages over ``(μ, Λ)`` drawn with ``torch.distributions``, scipy's
multivariate t and torch's ``StudentT`` / ``kl_divergence``.

Every Monte-Carlo comparison is seeded (deterministic) and allowed ``Z`` standard errors: with
at most a few dozen compared entries per test, a correct implementation exceeds 5 SE with
probability ~1e-5, while every convention error these tests target (Ψ vs Ψ⁻¹, a missing
``D / (2β)``, shape D ν / 2 vs ν / 2, wrong t degrees of freedom, …) moves a value by tens to
hundreds of SE at the chosen sample sizes.

All points are centred on the prior mean (m₀ = 0). Letters: N points, K components,
D features, P test points, S Monte-Carlo samples.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.mixture import BayesianGaussianMixture
from torch import Tensor
from torch.distributions import (
    Gamma,
    MultivariateNormal,
    Normal,
    StudentT,
    Wishart,
    kl_divergence,
)

from mixtures.distributions import (
    DiagCovariance,
    DiagNormalGamma,
    FullCovariance,
    NormalPrecision,
    NormalWishart,
    ScalarCovariance,
    ScalarNormalGamma,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    UnitNormalPrior,
    conjugate_prior,
    expfam_log_prob,
    kl_gamma,
)

F64 = torch.float64
N, K, D = 60, 4, 3
BETA0, NU0 = 0.7, D + 1.5
SIGMA = 1.7  # fixed scale of the unit type (≠ 1, so that a missing σ shows)
S = 100_000  # Monte-Carlo samples per component
S_FULL = 50_000  # … for the Wishart
SEEDS = {"unit": 10, "scalar": 11, "diag": 12, "full": 13}
Z = 5.0  # allowed standard errors (see the module docstring)
KINDS = ["unit", "scalar", "diag", "full"]
LOG_2PI = math.log(2.0 * math.pi)


# -- problem -------------------------------------------------------------------------------------
def make_cov(kind: str):
    return {"unit": lambda: UnitCovariance(scale=SIGMA), "scalar": ScalarCovariance,
            "diag": DiagCovariance, "full": FullCovariance}[kind]()


def make_data(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Centred points x ``[N, D]`` (correlated, anisotropic), responsibilities ``[N, K]`` (the
    last component nearly empty: a prior-dominated posterior) and a dense SPD Ψ₀ ``[D, D]``."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 0.5]], dtype=F64)
    x = torch.randn(N, D, generator=g, dtype=F64) @ mix.T * 1.3 + torch.tensor([0.5, -1.0, 0.2],
                                                                               dtype=F64)
    resp = (2.0 * torch.randn(N, K, generator=g, dtype=F64)).softmax(-1)
    resp[:, -1] *= 0.005
    resp = resp / resp.sum(-1, keepdim=True)
    a = torch.randn(D, D, generator=g, dtype=F64)
    psi0 = a @ a.T + 0.5 * torch.eye(D, dtype=F64)
    return x, resp, psi0


def make_problem(kind: str, seed: int = 0):
    """``(family, prior p, posterior q, x, resp, dense Ψ₀)``."""
    x, resp, psi0 = make_data(seed)
    family = conjugate_prior(make_cov(kind))
    p = family.prior(K, D, BETA0, NU0, family.scatter_from_covariance(psi0))
    counts, sum_x = resp.sum(0), resp.T @ x
    sum_f = resp.T @ family.cov.moment_features(x)
    q = family.posterior(p, counts, sum_x, sum_f)
    return family, p, q, x, resp, psi0


def eval_points(q: NormalPrecision, seed: int = 1) -> Tensor:
    """P = 6 test points: near two posterior means and in between / further out."""
    g = torch.Generator().manual_seed(seed)
    base = torch.stack([q.mean[0], q.mean[1], q.mean[-1], 0.5 * (q.mean[0] + q.mean[2]),
                        torch.zeros(D, dtype=F64), q.mean[2] + 1.5])
    return base + 0.5 * torch.randn(base.shape, generator=g, dtype=F64)


# -- oracles -------------------------------------------------------------------------------------
def textbook_posterior(x: Tensor, resp: Tensor, psi0: Tensor):
    """Bishop (10.60–10.63) with m₀ = 0, two-pass: ``(β, m, ν, dense Ψ)``."""
    n = resp.sum(0)  # [K]
    xbar = resp.T @ x / n[:, None]  # [K, D]
    beta = BETA0 + n
    mean = n[:, None] * xbar / beta[:, None]
    nu = NU0 + n
    psi = torch.empty(K, D, D, dtype=F64)
    for k in range(K):
        diff = x - xbar[k]
        scatter = (resp[:, k, None] * diff).T @ diff
        psi[k] = psi0 + scatter + BETA0 * n[k] / beta[k] * torch.outer(xbar[k], xbar[k])
    return beta, mean, nu, psi


def project(kind: str, dense: Tensor) -> Tensor:
    """A dense ``[..., D, D]`` Ψ in the type's layout."""
    if kind == "full":
        return dense
    if kind == "diag":
        return dense.diagonal(dim1=-2, dim2=-1)
    if kind == "scalar":
        return dense.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)
    return dense.new_zeros(dense.shape[:-2] + (0,))


def gamma_params(kind: str, q: NormalPrecision) -> tuple[Tensor, Tensor]:
    """Shape/rate from the module docstring: scalar ``(Dν/2, Dψ/2)`` ``[K]``; diag
    ``(ν/2, ψ_d/2)`` ``[K, D]``."""
    if kind == "scalar":
        return D * q.nu / 2, D * q.scatter[:, 0] / 2
    return (q.nu / 2)[:, None].expand(K, D), q.scatter / 2


def closed_form_expected_log_normal(kind: str, x: Tensor, q: NormalPrecision) -> Tensor:
    """``E_q[log N(x | μ, Λ⁻¹)]`` ``[P, K]`` written out per type."""
    diff = x[:, None, :] - q.mean  # [P, K, D]
    if kind == "unit":
        return (-0.5 * D * (LOG_2PI + 2 * math.log(SIGMA))
                - 0.5 * diff.square().sum(-1) / SIGMA**2 - 0.5 * D / q.beta)
    if kind == "scalar":
        a, b = gamma_params(kind, q)
        e_log_lam, e_lam = torch.digamma(a) - b.log(), a / b
        return (0.5 * D * e_log_lam - 0.5 * e_lam * diff.square().sum(-1) - 0.5 * D / q.beta
                - 0.5 * D * LOG_2PI)
    if kind == "diag":
        a, b = gamma_params(kind, q)
        e_log_lam, e_lam = torch.digamma(a) - b.log(), a / b  # [K, D]
        return (0.5 * e_log_lam.sum(-1) - 0.5 * (e_lam * diff.square()).sum(-1)
                - 0.5 * D / q.beta - 0.5 * D * LOG_2PI)
    i = torch.arange(1, D + 1, dtype=F64)
    e_log_det = (torch.digamma((q.nu[:, None] + 1 - i) / 2).sum(-1) + D * math.log(2.0)
                 - torch.logdet(q.scatter))
    psi_inv = torch.linalg.inv(q.scatter)
    maha = torch.einsum("pki,kij,pkj->pk", diff, psi_inv, diff)
    return 0.5 * e_log_det - 0.5 * q.nu * maha - 0.5 * D / q.beta - 0.5 * D * LOG_2PI


def sample_joint(kind: str, q: NormalPrecision, s: int):
    """``(μ [S, K, D], Λ)`` from q with torch.distributions; Λ is None (unit), λ ``[S, K]``
    (scalar), λ ``[S, K, D]`` (diag) or ``[S, K, D, D]`` (full). Uses the global seed."""
    if kind == "unit":
        mu = Normal(q.mean, SIGMA / q.beta.sqrt()[:, None]).sample((s,))
        return mu, None
    if kind in ("scalar", "diag"):
        lam = Gamma(*gamma_params(kind, q)).sample((s,))
        prec = q.beta[:, None] * (lam[..., None] if kind == "scalar" else lam)
        return Normal(q.mean, prec.rsqrt()).sample(), lam
    with warnings.catch_warnings():  # torch redraws the (rare) numerically singular samples
        warnings.filterwarnings("ignore", "Singular sample detected")
        lam = Wishart(df=q.nu, precision_matrix=q.scatter).sample((s,))  # scale Ψ⁻¹
    # μ | Λ ~ N(m, (βΛ)⁻¹) as m + L⁻ᵀ z / √β with Λ = L Lᵀ (MultivariateNormal would invert
    # 10⁵ precision matrices; test_normal_density_helper checks it on a few samples)
    tril = torch.linalg.cholesky(lam)
    z = torch.randn(s, K, D, 1, dtype=F64)
    noise = torch.linalg.solve_triangular(tril.mT, z, upper=True)[..., 0]
    return q.mean + noise / q.beta.sqrt()[:, None], lam


@functools.cache
def posterior_samples(kind: str):
    """One seeded draw of ``(q, μ, Λ)`` per type, shared by the Monte-Carlo tests (S_FULL for
    the Wishart, whose sampling and density cost ~10 µs per matrix)."""
    q = make_problem(kind)[2]
    torch.manual_seed(SEEDS[kind])
    return q, *sample_joint(kind, q, S_FULL if kind == "full" else S)


@functools.cache
def posterior_log_det(kind: str) -> Tensor | None:
    """``log |Λ_s|`` of the full type's cached draws (None for the others)."""
    return torch.linalg.slogdet(posterior_samples(kind)[2])[1] if kind == "full" else None


def num_samples(kind: str) -> int:
    return S_FULL if kind == "full" else S


def gauss_log_prob(kind: str, x: Tensor, mu: Tensor, lam, log_det: Tensor | None = None
                   ) -> Tensor:
    """``log N(x | μ_s, Λ_s⁻¹)`` for one point x ``[D]``: ``[S, K]`` (full: ``log |Λ_s|`` may
    be given)."""
    diff = x - mu
    if kind == "unit":
        log_det, quad = -2 * D * math.log(SIGMA), diff.square().sum(-1) / SIGMA**2
    elif kind == "scalar":
        log_det, quad = D * lam.log(), lam * diff.square().sum(-1)
    elif kind == "diag":
        log_det, quad = lam.log().sum(-1), (lam * diff.square()).sum(-1)
    else:
        log_det = torch.linalg.slogdet(lam)[1] if log_det is None else log_det
        quad = ((lam @ diff[..., None])[..., 0] * diff).sum(-1)
    return 0.5 * log_det - 0.5 * quad - 0.5 * D * LOG_2PI


def log_density(kind: str, d: NormalPrecision, mu: Tensor, lam, log_det: Tensor | None = None
                ) -> Tensor:
    """``log d(μ, Λ)`` ``[S, K]`` by torch.distributions densities."""
    if kind == "unit":
        return Normal(d.mean, SIGMA / d.beta.sqrt()[:, None]).log_prob(mu).sum(-1)
    if kind in ("scalar", "diag"):
        a, b = gamma_params(kind, d)
        log_lam = Gamma(a, b).log_prob(lam)
        prec = d.beta[:, None] * (lam[..., None] if kind == "scalar" else lam)
        log_mu = Normal(d.mean, prec.rsqrt()).log_prob(mu).sum(-1)
        return log_mu + (log_lam if kind == "scalar" else log_lam.sum(-1))
    log_lam = Wishart(df=d.nu, precision_matrix=d.scatter).log_prob(lam)
    # N(μ | m, (βΛ)⁻¹) written out (MultivariateNormal would invert every βΛ; it is checked
    # against this on a few samples in test_normal_density_helper)
    diff = mu - d.mean
    quad = ((lam @ diff[..., None])[..., 0] * diff).sum(-1)
    log_det = torch.linalg.slogdet(lam)[1] if log_det is None else log_det
    log_mu = 0.5 * (D * d.beta.log() + log_det - d.beta * quad - D * LOG_2PI)
    return log_lam + log_mu


def predictive_oracle(kind: str, x: Tensor, q: NormalPrecision) -> Tensor:
    """Textbook posterior predictive ``[P, K]``: Gaussian (unit), multivariate t (scalar: df Dν,
    shape ψ/ν (1 + 1/β) I; full: df ν − D + 1, shape Ψ (β + 1) / (β (ν − D + 1))) by scipy,
    product of univariate t's (diag) by torch."""
    if kind == "unit":
        var = SIGMA**2 * (1 + 1 / q.beta)
        eye = torch.eye(D, dtype=F64)
        return MultivariateNormal(q.mean, var[:, None, None] * eye).log_prob(x[:, None, :])
    if kind == "diag":
        scale = (q.scatter / q.nu[:, None] * (1 + 1 / q.beta[:, None])).sqrt()
        return StudentT(q.nu[:, None], q.mean, scale).log_prob(x[:, None, :]).sum(-1)
    out = np.empty((x.shape[0], K))
    for k in range(K):
        beta, nu = float(q.beta[k]), float(q.nu[k])
        if kind == "scalar":
            df = D * nu
            shape = float(q.scatter[k, 0]) / nu * (1 + 1 / beta) * np.eye(D)
        else:
            df = nu - D + 1
            shape = q.scatter[k].numpy() * (beta + 1) / (beta * df)
        out[:, k] = stats.multivariate_t(loc=q.mean[k].numpy(), shape=shape, df=df).logpdf(
            x.numpy())
    return torch.from_numpy(out)


def assert_mc_close(mc: Tensor, se: Tensor, value: Tensor, what: str) -> None:
    z = ((mc - value) / se).abs()
    assert bool((z < Z).all()), (
        f"{what}: Monte-Carlo disagrees by up to {float(z.max()):.1f} SE\nMC={mc}\ncode={value}")


def test_normal_density_helper():
    """The hand-written N(μ | m, (βΛ)⁻¹) and N(x | μ, Λ⁻¹) of the full type agree with
    MultivariateNormal on a few samples."""
    q, mu, lam = posterior_samples("full")
    mu, lam = mu[:50], lam[:50]
    p = make_problem("full")[1]
    ref = Wishart(df=p.nu, precision_matrix=p.scatter).log_prob(lam) + MultivariateNormal(
        p.mean, precision_matrix=p.beta[:, None, None] * lam).log_prob(mu)
    torch.testing.assert_close(log_density("full", p, mu, lam), ref, rtol=1e-10, atol=1e-10)
    x = eval_points(q)[0]
    ref = MultivariateNormal(mu, precision_matrix=lam).log_prob(x)
    torch.testing.assert_close(gauss_log_prob("full", x, mu, lam), ref, rtol=1e-10, atol=1e-10)


# -- construction --------------------------------------------------------------------------------
@pytest.mark.parametrize(("cov", "cls"), [
    (UnitCovariance(scale=2.0), UnitNormalPrior), (ScalarCovariance(), ScalarNormalGamma),
    (DiagCovariance(), DiagNormalGamma), (FullCovariance(), NormalWishart)],
    ids=["unit", "scalar", "diag", "full"])
def test_conjugate_prior_types(cov, cls):
    family = conjugate_prior(cov)
    assert type(family) is cls and family.cov is cov
    shape = {"unit": (0,), "scalar": (1,), "diag": (D,), "full": (D, D)}
    kind = {UnitNormalPrior: "unit", ScalarNormalGamma: "scalar", DiagNormalGamma: "diag",
            NormalWishart: "full"}[cls]
    assert family.scatter_shape(D) == shape[kind]
    _, _, psi0 = make_data()
    torch.testing.assert_close(family.scatter_from_covariance(psi0), project(kind, psi0))


@pytest.mark.parametrize("cov", [SharedScalarCovariance(), SharedFullCovariance()],
                         ids=["shared_scalar", "shared_full"])
def test_shared_types_have_no_conjugate_prior(cov):
    with pytest.raises(ValueError, match="no conjugate prior"):
        conjugate_prior(cov)


@pytest.mark.parametrize("kind", KINDS)
def test_prior_layout(kind):
    family, p, _, _, _, psi0 = make_problem(kind)
    assert p.beta.shape == (K,) and p.nu.shape == (K,) and p.mean.shape == (K, D)
    assert bool((p.mean == 0).all()) and bool((p.beta == BETA0).all())
    assert bool((p.nu == NU0).all())
    assert p.scatter.shape == (K, *family.scatter_shape(D))
    torch.testing.assert_close(p.scatter, project(kind, psi0).expand(K, *project(kind, psi0).shape))


# -- 1. posterior --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_posterior_matches_textbook_update(kind):
    """β = β₀ + n, m = Σ r x / β, ν = ν₀ + n, Ψ = Ψ₀ + Σ r (x − x̄)(x − x̄)ᵀ + β₀ n / β x̄ x̄ᵀ
    (projected: diagonal for diag, trace / D for scalar) from the raw points."""
    _, _, q, x, resp, psi0 = make_problem(kind)
    beta, mean, nu, psi = textbook_posterior(x, resp, psi0)
    torch.testing.assert_close(q.beta, beta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.mean, mean, rtol=1e-10, atol=1e-12)
    if kind != "unit":
        torch.testing.assert_close(q.nu, nu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.scatter, project(kind, psi), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["scalar", "diag", "full"])
def test_posterior_matches_sklearn_m_step(kind):
    """scikit-learn's M-step (reg_covar = 0, mean_prior = 0) gives the same means_,
    mean_precision_, degrees_of_freedom_ and covariances_ (= Ψ / ν = expected_covariance)."""
    family, _, q, x, resp, psi0 = make_problem(kind)
    sk_type = {"scalar": "spherical", "diag": "diag", "full": "full"}[kind]
    bgm = BayesianGaussianMixture(n_components=K, covariance_type=sk_type, reg_covar=0.0,
                                  weight_concentration_prior_type="dirichlet_process")
    bgm.mean_prior_ = np.zeros(D)
    bgm.mean_precision_prior_ = BETA0
    bgm.degrees_of_freedom_prior_ = NU0
    bgm.weight_concentration_prior_ = 1.0 / K
    bgm.covariance_prior_ = {"full": psi0.numpy(), "diag": psi0.diagonal().numpy(),
                             "spherical": float(psi0.diagonal().mean())}[sk_type]
    bgm._m_step(x.numpy(), np.log(resp.numpy()))
    # sklearn adds 10 eps to the counts: agreement to ~1e-13 relative
    tol = dict(rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(q.mean, torch.from_numpy(bgm.means_), **tol)
    torch.testing.assert_close(q.beta, torch.from_numpy(bgm.mean_precision_), **tol)
    torch.testing.assert_close(q.nu, torch.from_numpy(bgm.degrees_of_freedom_), **tol)
    dense = family.expected_covariance(q)  # [K, D, D]
    sk = torch.from_numpy(bgm.covariances_)
    ours = {"full": dense, "diag": dense.diagonal(dim1=-2, dim2=-1),
            "spherical": dense.diagonal(dim1=-2, dim2=-1).mean(-1)}[sk_type]
    torch.testing.assert_close(ours, sk, **tol)


def test_posterior_with_zero_counts_is_the_prior():
    for kind in KINDS:
        family, p, _, _, _, _ = make_problem(kind)
        zeros = torch.zeros(K, dtype=F64)
        q = family.posterior(p, zeros, torch.zeros(K, D, dtype=F64),
                             torch.zeros(K, family.cov.feature_size(D), dtype=F64))
        for name in ("beta", "mean", "nu", "scatter"):
            torch.testing.assert_close(getattr(q, name), getattr(p, name))


# -- 2. expected log-density ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_expected_coefficients_closed_form_and_monte_carlo(kind):
    """``F(x)·A + x·b + c`` equals E_q[log N(x | μ, Λ⁻¹)] written in closed form here, and a
    Monte-Carlo average over (μ, Λ) ~ q drawn with torch.distributions."""
    family, _, q, _, _, _ = make_problem(kind)
    x = eval_points(q)
    coeffs = family.expected_coefficients(q)
    got = expfam_log_prob(family.cov.moment_features(x), x, *coeffs)  # [P, K]
    torch.testing.assert_close(got, closed_form_expected_log_normal(kind, x, q),
                               rtol=1e-9, atol=1e-9)
    _, mu, lam = posterior_samples(kind)
    log_det = posterior_log_det(kind)
    samples = torch.stack([gauss_log_prob(kind, xi, mu, lam, log_det) for xi in x])  # [P, S, K]
    mc, se = samples.mean(1), samples.std(1) / math.sqrt(num_samples(kind))
    assert_mc_close(mc, se, got, f"{kind} E log N")


# -- 3. KL ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_kl_monte_carlo(kind):
    """``kl(q, p)`` per component equals E_q[log q(μ, Λ) − log p(μ, Λ)] by Monte-Carlo with
    torch.distributions densities (Normal / MultivariateNormal, Gamma, Wishart)."""
    family, p, q, _, _, _ = make_problem(kind)
    got = family.kl(q, p)
    assert got.shape == (K,)
    _, mu, lam = posterior_samples(kind)
    log_det = posterior_log_det(kind)
    ratio = log_density(kind, q, mu, lam, log_det) - log_density(kind, p, mu, lam, log_det)
    assert_mc_close(ratio.mean(0), ratio.std(0) / math.sqrt(num_samples(kind)), got,
                    f"{kind} KL")


@pytest.mark.parametrize("kind", KINDS)
def test_kl_exact_pieces(kind):
    """KL = E_q(Λ)[KL(N(m, (βΛ)⁻¹) ‖ N(0, (β₀Λ)⁻¹))] + KL(q(Λ) ‖ p(Λ)), with the Gamma part
    from torch's ``kl_divergence`` and the mean part in closed form (unit: torch's MVN KL)."""
    family, p, q, _, _, _ = make_problem(kind)
    got = family.kl(q, p)
    if kind == "unit":
        eye = torch.eye(D, dtype=F64)
        ref = kl_divergence(MultivariateNormal(q.mean, SIGMA**2 / q.beta[:, None, None] * eye),
                            MultivariateNormal(p.mean, SIGMA**2 / p.beta[:, None, None] * eye))
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        return
    ratio = p.beta / q.beta
    if kind == "full":
        e_lam = q.nu[:, None, None] * torch.linalg.inv(q.scatter)
    else:
        a, b = gamma_params(kind, q)
        e_lam = torch.diag_embed((a / b)[:, None].expand(K, D) if kind == "scalar" else a / b)
    maha = torch.einsum("ki,kij,kj->k", q.mean, e_lam, q.mean)
    kl_mean = 0.5 * (D * (ratio - 1 - ratio.log()) + p.beta * maha)
    if kind == "full":  # the Wishart KL (no torch oracle) is covered by test_kl_monte_carlo
        assert bool((got > kl_mean).all())
        return
    kl_prec = kl_divergence(Gamma(*gamma_params(kind, q)), Gamma(*gamma_params(kind, p)))
    kl_prec = kl_prec if kind == "scalar" else kl_prec.sum(-1)
    torch.testing.assert_close(got, kl_mean + kl_prec, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_kl_zero_at_prior_and_nonnegative(kind):
    family, p, q, _, _, _ = make_problem(kind)
    torch.testing.assert_close(family.kl(p, p), torch.zeros(K, dtype=F64), rtol=0, atol=1e-12)
    assert bool((family.kl(q, p) > 0).all())
    assert bool((family.kl(p, q) > 0).all())  # the reverse direction too
    for seed in range(1, 4):  # other data, other posteriors
        fam2, _, q2, _, _, _ = make_problem(kind, seed)
        assert bool((fam2.kl(q2, q) >= 0).all()) and bool((fam2.kl(q, q2) >= 0).all())


def test_kl_gamma_matches_torch():
    g = torch.Generator().manual_seed(3)
    a, b, a0, b0 = (0.05 + 5 * torch.rand(4, 7, generator=g, dtype=F64) for _ in range(4))
    ref = kl_divergence(Gamma(a, b), Gamma(a0, b0))
    torch.testing.assert_close(kl_gamma(a, b, a0, b0), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(kl_gamma(a, b, a, b), torch.zeros_like(a), rtol=0, atol=1e-12)


# -- 4. posterior predictive ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_predictive_log_prob_matches_textbook(kind):
    """Gaussian (unit), scipy's multivariate t (scalar, full), product of torch StudentT's
    (diag)."""
    family, _, q, _, _, _ = make_problem(kind)
    x = eval_points(q)
    got = family.predictive_log_prob(x, q)
    assert got.shape == (x.shape[0], K)
    torch.testing.assert_close(got, predictive_oracle(kind, x, q), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_predictive_log_prob_monte_carlo(kind):
    """log p(x | data) = log E_q[N(x | μ, Λ⁻¹)] by a log-mean-exp over posterior samples; the
    SE of the log of the mean is the delta-method ``std(w) / (mean(w) √S)``."""
    family, _, q, _, _, _ = make_problem(kind)
    x = eval_points(q)
    got = family.predictive_log_prob(x, q)
    _, mu, lam = posterior_samples(kind)
    s = num_samples(kind)
    log_det = posterior_log_det(kind)
    logs = torch.stack([gauss_log_prob(kind, xi, mu, lam, log_det) for xi in x])  # [P, S, K]
    mc = logs.logsumexp(1) - math.log(s)
    w = (logs - logs.amax(1, keepdim=True)).exp()
    se = w.std(1) / (w.mean(1) * math.sqrt(s))
    assert_mc_close(mc, se, got, f"{kind} predictive")


# -- 5. predictive sampling ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_sample_predictive_matches_predictive(kind):
    """Samples of each component: KS tests of 1-D marginals against the textbook predictive
    (a projection of a multivariate t is t; diag's coordinates are independent t's), mean and
    covariance within Z SE of the t's moments (where df > 8: finite eighth moments), and
    diag's coordinates independent (rank correlation of their magnitudes)."""
    family, _, q, _, _, _ = make_problem(kind)
    per = 20_000
    labels = torch.arange(K).repeat_interleave(per)
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(5)
    draws = family.sample_predictive(q, labels, generator=gen)
    assert draws.shape == (K * per, D) and draws.dtype == F64
    u = torch.tensor([0.48, -0.6, 0.64], dtype=F64)
    for k in range(K):
        xk = draws[labels == k]
        beta, nu, m = float(q.beta[k]), float(q.nu[k]), q.mean[k]
        if kind == "unit":
            shape, df = SIGMA**2 * (1 + 1 / beta) * torch.eye(D, dtype=F64), math.inf
        elif kind == "scalar":
            shape = float(q.scatter[k, 0]) / nu * (1 + 1 / beta) * torch.eye(D, dtype=F64)
            df = D * nu
        elif kind == "diag":
            shape, df = torch.diag(q.scatter[k] / nu * (1 + 1 / beta)), nu
        else:
            df = nu - D + 1
            shape = q.scatter[k] * (beta + 1) / (beta * df)
        dist = stats.norm if df == math.inf else stats.t(df)
        directions = torch.eye(D, dtype=F64) if kind == "diag" else torch.cat(
            [torch.eye(D, dtype=F64), u[None]])
        for v in directions:
            proj = (xk @ v).numpy()
            loc, scale = float(v @ m), math.sqrt(float(v @ shape @ v))
            pval = stats.kstest((proj - loc) / scale, dist.cdf)
            assert pval.pvalue > 1e-4, f"{kind} component {k} direction {v}: {pval}"
        cov = shape * (1.0 if df == math.inf else df / (df - 2))
        centred = xk - m
        assert_mc_close(centred.mean(0), cov.diagonal().sqrt() / math.sqrt(per),
                        torch.zeros(D, dtype=F64), f"{kind} sample mean, component {k}")
        if kind == "diag":  # independent coordinates (one χ² per dimension): the Spearman
            # correlation of |x_i − m_i| is ~N(0, 1 / (S − 1)); a shared χ² makes it positive
            size = centred.abs().numpy()
            for i in range(D):
                for j in range(i):
                    rho = stats.spearmanr(size[:, i], size[:, j]).statistic
                    assert abs(rho) < Z / math.sqrt(per - 1), (
                        f"diag predictive coordinates {i}, {j} of component {k} are dependent "
                        f"(Spearman {rho:.4f})")
        if df <= 8:  # the SE of a sample covariance needs finite eighth moments
            continue
        prods = centred[:, :, None] * centred[:, None, :]
        assert_mc_close(prods.mean(0), prods.std(0) / math.sqrt(per) + 1e-12, cov,
                        f"{kind} sample covariance, component {k}")


def test_sample_predictive_generator_is_reproducible():
    for kind in KINDS:
        family, _, q, _, _, _ = make_problem(kind)
        labels = torch.tensor([0, 3, 1, 1, 2])
        out = []
        for _ in range(2):
            torch.manual_seed(7)
            out.append(family.sample_predictive(q, labels, torch.Generator().manual_seed(8)))
        torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)


# -- 6. expected covariance and log-det gap ------------------------------------------------------
@pytest.mark.parametrize("kind", ["scalar", "diag", "full"])
def test_expected_covariance_and_mean_precision(kind):
    """``expected_covariance`` = Ψ / ν (dense) and its inverse is the Monte-Carlo mean of Λ."""
    family, _, q, _, _, _ = make_problem(kind)
    got = family.expected_covariance(q)
    assert got.shape == (K, D, D)
    if kind == "full":
        dense_psi = q.scatter
    else:
        psi = q.scatter.expand(K, D) if kind == "scalar" else q.scatter
        dense_psi = torch.diag_embed(psi)
    torch.testing.assert_close(got, dense_psi / q.nu[:, None, None], rtol=1e-10, atol=1e-12)
    _, _, lam = posterior_samples(kind)
    s = num_samples(kind)
    if kind != "full":
        lam = torch.diag_embed(lam[..., None].expand(s, K, D) if kind == "scalar" else lam)
    assert_mc_close(lam.mean(0), lam.std(0) / math.sqrt(s) + 1e-12, torch.linalg.inv(got),
                    f"{kind} E[Λ]")


def test_expected_covariance_unit():
    family, _, q, _, _, _ = make_problem("unit")
    eye = torch.eye(D, dtype=F64).expand(K, D, D)
    torch.testing.assert_close(family.expected_covariance(q), SIGMA**2 * eye)


@pytest.mark.parametrize("kind", KINDS)
def test_log_det_gap(kind):
    """``E log|Λ| − log|E Λ|`` in closed form, ≤ 0 (Jensen), 0 for the fixed unit precision."""
    family, p, q, _, _, _ = make_problem(kind)
    for d in (p, q):
        gap = family.log_det_gap(d, D)
        assert gap.shape == (K,)
        if kind == "unit":
            ref = torch.zeros(K, dtype=F64)
        elif kind == "scalar":
            ref = D * (torch.digamma(D * d.nu / 2) - (D * d.nu / 2).log())
        elif kind == "diag":
            ref = D * (torch.digamma(d.nu / 2) - (d.nu / 2).log())
        else:
            i = torch.arange(1, D + 1, dtype=F64)
            e_log_det = (torch.digamma((d.nu[:, None] + 1 - i) / 2).sum(-1)
                         + D * math.log(2.0) - torch.logdet(d.scatter))
            ref = e_log_det - torch.logdet(d.nu[:, None, None] * torch.linalg.inv(d.scatter))
        torch.testing.assert_close(gap, ref, rtol=1e-10, atol=1e-12)
        assert bool((gap <= 0).all())
        if kind != "unit":
            assert bool((gap < 0).all())
