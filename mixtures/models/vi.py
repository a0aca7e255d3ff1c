"""Bayesian Gaussian mixture trained by reparameterised ("black-box") variational inference.

The model is a finite Bayesian GMM with the conjugate priors of the DPMM
(:class:`~mixtures.models.priors.PriorSettings`, scikit-learn's names and defaults)::

    π ~ Dirichlet(α₀),   Λ_k ~ Gamma / Wishart(ν₀, Ψ₀),   μ_k | Λ_k ~ N(m₀, (β₀ Λ_k)⁻¹),
    x_n ~ Σ_k π_k N(μ_k, Λ_k⁻¹)

The variational posterior ``q(π) Π_k q(μ_k, Λ_k)`` is a Dirichlet times, per component, a
Normal–precision factor of the prior's family (Normal for the mean given the precision, Gamma
for scalar / diag precisions, Wishart for full ones), every parameter unconstrained:
``α = exp(raw)``, ``β = exp(raw)``, ``ν = ν_min + exp(raw)``, ``m`` free, and the expected
covariance ``E[Λ]⁻¹ = Ψ / ν`` in the shared covariance parametrisation (its floor included).
The ELBO keeps the assignment marginalised::

    ELBO = N · mean_{n ∈ B} E_q[log Σ_k π_k N(x_n | μ_k, Λ_k⁻¹)]  −  KL(q ‖ p)

estimated with S reparameterised draws (``rsample``) of all global parameters; the KL is
analytic (``analytic_kl=True``) or the Monte-Carlo ``E_q[log q − log p]`` on the same draws.
The logsumexp over components is the whole point: summing per-component log-likelihoods
instead drives every mean to the global mean (``experiments/gmm_vi``).

``forward(x)`` returns the negative ELBO per point (its mean over a batch estimates −ELBO / N),
so any torch optimizer trains it::

    model = VariationalGMM(5, D, FullCovariance())
    model.initialize(x)                                   # priors from x, k-means, N = len(x)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(500):
        opt.zero_grad()
        model(x).mean().backward()                        # or a mini-batch of x
        opt.step()

Everything is held relative to the prior mean m₀ (``shift``). Letters: N points, S draws,
K components, D features, Q moment features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Dirichlet, kl_divergence

from mixtures.distributions import (
    CovarianceType,
    FullCovariance,
    NormalPrecision,
    PrecisionDraw,
    expfam_log_prob,
)
from mixtures.models.base import MixtureDensity
from mixtures.models.init import check_init, initial_responsibilities
from mixtures.models.priors import PriorSettings

__all__ = ["VariationalGMM"]


def _dirichlet(concentration: Tensor) -> Dirichlet:
    """``Dirichlet(concentration)`` without argument validation (called every step)."""
    return Dirichlet(concentration, validate_args=False)


class VariationalGMM(MixtureDensity):
    """Finite Bayesian Gaussian mixture with a reparameterised variational posterior.

    Args:
        num_components: K ≥ 1.
        num_features: D ≥ 1.
        covariance: ``UnitCovariance``, ``ScalarCovariance``, ``DiagCovariance`` or
            ``FullCovariance`` (default full); its ``min_scale`` floors ``E[Λ]⁻¹``.
        weight_concentration_prior, mean_precision_prior, mean_prior, degrees_of_freedom_prior,
            covariance_prior: the priors (:class:`~mixtures.models.priors.PriorSettings`; α₀ is
            the symmetric Dirichlet's concentration, default 1 / K).
        num_samples: S, reparameterised draws per ELBO estimate.
        analytic_kl: closed-form KL (True) or its Monte-Carlo estimate on the same draws.
        init: initial responsibilities of :meth:`initialize` (:mod:`mixtures.models.init`).
        kmeans_iters: Lloyd iterations of the ``kmeans`` init.
        seed: seed of the initialisation.
        dataset_size: N, the number of training points (set by :meth:`initialize`).
    """

    def __init__(
        self,
        num_components: int,
        num_features: int,
        covariance: CovarianceType | None = None,
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float = 1.0,
        mean_prior: Tensor | list[float] | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: float | Tensor | list | None = None,
        num_samples: int = 8,
        analytic_kl: bool = True,
        init: str = "kmeans",
        kmeans_iters: int = 100,
        seed: int = 0,
        dataset_size: int | None = None,
    ) -> None:
        super().__init__()
        check_init(init, kmeans_iters, name="model.net.init")
        self.init, self.kmeans_iters, self.seed = init, kmeans_iters, seed
        self.cov = covariance if covariance is not None else FullCovariance()
        self.settings = PriorSettings(
            self.cov, num_components, num_features, weight_concentration_prior,
            mean_precision_prior, mean_prior, degrees_of_freedom_prior, covariance_prior)
        if not (isinstance(num_samples, int) and num_samples >= 1):
            raise ValueError(f"model.net.num_samples must be an integer ≥ 1, got {num_samples!r}.")
        k, d = num_components, num_features
        self.num_components, self.num_features = k, d
        self.family = self.settings.family
        self.num_samples, self.analytic_kl = num_samples, bool(analytic_kl)
        self.raw_concentration = nn.Parameter(torch.zeros(k))  # log α
        self.loc = nn.Parameter(torch.zeros(k, d))  # m − m₀
        self.raw_beta = nn.Parameter(torch.zeros(k))  # log β
        if self.cov.learnable:
            self.raw_nu = nn.Parameter(torch.zeros(k))  # log (ν − ν_min)
            self.raw_cov = nn.Parameter(torch.zeros(self.cov.raw_shape(k, d)))  # of Ψ / ν
        else:  # unit: the precision is fixed, nothing to learn
            self.register_parameter("raw_nu", None)
            self.register_buffer("raw_cov", torch.zeros(self.cov.raw_shape(k, d)))
        self.register_buffer("shift", torch.zeros(d))  # m₀
        self.register_buffer("prior_scatter", torch.zeros(self.family.scatter_shape(d)))
        self.register_buffer("dataset_size", torch.tensor(float(dataset_size or 0)))
        self.register_buffer("initialized", torch.tensor(False))

    # -- the variational posterior and the prior -------------------------------------------------
    @property
    def concentration(self) -> Tensor:
        """Dirichlet concentration of ``q(π)`` ``[K]``."""
        return self.raw_concentration.exp()

    @property
    def nu(self) -> Tensor:
        """Degrees of freedom ν ``[K]`` (unused by the unit type)."""
        if self.raw_nu is None:
            return torch.full_like(self.raw_beta, self.settings.nu0)
        return self.settings.min_nu + self.raw_nu.exp()

    def posterior(self) -> NormalPrecision:
        """``q(μ, Λ)`` of every component, centred on m₀ (differentiable)."""
        nu = self.nu
        cov = self.cov.covariance(self.raw_cov, self.num_features)  # E[Λ]⁻¹ = Ψ / ν
        scatter = self.family.scatter_from_covariance(cov)
        scatter = scatter * nu.reshape(-1, *([1] * (scatter.dim() - 1)))
        return NormalPrecision(beta=self.raw_beta.exp(), mean=self.loc, nu=nu, scatter=scatter)

    def prior(self) -> NormalPrecision:
        """``p(μ, Λ)`` repeated for K components, centred (model dtype)."""
        return self.settings.prior(self.prior_scatter.to(self.loc.dtype))

    def kl(self) -> Tensor:
        """Analytic ``KL(q ‖ p)`` of all global factors (scalar)."""
        alpha0 = torch.full_like(self.concentration, self.settings.alpha)
        kl_weights = kl_divergence(_dirichlet(self.concentration), _dirichlet(alpha0))
        return kl_weights + self.family.kl(self.posterior(), self.prior()).sum()

    # -- draws and the ELBO --------------------------------------------------------------------
    def rsample(self, num_samples: int) -> tuple[Tensor, PrecisionDraw]:
        """S reparameterised draws of the global parameters: ``log π`` ``[S, K]`` and the
        components' ``(μ, Λ)`` (centred on m₀)."""
        weights = _dirichlet(self.concentration).rsample((num_samples,))  # [S, K]
        log_weights = weights.clamp_min(torch.finfo(weights.dtype).tiny).log()
        return log_weights, self.family.rsample(self.posterior(), num_samples)

    def _check(self, x: Tensor) -> Tensor:
        x = self._check_points(x, self.loc.dtype)
        if not bool(self.initialized):
            raise RuntimeError("the model is not initialised; call model.initialize(x) first.")
        return x

    def draw_log_prob(self, x: Tensor, log_weights: Tensor, draw: PrecisionDraw) -> Tensor:
        """``log Σ_k π_sk N(x_n | μ_sk, Λ_sk⁻¹)`` for every point and draw: ``[N, S]`` (one
        matrix product over all draws and components, logsumexp over K)."""
        xc = self._check(x) - self.shift
        coef = self.family.draw_coefficients(draw)  # [S, K, ·]
        log_prob = expfam_log_prob(self.cov.moment_features(xc), xc, *coef)  # [N, S, K]
        return torch.logsumexp(log_prob + log_weights, -1)

    def log_ratio(self, log_weights: Tensor, draw: PrecisionDraw) -> Tensor:
        """``log q(θ_s) − log p(θ_s)`` of every draw ``[S]`` (its mean estimates the KL)."""
        weights = log_weights.exp()
        alpha0 = torch.full_like(self.concentration, self.settings.alpha)
        log_q = _dirichlet(self.concentration).log_prob(weights)  # [S]
        log_p = _dirichlet(alpha0).log_prob(weights)
        log_q = log_q + self.family.log_density(self.posterior(), draw).sum(-1)
        log_p = log_p + self.family.log_density(self.prior(), draw).sum(-1)
        return log_q - log_p

    def _kl_estimate(self, log_weights: Tensor, draw: PrecisionDraw) -> Tensor:
        return self.kl() if self.analytic_kl else self.log_ratio(log_weights, draw).mean()

    def forward(self, x: Tensor, num_samples: int | None = None) -> Tensor:
        """Negative ELBO per point ``[N]``: ``KL / N − E_q[log p(x_n | θ)]`` estimated with S
        draws. Its mean over a batch B is an unbiased estimate of −ELBO / N."""
        if not float(self.dataset_size) > 0:
            raise RuntimeError("model.dataset_size is unset; call model.initialize(x) or set "
                               "model.dataset_size to the number of training points.")
        log_weights, draw = self.rsample(num_samples or self.num_samples)
        expected = self.draw_log_prob(x, log_weights, draw).mean(-1)  # [N]
        kl = self._kl_estimate(log_weights, draw)
        return kl / self.dataset_size.to(expected.dtype) - expected

    def elbo_estimate(self, x: Tensor, num_samples: int | None = None) -> Tensor:
        """One estimate of the ELBO of ``x`` taken as the whole data set (scalar)."""
        n = x.shape[0]
        saved = self.dataset_size.clone()
        self.dataset_size.fill_(float(n))
        try:
            return -self.forward(x, num_samples).sum()
        finally:
            self.dataset_size.copy_(saved)

    def gradient_variance(self, x: Tensor, num_draws: int) -> Tensor:
        """Total variance ``Σ_j Var[g_j]`` of the stochastic gradient of the per-point loss
        ``mean(forward(x))`` over ``num_draws`` independent estimates (a diagnostic: a loop
        over draws, not over data)."""
        params = [p for p in self.parameters() if p.requires_grad]
        grads = []
        with torch.enable_grad():
            for _ in range(num_draws):
                g = torch.autograd.grad(self.forward(x).mean(), params)
                grads.append(torch.cat([gi.reshape(-1) for gi in g]))
        return torch.stack(grads).double().var(0).sum()

    # -- initialisation ---------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, x: Tensor, resp: Tensor | None = None, method: str | None = None,
                   seed: int | None = None, kmeans_iters: int | None = None) -> None:
        """Priors from the data, N, and ``q`` set to the conjugate posterior of initial
        responsibilities (the first coordinate-ascent step; ``method``: ``kmeans`` —
        k-means++ seeds and Lloyd —, ``k-means++``, ``random``, ``random_from_data``).

        Args:
            x: training points ``[N, D]``.
            resp: initial responsibilities ``[N, K]`` (default: from ``method``).
            method, seed, kmeans_iters: override the constructor's ``init``, ``seed`` and
                ``kmeans_iters``.
        """
        x = self._check_points(x, x.dtype)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the training points contain NaN or inf; remove them first.")
        if self.num_components > x.shape[0]:
            raise ValueError(f"num_components={self.num_components} exceeds the number of "
                             f"training points ({x.shape[0]}); use fewer components.")
        self.shift.copy_(self.settings.mean(x))
        self.prior_scatter.copy_(self.settings.scatter(x))
        self.dataset_size.fill_(float(x.shape[0]))
        self.initialized.fill_(True)
        if resp is None:
            resp = initial_responsibilities(
                x, self.num_components, 1, self.init if method is None else method,
                self.seed if seed is None else seed,
                self.kmeans_iters if kmeans_iters is None else kmeans_iters)[:, 0]
        xc = x.double() - self.shift.double()
        resp = resp.double()
        counts = resp.sum(0)
        feats = self.cov.moment_features(xc)
        q = self.family.posterior(self.settings.prior(self.prior_scatter.double()), counts,
                                  resp.T @ xc, resp.T @ feats)
        dt = self.loc.dtype
        self.raw_concentration.copy_((self.settings.alpha + counts).log().to(dt))
        self.loc.copy_(q.mean.to(dt))
        self.raw_beta.copy_(q.beta.log().to(dt))
        if self.raw_nu is not None:
            excess = (q.nu - self.settings.min_nu).clamp_min(1e-6)
            self.raw_nu.copy_(excess.log().to(dt))
            self.raw_cov.copy_(self.family.expected_covariance_raw(q).to(dt))

    # -- posterior summaries (scikit-learn names) ----------------------------------------------
    @property
    def weights(self) -> Tensor:
        """Posterior-mean weights ``E[π]`` ``[K]``."""
        return self.concentration / self.concentration.sum()

    @property
    def means(self) -> Tensor:
        """Posterior-mean means ``E[μ]`` ``[K, D]``."""
        return self.loc + self.shift

    @property
    def covariances(self) -> Tensor:
        """``E[Λ]⁻¹ = Ψ / ν`` ``[K, D, D]`` (as scikit-learn's ``covariances_``)."""
        return self.cov.covariance(self.raw_cov, self.num_features).expand(
            self.num_components, self.num_features, self.num_features)

    @torch.no_grad()
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log E[π_k] + log N(x | E[μ_k], E[Λ_k]⁻¹)`` (posterior-mean plug-in) ``[N, K]``."""
        xc = self._check(x) - self.shift
        precision, log_det = self._expected_precision()
        coef = self.cov.precision_coefficients(precision, log_det, self.loc)
        return expfam_log_prob(self.cov.moment_features(xc), xc, *coef) + self.weights.log()

    def _expected_precision(self) -> tuple[Tensor, Tensor]:
        """``E[Λ]`` in the type's precision form and its log-determinant."""
        return self.cov.precision_terms(self.raw_cov, self.num_features)

    @torch.no_grad()
    def score_samples(self, x: Tensor, num_samples: int | None = None) -> Tensor:
        """Log-density ``[N]``: of the posterior-mean mixture (``num_samples=None``), or the
        Monte-Carlo posterior predictive ``log (1/S) Σ_s p(x | θ_s)`` with S draws."""
        if num_samples is None:
            return super().score_samples(x)
        log_weights, draw = self.rsample(num_samples)
        per_draw = self.draw_log_prob(x, log_weights, draw)  # [N, S]
        return torch.logsumexp(per_draw, -1) - math.log(num_samples)

    def sampling_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """The posterior-mean mixture: ``log E[π]``, ``E[μ]`` and the raw ``E[Λ]⁻¹``."""
        if not bool(self.initialized):
            raise RuntimeError("the model is not initialised; call model.initialize(x) first.")
        return self.weights.log(), self.means, self.raw_cov

    def extra_repr(self) -> str:
        return (f"num_components={self.num_components}, num_features={self.num_features}, "
                f"covariance={self.cov!r}, num_samples={self.num_samples}, "
                f"analytic_kl={self.analytic_kl}")
