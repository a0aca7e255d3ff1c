"""Prior hyper-parameters of the Bayesian mixtures (DPMM, variational GMM): model configuration
with scikit-learn's names, validated once. The Normal–precision algebra they parametrise is in
:mod:`mixtures.distributions.conjugate`.

Letters: N points, K components, D features; ``*S`` is a covariance type's Ψ shape.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixtures.distributions import CovarianceType, NormalPrecision, conjugate_prior

__all__ = ["PriorSettings"]


class PriorSettings:
    """Prior hyper-parameters of a Bayesian Gaussian mixture, with scikit-learn's names and
    defaults (``BayesianGaussianMixture``), validated once; data-dependent defaults are resolved
    by :meth:`mean` and :meth:`scatter`. Shared by the DPMM and the variational GMM.

    Args:
        covariance: the covariance type (``unit``, ``scalar``, ``diag`` or ``full``).
        num_components: K; num_features: D.
        weight_concentration_prior: α of the weights' prior (None: 1 / K).
        mean_precision_prior: β₀ > 0.
        mean_prior: m₀ ``[D]`` (None: the data mean).
        degrees_of_freedom_prior: ν₀ (None: D; ν₀ > D − 1 for ``full``, > 0 otherwise).
        covariance_prior: Ψ₀ — a float (times the identity), a ``[D]`` diagonal or a ``[D, D]``
            matrix, projected onto the covariance type (None: the data covariance).
    """

    def __init__(self, covariance: CovarianceType, num_components: int, num_features: int,
                 weight_concentration_prior: float | None = None,
                 mean_precision_prior: float = 1.0,
                 mean_prior: Tensor | list[float] | None = None,
                 degrees_of_freedom_prior: float | None = None,
                 covariance_prior: float | Tensor | list | None = None) -> None:
        for name, value in (("num_components", num_components), ("num_features", num_features)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}.")
        k, d = num_components, num_features
        self.num_components, self.num_features = k, d
        self.cov = covariance
        self.family = conjugate_prior(covariance)  # raises for unsupported types
        alpha = 1.0 / k if weight_concentration_prior is None else weight_concentration_prior
        nu0 = float(d) if degrees_of_freedom_prior is None else degrees_of_freedom_prior
        self.min_nu = self.family.min_degrees_of_freedom(d)
        checks = (("weight_concentration_prior", alpha, alpha > 0, "e.g. 1 / num_components"),
                  ("mean_precision_prior", mean_precision_prior, mean_precision_prior > 0,
                   "e.g. 1.0"),
                  ("degrees_of_freedom_prior", nu0, nu0 > self.min_nu,
                   f"it must exceed {self.min_nu:g}; the default is num_features = {d}"))
        for name, value, ok, fix in checks:
            if not (ok and math.isfinite(value)):
                raise ValueError(f"model.net.{name}={value} is invalid: {fix}.")
        self.alpha, self.beta0, self.nu0 = float(alpha), float(mean_precision_prior), float(nu0)
        self.mean_prior = None if mean_prior is None else torch.as_tensor(mean_prior)
        self.covariance_prior = covariance_prior
        if self.mean_prior is not None and self.mean_prior.shape != (d,):
            raise ValueError(f"model.net.mean_prior must have {d} entries (num_features), got "
                             f"shape {list(self.mean_prior.shape)}.")
        if self.mean_prior is not None and not bool(torch.isfinite(self.mean_prior).all()):
            raise ValueError(f"model.net.mean_prior must be finite, got {mean_prior}.")

    def mean(self, x: Tensor) -> Tensor:
        """m₀ ``[D]`` (float64 on x's device): the given one or the data mean."""
        if self.mean_prior is None:
            return x.double().mean(0)
        return self.mean_prior.double().to(x.device)

    def scatter(self, x: Tensor) -> Tensor:
        """Ψ₀ ``[*S]`` (float64) of this type: the given one or the data covariance, floored."""
        if self.covariance_prior is None:
            if x.shape[0] < 2:
                raise ValueError("covariance_prior needs at least 2 points, or set it.")
            return self.scatter_from_data_covariance(torch.atleast_2d(torch.cov(x.double().T)))
        return self.scatter_from_data_covariance(None, x.device)

    def scatter_from_data_covariance(self, data_cov: Tensor | None,
                                     device: torch.device | None = None) -> Tensor:
        """Ψ₀ from the data's covariance ``[D, D]`` (float64; used when no covariance_prior is
        given) — the form that sums of moments reduced over batches or DDP ranks can feed."""
        d, spec = self.num_features, self.covariance_prior
        if spec is None:
            dense = data_cov
            device = data_cov.device
        else:
            value = torch.as_tensor(spec, dtype=torch.float64)
            if value.dim() == 0:
                dense = value * torch.eye(d, dtype=torch.float64)
            elif value.shape == (d,):
                dense = torch.diag(value)
            elif value.shape == (d, d):
                dense = value
            else:
                raise ValueError(f"model.net.covariance_prior must be a number, [{d}] or [{d}, {d}]"
                                 f"; got shape {list(value.shape)}.")
        scatter = self.family.scatter_from_covariance(dense.to(device))
        floor = self.cov.min_scale**2
        if scatter.dim() < 2:
            if spec is not None and not bool(((scatter > 0) & torch.isfinite(scatter)).all()):
                raise ValueError("model.net.covariance_prior must be positive and finite (its "
                                 f"variances); got {spec}.")
            return scatter.clamp_min(floor)
        if spec is None:  # a constant feature makes the data covariance singular: floor it
            scatter = scatter + floor * torch.eye(d, dtype=scatter.dtype, device=scatter.device)
        if not bool(torch.isfinite(scatter).all()) or torch.linalg.cholesky_ex(scatter)[1] > 0:
            raise ValueError("model.net.covariance_prior is not positive definite; give a "
                             "positive-definite matrix or a positive number.")
        return scatter

    def prior(self, scatter: Tensor) -> NormalPrecision:
        """The K components' prior ``(β₀, 0, ν₀, Ψ₀)`` in centred coordinates."""
        return self.family.prior(self.num_components, self.num_features, self.beta0, self.nu0,
                                 scatter)
