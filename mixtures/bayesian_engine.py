"""The model under :class:`mixtures.BayesianGaussianMixture`: the DPMM with a choice of weights'
factor (the stick-breaking process, or a finite symmetric Dirichlet: posterior ``α₀ + N_k``,
``E[log π_k] = ψ(α_k) − ψ(Σα)``), scikit-learn's lower bound (:meth:`Engine.lower_bound`), the
CAVI M-step with ``reg_covar`` (:meth:`Engine.m_step`), and, on request (``compat``),
scikit-learn's conventions where ours deliberately differ: its K-th Beta stick and the Wishart
``E[log|Λ|]`` for every covariance type. Conventions and formulas: the docstring of
:mod:`mixtures.bayesian_mixture`. It subclasses :class:`DPMM` over its public surface only (and
its ``sticks`` / ``kl`` / ``weights`` / ``_coefficients`` hooks), so it lives outside
``models/`` while that is being rewritten.

Letters: N points, K components, D features, Q moment features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import mixtures.distributions as dist
from mixtures.distributions.conjugate import NormalWishart, ScalarNormalGamma
from mixtures.models.dpmm import DPMM

__all__ = ["Engine"]


class Engine(DPMM):
    """The DPMM with a choice of weights' factor and scikit-learn's conventions on request.

    Args:
        *args, **kwargs: those of :class:`DPMM`.
        finite: a finite symmetric Dirichlet instead of the stick-breaking process.
        compat: scikit-learn's K-th stick and Wishart ``E[log|Λ|]`` for every type (testing).
    """

    def __init__(self, *args, finite: bool = False, compat: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.finite, self.compat = bool(finite), bool(compat)

    def concentration(self) -> tuple[Tensor, Tensor] | Tensor:
        """Dirichlet ``α`` ``[K]`` or sticks ``(a, b)`` ``[K]`` (the K-th: ours ``b = 0``)."""
        counts = self.counts.detach().double().clamp_min(0)
        if self.finite:
            return self.alpha + counts
        a, b = dist.stick_posterior(torch.cat([counts, counts.new_zeros(1)]), self.alpha)
        return a, b if self.compat else torch.cat([b[:-1], b.new_zeros(1)])

    def sticks(self) -> tuple[Tensor, Tensor]:
        a, b = self.concentration()
        return (a, b) if self.compat else (a[:-1], b[:-1])

    def log_weights(self) -> Tensor:
        """``E[log π]`` ``[K]`` (float64)."""
        if self.finite:
            alpha = self.concentration()
            return torch.digamma(alpha) - torch.digamma(alpha.sum())
        return dist.expected_log_weights(*self.sticks())[: self.num_components]

    @property
    def weights(self) -> Tensor:
        if self.finite:
            w = self.concentration()
        else:
            w = dist.expected_weights(*self.sticks())[: self.num_components]
        return (w / w.sum()).to(self.counts.dtype)

    def kl(self) -> Tensor:
        q, p = self.posterior(), self.prior()
        if self.finite:
            alpha, k = self.concentration(), self.num_components
            a0 = torch.tensor(self.alpha, dtype=alpha.dtype, device=alpha.device)
            kl_w = (torch.lgamma(alpha.sum()) - torch.lgamma(alpha).sum() - torch.lgamma(k * a0)
                    + k * torch.lgamma(a0) + ((alpha - a0) * self.log_weights()).sum())
        else:
            kl_w = dist.kl_sticks(*self.sticks(), self.alpha).sum()
        return kl_w + self.prior_family.kl(q, p).sum()

    def _wishart_shift(self, q: dist.NormalPrecision) -> Tensor:
        """scikit-learn's ``E[log|Λ|]`` minus ours ``[K]`` (zero for full)."""
        d = self.num_features
        return (NormalWishart._multi_digamma(q.nu / 2, d) + d * math.log(2.0)
                - d * q.nu.log() - self.prior_family.log_det_gap(q, d))

    def _coefficients(self) -> tuple[Tensor, Tensor, Tensor]:
        q = self.posterior()
        quad, lin, const = self.prior_family.expected_coefficients(q)
        const = const + self.log_weights()
        if self.compat:
            const = const + 0.5 * self._wishart_shift(q)
        dt = self.counts.dtype
        return quad.to(dt), lin.to(dt), const.to(dt)

    def _log_normalisers(self, q: dist.NormalPrecision) -> Tensor:
        """``Σ log Z'`` of the weights' and components' factors ``q`` (float64 scalar)."""
        d = self.num_features
        if self.finite:
            alpha = self.concentration()
            weights = torch.lgamma(alpha).sum() - torch.lgamma(alpha.sum())
        else:
            a, b = self.sticks()
            weights = (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)).sum()
        dense = self.prior_family.expected_covariance(q) * q.nu[:, None, None]  # Ψ [K, D, D]
        log_det = 2 * torch.linalg.cholesky(dense).diagonal(dim1=-2, dim2=-1).log().sum(-1)
        half = q.nu / 2
        if self.compat or isinstance(self.prior_family, NormalWishart):
            g = torch.mvlgamma(half, d) - d * (d - 1) / 4 * math.log(math.pi)
        elif isinstance(self.prior_family, ScalarNormalGamma):
            g = torch.lgamma(d * half) - d * half * math.log(d)
        else:  # per-feature Gamma
            g = d * torch.lgamma(half)
        comps = -half * log_det + half * d * math.log(2.0) + g - 0.5 * d * q.beta.log()
        return weights + comps.sum()

    @torch.no_grad()
    def lower_bound(self, resp: Tensor) -> float:
        """scikit-learn's lower bound of responsibilities ``[N, K]`` and the current posterior."""
        entropy = -torch.special.xlogy(resp.double(), resp.double()).sum()
        return float(entropy + self._log_normalisers(self.posterior()))

    @torch.no_grad()
    def prior_bound(self) -> float:
        """``L₀``: :meth:`lower_bound`'s normalisers at the prior (no statistics)."""
        saved = self.counts.data.clone()
        self.counts.data.zero_()
        try:
            return float(self._log_normalisers(self.prior()))
        finally:
            self.counts.data.copy_(saved)

    @torch.no_grad()
    def m_step(self, x: Tensor, resp: Tensor, reg_covar: float, priors: bool = False) -> None:
        """Posterior from responsibilities ``[N, K]`` (``priors``: re-derive data priors)."""
        if priors:
            self.initialize(x, resp=resp)
        else:
            for p, s in zip((self.counts, self.sum_x, self.sum_f), self.statistics(x, resp),
                            strict=True):
                p.data.copy_(s.to(p.dtype))
        eye = torch.eye(self.num_features, dtype=torch.float64, device=x.device)
        ridge = self.cov.moment_features(eye).sum(0)  # F-coordinates of the identity [Q]
        self.sum_f.data += (reg_covar * self.counts.detach().double()[:, None] * ridge).to(
            self.sum_f.dtype)
