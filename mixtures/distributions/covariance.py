"""Covariance parametrisations: one class per covariance type, one shared interface.

Every type maps an unconstrained *raw* tensor to a covariance and implements the same few
operations, so that models never branch on the covariance name. All methods broadcast over
leading batch dimensions: the raw tensor of a Gaussian mixture has shape ``[K, P]`` and that of a
mixture density network ``[B, K, P]``, where ``P = raw_size(D)`` is the number of raw numbers per
component. *Shared* types (one covariance for all components) keep a component dimension of
size 1 (``[..., 1, P]``) that broadcasts against ``K``.

Letters: N points, B batch, K components, D features.

The canonical factor is the lower Cholesky factor ``L`` of the covariance (``Σ = L Lᵀ``).
Densities use ``L`` through triangular solves and the log-determinant ``2 Σ log diag L``; the
covariance is never inverted. To whiten many points at once, a full type solves ``L X = I`` once
per component (the Cholesky factor of the precision, as scikit-learn's ``precisions_cholesky_``)
and applies it as one matrix product: a triangular solve of D×D, not a general inverse.
Scales are kept above a floor ``min_scale`` (a standard deviation, in data units) so that a
component can never collapse to a singular covariance.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from mixtures.distributions.conjugate import ConjugatePrior

__all__ = [
    "CovarianceType",
    "UnitCovariance",
    "ScalarCovariance",
    "SharedScalarCovariance",
    "DiagCovariance",
    "FullCovariance",
    "SharedFullCovariance",
]


_LOG_2PI = math.log(2.0 * math.pi)


def _softplus_inverse(y: Tensor) -> Tensor:
    """Inverse of softplus for y > 0, stable for large and small y."""
    return y + torch.log(-torch.expm1(-y))


class CovarianceType(ABC):
    """Interface of a covariance parametrisation.

    Args:
        min_scale: floor on every standard deviation (and on the diagonal of ``L`` for full
            covariances), in data units. Must be positive.
    """

    #: whether the raw tensor is a learnable parameter (False for a fixed covariance).
    learnable: bool = True
    #: whether one covariance is shared by all components (component dim of size 1).
    shared: bool = False

    def __init__(self, min_scale: float = 1e-3) -> None:
        if not min_scale > 0:
            raise ValueError(
                f"covariance.min_scale must be positive (got {min_scale}); it is the floor on "
                "standard deviations that keeps components from collapsing, e.g. 1e-3."
            )
        self.min_scale = float(min_scale)

    # -- shapes ----------------------------------------------------------------------------
    @abstractmethod
    def raw_size(self, num_features: int) -> int:
        """Number P of raw numbers per component for D = ``num_features``."""

    def raw_shape(self, num_components: int, num_features: int) -> tuple[int, int]:
        """Shape ``[K, P]`` (``[1, P]`` for shared types) of a mixture's raw tensor."""
        return (1 if self.shared else num_components, self.raw_size(num_features))

    @abstractmethod
    def num_parameters(self, num_components: int, num_features: int) -> int:
        """Free covariance parameters of a K-component mixture (for BIC / AIC)."""

    # -- the core operations ---------------------------------------------------------------
    @abstractmethod
    def scale_tril(self, raw: Tensor, num_features: int) -> Tensor:
        """Lower Cholesky factor ``L``.

        Args:
            raw: ``[..., K, P]``.
            num_features: D.

        Returns:
            ``[..., K, D, D]``.
        """

    @abstractmethod
    def log_det(self, raw: Tensor, num_features: int) -> Tensor:
        """``log |Σ|``: ``[..., K, P]`` → ``[..., K]``."""

    @abstractmethod
    def whiten(self, raw: Tensor, diff: Tensor) -> Tensor:
        """``L⁻¹ (x − μ)`` by triangular solve (or elementwise division).

        Args:
            raw: ``[*R, K, P]``.
            diff: ``[*E, *R, K, D]`` — extra leading dimensions ``E`` (e.g. data points) are
                allowed in front of the raw tensor's batch dimensions ``R``.

        Returns:
            ``[*E, *R, K, D]``.
        """

    @abstractmethod
    def colour(self, raw: Tensor, eps: Tensor) -> Tensor:
        """``L ε`` (maps standard-normal noise to the component's covariance); shapes as
        :meth:`whiten`."""

    @abstractmethod
    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        """Raw tensor whose covariance is the projection of ``cov`` onto this type.

        The projection is the maximum-likelihood estimate within the type given the moment
        matrices: the diagonal for ``diag``, the mean variance for ``scalar``, the weighted mean
        variance over components for ``shared_scalar``. Scales are clamped to the floor.

        Args:
            cov: dense covariances ``[..., K, D, D]``.
            weights: ``[..., K]`` component weights, used by shared types to pool.

        Returns:
            ``[..., K, P]`` (``[..., 1, P]`` for shared types).
        """

    # -- derived operations ----------------------------------------------------------------
    def mahalanobis(self, raw: Tensor, diff: Tensor) -> Tensor:
        """Squared Mahalanobis distance ``(x − μ)ᵀ Σ⁻¹ (x − μ)``: ``[..., K, D]`` → ``[..., K]``."""
        return self.whiten(raw, diff).square().sum(-1)

    def covariance(self, raw: Tensor, num_features: int) -> Tensor:
        """Dense covariance ``Σ = L Lᵀ``: ``[..., K, P]`` → ``[..., K, D, D]``."""
        tril = self.scale_tril(raw, num_features)
        return tril @ tril.transpose(-1, -2)

    def min_scale_of(self, raw: Tensor, num_features: int) -> Tensor:
        """Smallest diagonal entry of ``L`` per component, ``[..., K]`` (collapse detection)."""
        return self.scale_tril(raw, num_features).diagonal(dim1=-2, dim2=-1).amin(-1)

    # -- exponential-family view (closed-form EM) ------------------------------------------
    # log N(x | μ_k, Σ_k) = F(x)·A_k + x·b_k + c_k with moment features F (‖x‖², x², or the
    # packed products x_i x_j): one matrix product scores every point against every component,
    # and the sums Σ r F, Σ r x, Σ r are the sufficient statistics of the M-step.
    @abstractmethod
    def feature_size(self, num_features: int) -> int:
        """Q, the number of moment features for D = ``num_features``."""

    @abstractmethod
    def moment_features(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """Second-moment features ``F(x)``: ``[..., D]`` → ``[..., Q]``.

        ``out``: optional buffer ``[≥N, Q]`` for 2-D ``x`` ``[N, D]``; its first N rows are
        filled and returned (lets a chunked loop reuse one allocation).
        """

    @abstractmethod
    def coefficients(self, raw: Tensor, means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A [..., K, Q], b [..., K, D], c [..., K])`` of the log-density above."""

    @abstractmethod
    def precision_coefficients(self, precision: Tensor, log_det_precision: Tensor,
                               means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`coefficients` from a given precision instead of a raw covariance (e.g. a
        precision drawn from a variational posterior).

        Args:
            precision: ``Λ`` in this type's form — ``[..., K, 1]`` (unit, scalar: ``λ`` of
                ``λ I``), ``[..., K, D]`` (diag) or dense ``[..., K, D, D]`` (full).
            log_det_precision: ``log |Λ|`` ``[..., K]``.
            means: ``[..., K, D]``.
        """

    @abstractmethod
    def estimate(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                 reg: float = 0.0) -> tuple[Tensor, Tensor]:
        """Maximum-likelihood means and raw covariance from responsibility-weighted sums.

        Args:
            counts: ``Σ_n r_nk`` ``[..., K]`` (strictly positive).
            sum_x: ``Σ_n r_nk x_n`` ``[..., K, D]``.
            sum_f: ``Σ_n r_nk F(x_n)`` ``[..., K, Q]``; shared types need only the total
                ``Σ_k Σ_n r_nk F(x_n)`` and also accept it as ``[..., 1, Q]``.
            reg: added to the variances (scikit-learn's ``reg_covar``).

        Returns:
            means ``[..., K, D]`` and raw covariance ``[..., K, P]`` (``[..., 1, P]`` shared).
        """

    def conjugate_prior(self) -> ConjugatePrior:
        """The conjugate Normal–precision prior of this type (variational Bayes, DPMM)."""
        raise ValueError(
            f"covariance type {type(self).__name__} has no conjugate prior in mixtures; "
            "Bayesian mixtures support covariance=unit, scalar, diag or full."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_scale={self.min_scale})"

    # -- helpers for the scale constraint ----------------------------------------------------
    def _constrain(self, raw: Tensor) -> Tensor:
        return F.softplus(raw) + self.min_scale

    def _unconstrain(self, scale: Tensor) -> Tensor:
        excess = (scale - self.min_scale).clamp_min(1e-6 * self.min_scale)
        return _softplus_inverse(excess)


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
        sq = x.square()
        return sq if self.per_feature else sq.sum(-1, keepdim=True)

    def coefficients(self, raw: Tensor, means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        inv_var = self.scale(raw).square().reciprocal()  # [..., K, 1 or D]
        return self.precision_coefficients(inv_var, -self.log_det(raw, means.shape[-1]), means)

    def precision_coefficients(self, precision: Tensor, log_det_precision: Tensor,
                               means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = means.shape[-1]
        lin = means * precision
        const = -0.5 * ((means * lin).sum(-1) - log_det_precision + d * _LOG_2PI)
        quad = (-0.5 * precision).expand(*means.shape[:-1], precision.shape[-1])
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


class UnitCovariance(_ElementwiseScale):
    """Fixed isotropic covariance ``σ² I`` with σ = ``scale`` (default 1); nothing is learned.

    This is the "constant" family: only means and weights are fitted. The raw tensor has no
    entries (``P = 0``); it only carries the batch shape.
    """

    learnable = False

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

    def conjugate_prior(self) -> ConjugatePrior:
        from mixtures.distributions.conjugate import UnitNormalPrior

        return UnitNormalPrior(self)


class ScalarCovariance(_ElementwiseScale):
    """Isotropic ``σ_k² I`` with one learned σ per component (scikit-learn's "spherical")."""

    def raw_size(self, num_features: int) -> int:
        return 1

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return num_components

    def scale(self, raw: Tensor) -> Tensor:
        return self._constrain(raw)

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        var = cov.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)  # [..., K, 1]
        return self._unconstrain(var.clamp_min(0).sqrt())

    def conjugate_prior(self) -> ConjugatePrior:
        from mixtures.distributions.conjugate import ScalarNormalGamma

        if self.shared:
            return super().conjugate_prior()
        return ScalarNormalGamma(self)


class SharedScalarCovariance(ScalarCovariance):
    """One isotropic ``σ² I`` shared by all components (raw tensor ``[..., 1, 1]``)."""

    shared = True

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

    def raw_size(self, num_features: int) -> int:
        return num_features

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return num_components * num_features

    def scale(self, raw: Tensor) -> Tensor:
        return self._constrain(raw)

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        return self._unconstrain(cov.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt())

    def conjugate_prior(self) -> ConjugatePrior:
        from mixtures.distributions.conjugate import DiagNormalGamma

        return DiagNormalGamma(self)


class FullCovariance(CovarianceType):
    """Full covariance through its lower Cholesky factor ``L`` (packed row-wise, P = D(D+1)/2).

    The diagonal of ``L`` is ``softplus(raw) + min_scale``; the strictly lower part is raw.
    """

    def raw_size(self, num_features: int) -> int:
        return num_features * (num_features + 1) // 2

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return num_components * self.raw_size(num_features)

    @staticmethod
    def _num_features(raw_size: int) -> int:
        d = int((math.isqrt(8 * raw_size + 1) - 1) // 2)
        if d * (d + 1) // 2 != raw_size:
            raise ValueError(f"{raw_size} is not a triangular number D(D+1)/2")
        return d

    def scale_tril(self, raw: Tensor, num_features: int | None = None) -> Tensor:
        d = self._num_features(raw.shape[-1]) if num_features is None else num_features
        rows, cols = torch.tril_indices(d, d, device=raw.device)
        tril = raw.new_zeros(*raw.shape[:-1], d, d)
        tril[..., rows, cols] = raw
        diag = tril.diagonal(dim1=-2, dim2=-1)
        return tril - torch.diag_embed(diag) + torch.diag_embed(self._constrain(diag))

    def log_det(self, raw: Tensor, num_features: int) -> Tensor:
        idx = torch.arange(num_features, device=raw.device)
        diag_pos = idx * (idx + 3) // 2  # position of (i, i) in the row-wise packing
        return 2.0 * self._constrain(raw[..., diag_pos]).log().sum(-1)

    def whiten(self, raw: Tensor, diff: Tensor) -> Tensor:
        tril = self.scale_tril(raw, diff.shape[-1])  # [*R, K, D, D]
        extra = diff.dim() - (tril.dim() - 1)
        if extra <= 0:
            # Same batch shape: one solve per (batch, component).
            tril = tril.expand(*diff.shape[:-1], *tril.shape[-2:])
            return torch.linalg.solve_triangular(tril, diff.unsqueeze(-1), upper=False)[..., 0]
        # Extra leading dims (points): invert each D×D factor by a triangular solve (the
        # Cholesky factor of the precision, as scikit-learn keeps it) and whiten all points with
        # one batched matrix product per component, instead of N small solves.
        lead = diff.shape[:extra]
        body = diff.shape[extra:]  # [*R, K, D]
        tril = tril.expand(*body, body[-1])
        eye = torch.eye(body[-1], dtype=tril.dtype, device=tril.device)
        prec_chol = torch.linalg.solve_triangular(tril, eye, upper=False)  # L⁻¹ [*R, K, D, D]
        cols = diff.reshape(-1, *body).movedim(0, -1)  # [*R, K, D, M]
        z = prec_chol @ cols
        return z.movedim(-1, 0).reshape(*lead, *body)

    def colour(self, raw: Tensor, eps: Tensor) -> Tensor:
        tril = self.scale_tril(raw, eps.shape[-1])
        return (tril @ eps.unsqueeze(-1))[..., 0]

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        d = cov.shape[-1]
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        tril, info = torch.linalg.cholesky_ex(cov)
        bad = info > 0  # [..., K]
        if bool(bad.any()):
            # Singular or indefinite: retry with the floor added to the diagonal, and fall back
            # to the (always valid) diagonal where even that fails.
            jittered, info2 = torch.linalg.cholesky_ex(cov + (self.min_scale**2) * eye)
            diag = cov.diagonal(dim1=-2, dim2=-1).clamp_min(self.min_scale**2).sqrt()
            jittered = torch.where((info2 > 0)[..., None, None], torch.diag_embed(diag), jittered)
            tril = torch.where(bad[..., None, None], jittered, tril)
        rows, cols = torch.tril_indices(d, d, device=cov.device)
        raw = tril[..., rows, cols].clone()
        diag_pos = torch.arange(d, device=cov.device)
        diag_pos = diag_pos * (diag_pos + 3) // 2
        raw[..., diag_pos] = self._unconstrain(raw[..., diag_pos])
        return raw

    # -- exponential-family view --------------------------------------------------------------
    # Features are the products x_i x_j over the lower *block* triangle of x xᵀ: D is cut into
    # blocks of ``BLOCK`` features and each block pair (i ≥ j) is one broadcast multiply.
    # Off-diagonal blocks hold each product once (coefficient doubled), diagonal blocks both
    # orders. Measured at N = 800k, D = K = 32 on a 2-core CPU: the full D² outer product
    # 0.745 s per EM iteration, blocks of 16 (Q = 768) 0.635 s, blocks of 8 (Q = 640) 0.888 s
    # (the strided writes cost more than the flops saved), the packed triangle by gather worse.
    BLOCK = 16

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _block_layout(d: int, block: int) -> tuple[tuple[tuple[int, int, int, int], ...],
                                                   list[int], list[int], list[float]]:
        """Block pairs ``(start_i, stop_i, start_j, stop_j)`` and, per feature, its row,
        column and coefficient multiplicity."""
        edges = list(range(0, d, block)) + [d]
        pairs, rows, cols, mult = [], [], [], []
        for bi in range(len(edges) - 1):
            for bj in range(bi + 1):
                i0, i1, j0, j1 = edges[bi], edges[bi + 1], edges[bj], edges[bj + 1]
                pairs.append((i0, i1, j0, j1))
                for r in range(i0, i1):
                    for c in range(j0, j1):
                        rows.append(r)
                        cols.append(c)
                        mult.append(1.0 if bi == bj else 2.0)
        return tuple(pairs), rows, cols, mult

    def _layout(self, d: int, device: torch.device, dtype: torch.dtype):
        pairs, rows, cols, mult = self._block_layout(d, self.BLOCK)
        return (pairs, torch.tensor(rows, device=device), torch.tensor(cols, device=device),
                torch.tensor(mult, device=device, dtype=dtype))

    def feature_size(self, num_features: int) -> int:
        return len(self._block_layout(num_features, self.BLOCK)[1])

    def moment_features(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """Products ``x_i x_j`` over the lower block triangle: ``[..., D]`` → ``[..., Q]``."""
        d = x.shape[-1]
        pairs = self._block_layout(d, self.BLOCK)[0]
        q = self.feature_size(d)
        if out is None or x.dim() != 2 or out.shape[0] < x.shape[0]:
            out = x.new_empty(*x.shape[:-1], q)
        else:
            out = out[: x.shape[0]]
        offset = 0
        for i0, i1, j0, j1 in pairs:  # a few blocks of features, not points or components
            width = (i1 - i0) * (j1 - j0)
            view = out[..., offset : offset + width].unflatten(-1, (i1 - i0, j1 - j0))
            torch.mul(x[..., i0:i1, None], x[..., None, j0:j1], out=view)
            offset += width
        return out

    def precision(self, raw: Tensor, num_features: int) -> Tensor:
        """``Λ = Σ⁻¹ = L⁻ᵀ L⁻¹`` from the triangular inverse of the Cholesky factor:
        ``[..., K, P]`` → ``[..., K, D, D]``."""
        tril = self.scale_tril(raw, num_features)
        eye = torch.eye(num_features, dtype=tril.dtype, device=tril.device)
        prec_chol = torch.linalg.solve_triangular(tril, eye, upper=False)  # L⁻¹
        return prec_chol.transpose(-1, -2) @ prec_chol

    def coefficients(self, raw: Tensor, means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = means.shape[-1]
        return self.precision_coefficients(self.precision(raw, d), -self.log_det(raw, d), means)

    def precision_coefficients(self, precision: Tensor, log_det_precision: Tensor,
                               means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = means.shape[-1]
        _, rows, cols, mult = self._layout(d, precision.device, precision.dtype)
        quad = -0.5 * precision[..., rows, cols] * mult  # [..., K or 1, Q]
        lin = (precision @ means.unsqueeze(-1))[..., 0]  # Λ μ  [..., K, D]
        const = -0.5 * ((means * lin).sum(-1) - log_det_precision + d * _LOG_2PI)
        return quad.expand(*means.shape[:-1], quad.shape[-1]), lin, const

    def _unpack(self, sum_f: Tensor, d: int) -> Tensor:
        """Symmetric ``[..., D, D]`` from block-triangle sums ``[..., Q]``."""
        _, rows, cols, _ = self._layout(d, sum_f.device, sum_f.dtype)
        second = sum_f.new_zeros(*sum_f.shape[:-1], d, d)
        second[..., rows, cols] = sum_f
        second[..., cols, rows] = sum_f
        return second

    def _moment_covariance(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
        """Unregularised covariances ``[..., K, D, D]`` from the sums (expanded form; callers
        centre the data so that it is well conditioned)."""
        means = sum_x / counts[..., None]
        d = means.shape[-1]
        second = self._unpack(sum_f, d)
        return second / counts[..., None, None] - means.unsqueeze(-1) * means.unsqueeze(-2)

    def estimate(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                 reg: float = 0.0) -> tuple[Tensor, Tensor]:
        means = sum_x / counts[..., None]
        cov = self._moment_covariance(counts, sum_x, sum_f)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        return means, self.from_covariance(cov + reg * eye, counts)

    def conjugate_prior(self) -> ConjugatePrior:
        from mixtures.distributions.conjugate import NormalWishart

        if self.shared:
            return super().conjugate_prior()
        return NormalWishart(self)


class SharedFullCovariance(FullCovariance):
    """One full covariance shared by all components (scikit-learn's "tied"), raw ``[..., 1, P]``.
    """

    shared = True

    def num_parameters(self, num_components: int, num_features: int) -> int:
        return self.raw_size(num_features)

    def from_covariance(self, cov: Tensor, weights: Tensor | None = None) -> Tensor:
        if cov.shape[-3] > 1:
            if weights is None:
                cov = cov.mean(-3, keepdim=True)
            else:
                w = weights[..., None, None]
                cov = (w * cov).sum(-3, keepdim=True) / w.sum(-3, keepdim=True)
        return super().from_covariance(cov)

    def estimate(self, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                 reg: float = 0.0) -> tuple[Tensor, Tensor]:
        # Σ_k N_k Σ_k' / N = (Σ_k S_k − Σ_k N_k μ_k μ_kᵀ) / N: only the total S is needed.
        means = sum_x / counts[..., None]
        d = means.shape[-1]
        total = self._unpack(sum_f.sum(-2), d)
        outer = torch.einsum("...k,...ki,...kj->...ij", counts, means, means)
        pooled = (total - outer) / counts.sum(-1)[..., None, None]
        eye = torch.eye(d, dtype=pooled.dtype, device=pooled.device)
        return means, super().from_covariance((pooled + reg * eye).unsqueeze(-3))
