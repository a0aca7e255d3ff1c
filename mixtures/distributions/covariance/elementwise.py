"""Covariances ``diag(σ²)`` given by standard deviations: unit, scalar, shared scalar, diag.

Letters: N points, K components, D features, P raw numbers, Q moment features.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from mixtures.distributions.covariance.base import _LOG_2PI, CovarianceType

__all__ = ["UnitCovariance", "ScalarCovariance", "SharedScalarCovariance", "DiagCovariance"]


class _ElementwiseScale(CovarianceType):
    """Covariances ``diag(σ²)`` with σ given per component and feature (broadcastable)."""

    @abstractmethod
    def scale(self, raw: Tensor) -> Tensor:
        """Standard deviations ``[..., K, P]`` broadcastable to ``[..., K, D]``."""

    def scale_tril(self, raw: Tensor, num_features: int) -> Tensor:
        sigma = self.scale(raw)
        sigma = sigma.expand(*sigma.shape[:-1], num_features)
        return torch.diag_embed(sigma)

    def log_det(self, raw: Tensor, num_features: int) -> Tensor:
        log_sigma = self.scale(raw).log()
        if log_sigma.shape[-1] == 1:
            return 2.0 * num_features * log_sigma[..., 0]
        return 2.0 * log_sigma.sum(-1)

    def whiten(self, raw: Tensor, diff: Tensor) -> Tensor:
        return diff / self.scale(raw)

    def colour(self, raw: Tensor, eps: Tensor) -> Tensor:
        return eps * self.scale(raw)

    def min_scale_of(self, raw: Tensor, num_features: int) -> Tensor:
        return self.scale(raw).amin(-1)

    #: one scale per feature (diag) rather than one per component (scalar, unit)
    per_feature: bool = False

    def feature_size(self, num_features: int) -> int:
        return num_features if self.per_feature else 1

    def moment_features(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """``x²`` (diag) or ``‖x‖²`` (unit, scalar): ``[..., D]`` → ``[..., Q]``."""
        if out is None or x.dim() != 2 or out.shape[0] < x.shape[0]:
            sq = x.square()
            return sq if self.per_feature else sq.sum(-1, keepdim=True)
        out = out[: x.shape[0]]
        if self.per_feature:
            return torch.mul(x, x, out=out)
        return torch.sum(x.square(), -1, keepdim=True, out=out)

    def precision_terms(self, raw: Tensor, num_features: int) -> tuple[Tensor, Tensor]:
        inv_var = self.scale(raw).square().reciprocal()  # [..., K, 1 or D]
        return inv_var, -self.log_det(raw, num_features)

    def precision_coefficients(self, precision: Tensor, log_det_precision: Tensor,
                               means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = means.shape[-1]
        lin = means * precision
        const = -0.5 * ((means * lin).sum(-1) - log_det_precision + d * _LOG_2PI)
        rows = 1 if self.shared else means.shape[-2]  # shared: one quadratic term for all K
        quad = (-0.5 * precision).expand(*means.shape[:-2], rows, precision.shape[-1])
        return quad, lin, const.expand(means.shape[:-1])

    def _variances(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        """Unregularised variances ``[..., K, 1 or D]`` (``[..., 1, ·]`` pooled for shared)."""
        means = sum_x / counts[..., None]
        second = means.square() if self.per_feature else means.square().sum(-1, keepdim=True)
        if self.shared:  # Σ_k N_k var_k / N = (Σ_k S_k − Σ_k N_k m_k) / N
            total = sum_f.sum(-2, keepdim=True)
            var = (total - (counts[..., None] * second).sum(-2, keepdim=True))
            var = var / counts.sum(-1)[..., None, None]
        else:
            var = sum_f / counts[..., None] - second
        return var if self.per_feature else var / means.shape[-1]

    def estimate(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                 reg: float = 0.0) -> tuple[Tensor, Tensor]:
        means = sum_x / counts[..., None]
        var = self._variances(counts, sum_x, sum_f) + reg
        return means, self._unconstrain(var.clamp_min(0).sqrt())

    # -- scikit-learn's shapes: diag [K, D], spherical [K], one variance for all [] -------------
    #: one variance serves every component (unit, shared scalar): scikit-learn-style shape ``()``
    one_variance: bool = False

    def sklearn_shape(self, num_components: int, num_features: int) -> tuple[int, ...]:
        if self.per_feature:
            return (num_components, num_features)
        return () if self.one_variance else (num_components,)

    def to_sklearn(self, dense: Tensor) -> Tensor:
        var = dense.diagonal(dim1=-2, dim2=-1)  # [..., K, D]
        if self.per_feature:
            return var
        var = var.mean(-1)  # [..., K]
        return var[..., 0] if self.one_variance else var

    def from_sklearn(self, array: Tensor, num_components: int, num_features: int) -> Tensor:
        self._check_sklearn_shape(array, num_components, num_features)
        k, d = num_components, num_features
        var = array if self.per_feature else array.reshape(-1, 1)  # [K or 1, D or 1]
        return torch.diag_embed(var.expand(k, d))


class UnitCovariance(_ElementwiseScale):
    """Fixed isotropic covariance ``σ² I`` with σ = ``scale`` (default 1); nothing is learned.

    This is the "constant" family: only means and weights are fitted. The raw tensor has no
    entries (``P = 0``); it only carries the batch shape.
    """

    learnable = False
    one_variance = True

    def __init__(self, scale: float = 1.0, min_scale: float = 1e-3) -> None:
        super().__init__(min_scale)
        if not scale > 0:
            raise ValueError(f"covariance.scale must be positive (got {scale}), e.g. 1.0.")
        self.fixed_scale = float(scale)

    def raw_size(self, num_features: int) -> int:
        return 0

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return 0

    def scale(self, raw: Tensor) -> Tensor:
        return raw.new_full((*raw.shape[:-1], 1), self.fixed_scale)

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        return cov.new_zeros(cov.shape[:-2] + (0,))

    def estimate(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                 reg: float = 0.0) -> tuple[Tensor, Tensor]:
        return sum_x / counts[..., None], sum_x.new_zeros(sum_x.shape[:-1] + (0,))

    def __repr__(self) -> str:
        return f"UnitCovariance(scale={self.fixed_scale})"


class ScalarCovariance(_ElementwiseScale):
    """Isotropic ``σ_k² I`` with one learned σ per component (scikit-learn's "spherical")."""

    sklearn_name = "spherical"

    def raw_size(self, num_features: int) -> int:
        return 1

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return num_components

    def scale(self, raw: Tensor) -> Tensor:
        return self._constrain(raw)

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        var = cov.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)  # [..., K, 1]
        return self._unconstrain(var.clamp_min(0).sqrt())


class SharedScalarCovariance(ScalarCovariance):
    """One isotropic ``σ² I`` shared by all components (raw tensor ``[..., 1, 1]``)."""

    shared = True
    one_variance = True
    sklearn_name = None  # scikit-learn has no shared spherical type

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return 1

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        var = cov.diagonal(dim1=-2, dim2=-1).mean(-1)  # [..., K]
        if weights is None:
            pooled = var.mean(-1)
        else:
            pooled = (weights * var).sum(-1) / weights.sum(-1)
        return self._unconstrain(pooled.clamp_min(0).sqrt())[..., None, None]


class DiagCovariance(_ElementwiseScale):
    """Axis-aligned ``diag(σ_k²)`` with D learned scales per component."""

    per_feature = True
    sklearn_name = "diag"

    def raw_size(self, num_features: int) -> int:
        return num_features

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return num_components * num_features

    def scale(self, raw: Tensor) -> Tensor:
        return self._constrain(raw)

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        return self._unconstrain(cov.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt())
