"""Conjugate Normal–precision priors of the covariance types (variational Bayes algebra).

A component's mean ``μ`` and precision ``Λ`` have the conjugate prior

    Λ ~ p(Λ | ν₀, Ψ₀),        μ | Λ ~ N(m₀, (β₀ Λ)⁻¹)

and, given responsibilities ``r_n``, the (variational) posterior is in the same family with
natural parameters ``η = η₀ + Σ_n r_n T(x_n)``, ``T(x) = (1, x, F(x))``: the prior's
pseudo-statistics plus the responsibility-weighted sums that EM already computes
(``Σ r``, ``Σ r x``, ``Σ r F(x)`` with the covariance type's moment features ``F``). Every
function here takes points and statistics **centred on the prior mean** (``x − m₀``), so that
``m₀ = 0`` and the update reads

    β = β₀ + n,   m = Σ r x / β,   ν = ν₀ + n,   Ψ = Ψ₀ + Σ r x xᵀ − β m mᵀ   (projected).

The precision factor of each type, parametrised (as scikit-learn's ``BayesianGaussianMixture``)
so that ``E[Λ] = ν Ψ⁻¹`` and ``E[Λ]⁻¹ = Ψ / ν`` is the reported covariance:

==========  ===============================================  ======================
type        precision                                          ``Ψ`` per component
==========  ===============================================  ======================
``unit``    fixed ``Λ = I / σ²``; only μ is random             ``[0]``
``scalar``  ``Λ = λ I``, ``λ ~ Gamma(Dν/2, Dψ/2)``             ``[1]``
``diag``    ``Λ = diag(λ_d)``, ``λ_d ~ Gamma(ν/2, ψ_d/2)``     ``[D]``
``full``    ``Λ ~ Wishart(Ψ⁻¹, ν)`` (Σ ~ inverse-Wishart)      ``[D, D]`` (Cholesky)
==========  ===============================================  ======================

The scalar type is the proper isotropic Normal–Gamma (shape grows by D/2 per point), and the
Gamma types use their own ``E[log λ]``; scikit-learn reuses the Wishart formula for both, so its
responsibilities differ slightly for ``diag`` / ``spherical`` (its point estimates do not).

:func:`conjugate_prior` maps a covariance type to its family through a type-keyed registry
(:func:`register_conjugate` on each family, as ``torch.distributions.kl.register_kl``); a new
covariance type registers its prior here without the covariance module importing this one.
One module rather than four: the families are short and read against the generic algebra of
:class:`ConjugatePrior`.

Letters: N points, K components, D features, Q moment features; ``*S`` is a type's Ψ shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mixtures.distributions.covariance import (
    CovarianceType,
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    UnitCovariance,
)
from mixtures.distributions.gaussian import expfam_log_prob

__all__ = [
    "ConjugatePrior",
    "NormalPrecision",
    "PrecisionDraw",
    "UnitNormalPrior",
    "ScalarNormalGamma",
    "DiagNormalGamma",
    "NormalWishart",
    "conjugate_prior",
    "kl_gamma",
    "register_conjugate",
]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class NormalPrecision:
    """Parameters of a Normal–precision distribution (prior or posterior), per component.

    Attributes:
        beta: mean precision scale β ``[..., K]``.
        mean: location ``m`` relative to the prior mean ``[..., K, D]``.
        nu: degrees of freedom ν ``[..., K]`` (unused by ``unit``).
        scatter: Ψ ``[..., K, *S]``.
    """

    beta: Tensor
    mean: Tensor
    nu: Tensor
    scatter: Tensor


@dataclass
class PrecisionDraw:
    """Draws ``(μ, Λ)`` from a Normal–precision distribution (reparameterised).

    Attributes:
        mean: ``μ`` ``[S, ..., K, D]`` (relative to the prior mean).
        precision: ``Λ`` in the covariance type's form (see
            :meth:`CovarianceType.precision_coefficients`): ``[S, ..., K, 1]`` for unit and
            scalar, ``[S, ..., K, D]`` for diag, dense ``[S, ..., K, D, D]`` for full.
        log_det: ``log |Λ|`` ``[S, ..., K]``.
    """

    mean: Tensor
    precision: Tensor
    log_det: Tensor


def scatter_cholesky(scatter: Tensor) -> Tensor:
    """The Cholesky factor of Wishart scale matrices ``Ψ [..., D, D]``, with a clear error.

    ``Ψ = Ψ₀ + Σ r x xᵀ − β m mᵀ`` is positive definite in exact arithmetic; it stops being so
    numerically when Ψ₀ is (nearly) singular and the statistics are float32 — the default
    Ψ₀, the data covariance, is singular when there are no more points than features.
    """
    try:
        return torch.linalg.cholesky(scatter)
    except torch.linalg.LinAlgError as err:
        raise FloatingPointError(
            f"a Wishart scale matrix ({scatter.shape[-1]} × {scatter.shape[-1]}) is not "
            "positive definite in floating point — typical with fewer points than features, "
            "where the default covariance_prior (the data covariance) is singular. Train in "
            "float64 (trainer.precision=64), set model.net.covariance_prior to a positive "
            "number, or use a diagonal covariance (covariance=diag)."
        ) from err


def _gamma(shape: Tensor, rate: Tensor) -> torch.distributions.Gamma:
    """``Gamma(shape, rate)`` without argument validation (a hot path; callers' are valid)."""
    return torch.distributions.Gamma(shape, rate, validate_args=False)


def kl_gamma(a: Tensor, b: Tensor, a0: Tensor, b0: Tensor) -> Tensor:
    """``KL(Gamma(a, b) ‖ Gamma(a0, b0))`` (shape a, rate b), elementwise."""
    return ((a - a0) * torch.digamma(a) - torch.lgamma(a) + torch.lgamma(a0)
            + a0 * (b.log() - b0.log()) + a * (b0 - b) / b)


class ConjugatePrior(ABC):
    """Conjugate Normal–precision algebra for one covariance type.

    Args:
        covariance: the covariance type (its moment features, coefficient layout and floor are
            used, so expected log-densities take the same matrix-product path as EM).
    """

    def __init__(self, covariance: CovarianceType) -> None:
        self.cov = covariance

    # -- per-type pieces ------------------------------------------------------------------------
    def min_degrees_of_freedom(self, num_features: int) -> float:
        """The bound that ν (prior and posterior) must exceed: 0 for the Gamma families (and
        the unit type, which has no ν); the Wishart's is D − 1."""
        return 0.0

    @abstractmethod
    def scatter_shape(self, num_features: int) -> tuple[int, ...]:
        """``*S``, the shape of one component's Ψ."""

    @abstractmethod
    def scatter_from_covariance(self, cov: Tensor) -> Tensor:
        """Ψ of this type from a dense matrix ``[..., D, D]`` (diagonal, mean variance, …)."""

    @abstractmethod
    def _data_scatter(self, beta: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        """Projected ``Σ r x xᵀ − (Σ r x)(Σ r x)ᵀ / β`` ``[..., K, *S]``."""

    @abstractmethod
    def expected_covariance_raw(self, q: NormalPrecision) -> Tensor:
        """Raw covariance (of ``self.cov``) of ``E[Λ]⁻¹ = Ψ / ν`` ``[..., K, P]``."""

    @abstractmethod
    def log_det_gap(self, q: NormalPrecision, num_features: int) -> Tensor:
        """``E[log |Λ|] − log |E[Λ]|`` ``[..., K]`` (≤ 0, Jensen)."""

    @abstractmethod
    def kl_precision(self, q: NormalPrecision, p: NormalPrecision) -> Tensor:
        """``KL(q(Λ) ‖ p(Λ))`` ``[..., K]``."""

    @abstractmethod
    def predictive_terms(self, q: NormalPrecision, num_features: int
                         ) -> tuple[Tensor, Tensor, Tensor]:
        """Student-t form of the posterior predictive: raw covariance of its scale matrix
        ``[..., K, P]``, degrees of freedom ``[..., K]`` (``inf``: Gaussian), and whether the
        t factorises over dimensions (bool)."""

    # -- generic algebra --------------------------------------------------------------------------
    def prior(self, num_components: int, num_features: int, mean_precision: float,
              degrees_of_freedom: float, scatter: Tensor) -> NormalPrecision:
        """The prior ``(β₀, 0, ν₀, Ψ₀)`` repeated for K components (Ψ₀ ``[*S]``)."""
        k, d = num_components, num_features
        full = dict(dtype=scatter.dtype, device=scatter.device)
        return NormalPrecision(
            beta=torch.full((k,), float(mean_precision), **full),
            mean=torch.zeros(k, d, **full),
            nu=torch.full((k,), float(degrees_of_freedom), **full),
            scatter=scatter.expand(k, *scatter.shape),
        )

    def posterior(self, p: NormalPrecision, counts: Tensor, sum_x: Tensor,
                  sum_f: Tensor) -> NormalPrecision:
        """Conjugate update from responsibility-weighted sums of centred points.

        Args:
            p: the prior (mean 0 in these coordinates).
            counts: ``Σ r`` ``[..., K]``; sum_x: ``Σ r x`` ``[..., K, D]``;
                sum_f: ``Σ r F(x)`` ``[..., K, Q]``.
        """
        beta = p.beta + counts
        return NormalPrecision(
            beta=beta,
            mean=sum_x / beta[..., None],
            nu=p.nu + counts,
            scatter=p.scatter + self._data_scatter(beta, sum_x, sum_f),
        )

    def expected_coefficients(self, q: NormalPrecision) -> tuple[Tensor, Tensor, Tensor]:
        """``E_q[log N(x | μ, Λ⁻¹)] = F(x)·A + x·b + c`` for centred x: ``(A [..., K, Q],
        b [..., K, D], c [..., K])`` — the plug-in coefficients at ``E[Λ]`` corrected by
        ``½ (E log|Λ| − log|E Λ|) − D / (2β)``."""
        d = q.mean.shape[-1]
        quad, lin, const = self.cov.coefficients(self.expected_covariance_raw(q), q.mean)
        return quad, lin, const + 0.5 * self.log_det_gap(q, d) - 0.5 * d / q.beta

    def kl(self, q: NormalPrecision, p: NormalPrecision) -> Tensor:
        """``KL(q(μ, Λ) ‖ p(μ, Λ))`` per component ``[..., K]``."""
        d = q.mean.shape[-1]
        ratio = p.beta / q.beta
        maha = self.cov.mahalanobis(self.expected_covariance_raw(q), q.mean - p.mean)
        kl_mean = 0.5 * (d * (ratio - 1.0 - ratio.log()) + p.beta * maha)
        return kl_mean + self.kl_precision(q, p)

    def data_bound(self, q: NormalPrecision, p: NormalPrecision, counts: Tensor,
                   sum_x: Tensor, sum_f: Tensor) -> Tensor:
        """A component's share of the ELBO from its statistics alone: ``E_q[Σ_n r_n log
        N(x_n | μ, Λ⁻¹)] − KL(q ‖ p)`` ``[..., K]``, linear in the statistics through the
        expected coefficients (so a merge or split of statistics is scored without the data).
        At ``q`` = the posterior of these statistics it is ``log Z(η₀ + s) − log Z(η₀) − n D/2
        log 2π``; zero for a component with no statistics (``q = p``)."""
        quad, lin, const = self.expected_coefficients(q)
        expected = ((quad * sum_f).sum(-1) + (lin * sum_x).sum(-1) + const * counts)
        return expected - self.kl(q, p)

    def predictive_log_prob(self, x: Tensor, q: NormalPrecision) -> Tensor:
        """Posterior-predictive log-density of centred points under every component (Student-t;
        Gaussian for ``unit``): ``[N, D]`` → ``[N, K]``."""
        d = x.shape[-1]
        raw, dof, per_dim = self.predictive_terms(q, d)
        if per_dim:  # independent univariate t's, one per dimension
            scale = self.cov.scale(raw)  # [K, D]
            z2 = ((x[:, None, :] - q.mean) / scale).square()  # [N, K, D]
            df = dof[..., None]
            log_t = (torch.lgamma((df + 1) / 2) - torch.lgamma(df / 2)
                     - 0.5 * (df * math.pi).log() - scale.log()
                     - (df + 1) / 2 * torch.log1p(z2 / df))
            return log_t.sum(-1)
        feats = self.cov.moment_features(x)
        gauss = expfam_log_prob(feats, x, *self.cov.coefficients(raw, q.mean))  # [N, K]
        if not bool(torch.isfinite(dof).any()):
            return gauss
        log_det = self.cov.log_det(raw, d)
        maha = (-2.0 * gauss - log_det - d * _LOG_2PI).clamp_min(0)
        return (torch.lgamma((dof + d) / 2) - torch.lgamma(dof / 2)
                - 0.5 * d * (dof * math.pi).log() - 0.5 * log_det
                - (dof + d) / 2 * torch.log1p(maha / dof))

    def sample_predictive(self, q: NormalPrecision, labels: Tensor,
                          generator: torch.Generator | None = None) -> Tensor:
        """Draw one centred point from component ``labels[s]``'s predictive: ``[S]`` → ``[S, D]``.
        """
        d = q.mean.shape[-1]
        raw, dof, per_dim = self.predictive_terms(q, d)
        mean, raw_s, dof_s = q.mean[labels], raw[labels], dof[labels]
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        if bool(torch.isfinite(dof_s).all()):
            width = mean.shape[:-1] + ((d,) if per_dim else (1,))
            df = dof_s[..., None].expand(width)
            chi2 = torch.distributions.Chi2(df).sample()  # (torch's global generator)
            eps = eps * (df / chi2).sqrt()
        return mean + self.cov.colour(raw_s[..., None, :], eps[..., None, :])[..., 0, :]

    def expected_covariance(self, q: NormalPrecision) -> Tensor:
        """Dense ``E[Λ]⁻¹ = Ψ / ν`` ``[..., K, D, D]`` (scikit-learn's ``covariances_``)."""
        return self.cov.covariance(self.expected_covariance_raw(q), q.mean.shape[-1])

    # -- draws (black-box / reparameterised variational inference) ------------------------------
    @abstractmethod
    def _rsample_precision(self, q: NormalPrecision, num_samples: int
                           ) -> tuple[Tensor, Tensor, Tensor]:
        """``Λ ~ q`` by reparameterisation: ``(precision, log |Λ|, noise)`` where ``noise``
        ``[S, ..., K, D]`` is a draw of ``N(0, Λ⁻¹)`` (the mean's noise before ``1/√β``)."""

    @abstractmethod
    def _quadratic_form(self, precision: Tensor, v: Tensor) -> Tensor:
        """``vᵀ Λ v``: ``[..., K, D]`` → ``[..., K]``."""

    @abstractmethod
    def _log_density_precision(self, p: NormalPrecision, precision: Tensor,
                               log_det: Tensor) -> Tensor:
        """``log p(Λ)`` ``[S, ..., K]`` of drawn precisions."""

    def rsample(self, q: NormalPrecision, num_samples: int) -> PrecisionDraw:
        """``S`` reparameterised draws ``Λ ~ q(Λ)``, ``μ | Λ ~ N(m, (β Λ)⁻¹)``; gradients flow
        to every parameter of ``q`` (implicit reparameterisation for the Gamma / χ² parts).
        Uses torch's global generator (seed with ``torch.manual_seed``)."""
        precision, log_det, noise = self._rsample_precision(q, num_samples)
        mean = q.mean + noise / q.beta.sqrt()[..., None]
        return PrecisionDraw(mean, precision, log_det)

    def log_density(self, p: NormalPrecision, draw: PrecisionDraw) -> Tensor:
        """``log p(μ, Λ)`` of draws under the Normal–precision distribution ``p``:
        ``[S, ..., K]``."""
        d = draw.mean.shape[-1]
        maha = self._quadratic_form(draw.precision, draw.mean - p.mean)
        log_normal = 0.5 * (d * (p.beta.log() - _LOG_2PI) + draw.log_det - p.beta * maha)
        return log_normal + self._log_density_precision(p, draw.precision, draw.log_det)

    def draw_coefficients(self, draw: PrecisionDraw) -> tuple[Tensor, Tensor, Tensor]:
        """Coefficients ``(A, b, c)`` of ``log N(x | μ, Λ⁻¹)`` for every draw and component,
        ``[S, ..., K, ·]``, for :func:`expfam_log_prob` (one matrix product scores all)."""
        return self.cov.precision_coefficients(draw.precision, draw.log_det, draw.mean)


# -- covariance type → conjugate prior (a type-keyed registry, as torch.distributions.kl) ------
_CONJUGATES: dict[type[CovarianceType], type[ConjugatePrior]] = {}


def register_conjugate(covariance_type: type[CovarianceType]
                       ) -> Callable[[type[ConjugatePrior]], type[ConjugatePrior]]:
    """Class decorator: the decorated prior family is the conjugate prior of
    ``covariance_type`` and of its subclasses (unless they register their own), e.g.
    ``@register_conjugate(DiagCovariance)`` on :class:`DiagNormalGamma`."""
    if not (isinstance(covariance_type, type) and issubclass(covariance_type, CovarianceType)):
        raise TypeError(f"register_conjugate expects a CovarianceType subclass, got "
                        f"{covariance_type!r}.")

    def decorator(family: type[ConjugatePrior]) -> type[ConjugatePrior]:
        _CONJUGATES[covariance_type] = family
        return family

    return decorator


def conjugate_prior(covariance: CovarianceType) -> ConjugatePrior:
    """The conjugate Normal–precision prior of ``covariance`` (variational Bayes, DPMM): the
    family registered for the nearest class in ``type(covariance)``'s MRO.

    Raises:
        ValueError: for a shared covariance (the priors are per component, so a precision
            shared by all components is not conjugate to them) or an unregistered type.
    """
    if not covariance.shared:
        for cls in type(covariance).__mro__:
            if cls in _CONJUGATES:
                return _CONJUGATES[cls](covariance)
    raise ValueError(
        f"covariance type {type(covariance).__name__} has no conjugate prior in mixtures; "
        "Bayesian mixtures support covariance=unit, scalar, diag or full."
    )


@register_conjugate(UnitCovariance)
class UnitNormalPrior(ConjugatePrior):
    """Fixed covariance ``σ² I``; prior ``μ ~ N(m₀, σ² / β₀ I)``."""

    cov: UnitCovariance

    def scatter_shape(self, num_features: int) -> tuple[int, ...]:
        return (0,)

    def scatter_from_covariance(self, cov: Tensor) -> Tensor:
        return cov.new_zeros(cov.shape[:-2] + (0,))

    def _data_scatter(self, beta: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        return sum_x.new_zeros(sum_x.shape[:-1] + (0,))

    def expected_covariance_raw(self, q: NormalPrecision) -> Tensor:
        return q.mean.new_zeros(q.mean.shape[:-1] + (0,))

    def log_det_gap(self, q: NormalPrecision, num_features: int) -> Tensor:
        return torch.zeros_like(q.beta)

    def kl_precision(self, q: NormalPrecision, p: NormalPrecision) -> Tensor:
        return torch.zeros_like(q.beta)

    def predictive_terms(self, q: NormalPrecision, num_features: int
                         ) -> tuple[Tensor, Tensor, Tensor]:
        # N(m, σ² (1 + 1/β) I), expressed through a scalar type with the same floor
        sigma = self.cov.fixed_scale * (1.0 + 1.0 / q.beta).sqrt()
        raw = ScalarCovariance(self.cov.min_scale)._unconstrain(sigma)[..., None]
        return raw, torch.full_like(q.beta, math.inf), False

    def predictive_log_prob(self, x: Tensor, q: NormalPrecision) -> Tensor:
        raw, _, _ = self.predictive_terms(q, x.shape[-1])
        scalar = ScalarCovariance(self.cov.min_scale)
        return expfam_log_prob(scalar.moment_features(x), x, *scalar.coefficients(raw, q.mean))

    def _rsample_precision(self, q: NormalPrecision, num_samples: int
                           ) -> tuple[Tensor, Tensor, Tensor]:
        d, sigma = q.mean.shape[-1], self.cov.fixed_scale
        shape = (num_samples, *q.mean.shape)
        noise = sigma * torch.randn(shape, dtype=q.mean.dtype, device=q.mean.device)
        precision = q.mean.new_full((*shape[:-1], 1), sigma**-2)
        return precision, q.mean.new_full(shape[:-1], -2.0 * d * math.log(sigma)), noise

    def _quadratic_form(self, precision: Tensor, v: Tensor) -> Tensor:
        return precision[..., 0] * v.square().sum(-1)

    def _log_density_precision(self, p: NormalPrecision, precision: Tensor,
                               log_det: Tensor) -> Tensor:
        return torch.zeros_like(log_det)

    def sample_predictive(self, q: NormalPrecision, labels: Tensor,
                          generator: torch.Generator | None = None) -> Tensor:
        sigma = self.cov.fixed_scale * (1.0 + 1.0 / q.beta[labels]).sqrt()
        mean = q.mean[labels]
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + sigma[..., None] * eps


class _GammaPrior(ConjugatePrior):
    """Gamma precisions with ``E[λ] = ν / ψ``: shape ``a = c ν / 2``, rate ``b = c ψ / 2`` with
    ``c = D`` for one isotropic precision and ``c = 1`` per dimension."""

    cov: ScalarCovariance | DiagCovariance
    per_feature: bool

    def _shape_rate(self, q: NormalPrecision) -> tuple[Tensor, Tensor]:
        c = 1.0 if self.per_feature else q.mean.shape[-1]
        return c * q.nu[..., None] / 2, c * q.scatter / 2  # [..., K, 1], [..., K, 1 or D]

    def expected_covariance_raw(self, q: NormalPrecision) -> Tensor:
        return self.cov._unconstrain((q.scatter / q.nu[..., None]).clamp_min(0).sqrt())

    def log_det_gap(self, q: NormalPrecision, num_features: int) -> Tensor:
        a, _ = self._shape_rate(q)
        return num_features * (torch.digamma(a) - a.log())[..., 0]

    def kl_precision(self, q: NormalPrecision, p: NormalPrecision) -> Tensor:
        a, b = self._shape_rate(q)
        a0, b0 = self._shape_rate(p)
        return kl_gamma(a, b, a0, b0).sum(-1)

    def _rsample_precision(self, q: NormalPrecision, num_samples: int
                           ) -> tuple[Tensor, Tensor, Tensor]:
        a, b = self._shape_rate(q)
        a = a.expand(b.shape)  # [..., K, 1 or D]
        lam = _gamma(a, b).rsample((num_samples,))  # [S, ..., K, 1 or D]
        d = q.mean.shape[-1]
        log_det = lam.log().sum(-1) * (1 if self.per_feature else d)
        eps = torch.randn((num_samples, *q.mean.shape), dtype=q.mean.dtype, device=q.mean.device)
        return lam, log_det, eps / lam.sqrt()

    def _quadratic_form(self, precision: Tensor, v: Tensor) -> Tensor:
        return (precision * v.square()).sum(-1)

    def _log_density_precision(self, p: NormalPrecision, precision: Tensor,
                               log_det: Tensor) -> Tensor:
        a, b = self._shape_rate(p)
        return _gamma(a, b).log_prob(precision).sum(-1)

    def predictive_terms(self, q: NormalPrecision, num_features: int
                         ) -> tuple[Tensor, Tensor, Tensor]:
        # Student-t with 2a degrees of freedom and squared scale (b / a)(1 + 1/β)
        a, _ = self._shape_rate(q)
        var = q.scatter / q.nu[..., None] * (1.0 + 1.0 / q.beta[..., None])
        return self.cov._unconstrain(var.sqrt()), 2 * a[..., 0], self.per_feature


@register_conjugate(ScalarCovariance)
class ScalarNormalGamma(_GammaPrior):
    """Isotropic precision ``λ I``, ``λ ~ Gamma(Dν/2, Dψ/2)`` (scikit-learn's "spherical")."""

    per_feature = False

    def scatter_shape(self, num_features: int) -> tuple[int, ...]:
        return (1,)

    def scatter_from_covariance(self, cov: Tensor) -> Tensor:
        return cov.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)

    def _data_scatter(self, beta: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        d = sum_x.shape[-1]
        return (sum_f - sum_x.square().sum(-1, keepdim=True) / beta[..., None]) / d


@register_conjugate(DiagCovariance)
class DiagNormalGamma(_GammaPrior):
    """Per-dimension precisions ``λ_d ~ Gamma(ν/2, ψ_d/2)``."""

    per_feature = True

    def scatter_shape(self, num_features: int) -> tuple[int, ...]:
        return (num_features,)

    def scatter_from_covariance(self, cov: Tensor) -> Tensor:
        return cov.diagonal(dim1=-2, dim2=-1)

    def _data_scatter(self, beta: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        return sum_f - sum_x.square() / beta[..., None]


@register_conjugate(FullCovariance)
class NormalWishart(ConjugatePrior):
    """``Λ ~ Wishart(Ψ⁻¹, ν)``; Ψ is only ever used through its Cholesky factor."""

    cov: FullCovariance

    def min_degrees_of_freedom(self, num_features: int) -> float:
        return float(num_features - 1)

    def scatter_shape(self, num_features: int) -> tuple[int, ...]:
        return (num_features, num_features)

    def scatter_from_covariance(self, cov: Tensor) -> Tensor:
        return cov

    def _data_scatter(self, beta: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        second = self.cov._unpack(sum_f, sum_x.shape[-1])
        outer = sum_x.unsqueeze(-1) * sum_x.unsqueeze(-2) / beta[..., None, None]
        return second - outer

    def expected_covariance_raw(self, q: NormalPrecision) -> Tensor:
        return self.cov.from_covariance(q.scatter / q.nu[..., None, None])

    @staticmethod
    def _multi_digamma(x: Tensor, d: int) -> Tensor:
        """``Σ_{i=1}^{D} ψ(x + (1 − i)/2)``."""
        offsets = -0.5 * torch.arange(d, dtype=x.dtype, device=x.device)
        return torch.digamma(x[..., None] + offsets).sum(-1)

    def log_det_gap(self, q: NormalPrecision, num_features: int) -> Tensor:
        d = num_features
        return (self._multi_digamma(q.nu / 2, d) + d * math.log(2.0) - d * q.nu.log())

    def _log_det_scatter(self, scatter: Tensor) -> Tensor:
        tril = scatter_cholesky(scatter)
        return 2.0 * tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def kl_precision(self, q: NormalPrecision, p: NormalPrecision) -> Tensor:
        d = q.mean.shape[-1]
        tril_q = scatter_cholesky(q.scatter)
        # tr(Ψ₀ Ψ⁻¹) = ‖L_q⁻¹ L₀‖²_F by one triangular solve
        tril_p = scatter_cholesky(p.scatter)
        trace = torch.linalg.solve_triangular(tril_q, tril_p, upper=False).square().sum((-2, -1))
        logdet_q = 2.0 * tril_q.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        logdet_p = 2.0 * tril_p.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return (0.5 * p.nu * (logdet_q - logdet_p) + 0.5 * q.nu * (trace - d)
                + torch.mvlgamma(p.nu / 2, d) - torch.mvlgamma(q.nu / 2, d)
                + 0.5 * (q.nu - p.nu) * self._multi_digamma(q.nu / 2, d))

    def _rsample_precision(self, q: NormalPrecision, num_samples: int
                           ) -> tuple[Tensor, Tensor, Tensor]:
        # Bartlett: Λ = U Uᵀ with U = L_Ψ⁻ᵀ A, A lower triangular with A_ii² ~ χ²(ν − i) and
        # standard-normal entries below (L_Ψ⁻ᵀ is a square root of the scale Ψ⁻¹; the Wishart
        # is invariant under rotations of the factor). Then Λ⁻¹ = L_Ψ A⁻ᵀ A⁻¹ L_Ψᵀ, so
        # L_Ψ A⁻ᵀ ε ~ N(0, Λ⁻¹): two triangular solves, no inverse, no Cholesky of Λ.
        d = q.mean.shape[-1]
        dt, dev = q.mean.dtype, q.mean.device
        shape = (num_samples, *q.mean.shape[:-1])  # [S, ..., K]
        dof = q.nu[..., None] - torch.arange(d, dtype=dt, device=dev)  # [..., K, D]
        chi2 = _gamma(dof / 2, torch.full_like(dof, 0.5)).rsample((num_samples,))  # [S,…,K,D]
        diag = chi2.sqrt()
        below = torch.randn((*shape, d, d), dtype=dt, device=dev).tril(-1)
        factor = below + torch.diag_embed(diag)  # A
        tril_psi = scatter_cholesky(q.scatter)  # [..., K, D, D]
        root = torch.linalg.solve_triangular(tril_psi.transpose(-1, -2).expand(*shape, d, d),
                                             factor, upper=True)  # U = L_Ψ⁻ᵀ A
        precision = root @ root.transpose(-1, -2)
        log_det = 2.0 * (diag.log().sum(-1) - tril_psi.diagonal(dim1=-2, dim2=-1).log().sum(-1))
        eps = torch.randn((*shape, d, 1), dtype=dt, device=dev)
        z = torch.linalg.solve_triangular(factor.transpose(-1, -2), eps, upper=True)  # A⁻ᵀ ε
        return precision, log_det, (tril_psi @ z)[..., 0]

    def _quadratic_form(self, precision: Tensor, v: Tensor) -> Tensor:
        return (v.unsqueeze(-2) @ precision @ v.unsqueeze(-1))[..., 0, 0]

    def _log_density_precision(self, p: NormalPrecision, precision: Tensor,
                               log_det: Tensor) -> Tensor:
        d = precision.shape[-1]
        trace = (p.scatter * precision).sum((-2, -1))  # tr(Ψ Λ), both symmetric
        return (0.5 * (p.nu - d - 1) * log_det - 0.5 * trace - 0.5 * p.nu * d * math.log(2.0)
                + 0.5 * p.nu * self._log_det_scatter(p.scatter) - torch.mvlgamma(p.nu / 2, d))

    def predictive_terms(self, q: NormalPrecision, num_features: int
                         ) -> tuple[Tensor, Tensor, Tensor]:
        # t_{ν−D+1}(m, Ψ (β + 1) / (β (ν − D + 1)))
        dof = q.nu - num_features + 1
        factor = (q.beta + 1) / (q.beta * dof)
        return self.cov.from_covariance(q.scatter * factor[..., None, None]), dof, False
