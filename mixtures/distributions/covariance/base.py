"""The covariance interface :class:`CovarianceType` and the softplus scale constraint.

Letters: N points, B batch, K components, D features, P raw numbers, Q moment features.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CovarianceType"]

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
    # products x_i x_j): one matrix product scores every point against every component,
    # and the sums Σ r F, Σ r x, Σ r are the sufficient statistics of the M-step.
    @abstractmethod
    def feature_size(self, num_features: int) -> int:
        """Q, the number of moment features for D = ``num_features``."""

    @abstractmethod
    def moment_features(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """Second-moment features ``F(x)``: ``[..., D]`` → ``[..., Q]``.

        ``out``: optional buffer ``[≥N, Q]`` for 2-D ``x`` ``[N, D]``; its first N rows are
        filled and returned (lets a chunked loop reuse one allocation). It may be a column
        slice of a wider buffer (rows strided, columns contiguous), as EM's design matrix
        ``[1 | x | F(x)]`` is.
        """

    @abstractmethod
    def precision_terms(self, raw: Tensor, num_features: int) -> tuple[Tensor, Tensor]:
        """Precision ``Λ = Σ⁻¹`` in this type's form (see :meth:`precision_coefficients`) and
        ``log |Λ|``.

        Args:
            raw: ``[..., K, P]``.
            num_features: D.

        Returns:
            ``Λ`` — ``[..., K, 1]`` (unit, scalar), ``[..., K, D]`` (diag) or dense
            ``[..., K, D, D]`` (full) — and ``log |Λ|`` ``[..., K]``.
        """

    def coefficients(self, raw: Tensor, means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A [..., K, Q], b [..., K, D], c [..., K])`` of the log-density above; shared types
        give ``A`` as ``[..., 1, Q]`` (one second-order term for all components, which
        :func:`~mixtures.distributions.expfam_log_prob` scores once)."""
        return self.precision_coefficients(*self.precision_terms(raw, means.shape[-1]), means)

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

        Returns:
            ``A`` ``[..., K, Q]`` (``[..., 1, Q]`` for shared types), ``b`` ``[..., K, D]``,
            ``c`` ``[..., K]``.
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

    # -- scikit-learn's shapes (the GaussianMixture drop-in) -----------------------------------
    #: scikit-learn's ``covariance_type`` of this type (None where scikit-learn has none).
    sklearn_name: str | None = None

    @abstractmethod
    def sklearn_shape(self, num_components: int, num_features: int) -> tuple[int, ...]:
        """Shape of ``covariances_`` (and ``precisions_``, ``precisions_cholesky_``) in
        scikit-learn's layout: full ``(K, D, D)``, tied ``(D, D)``, diag ``(K, D)``, spherical
        ``(K,)``; ``()`` for one variance shared by all components (unit, shared scalar)."""

    @abstractmethod
    def to_sklearn(self, dense: Tensor) -> Tensor:
        """Dense matrices of this type (covariances, precisions or their Cholesky factors) in
        scikit-learn's layout.

        Args:
            dense: ``[..., K, D, D]`` (``K`` may be 1 for shared types).

        Returns:
            ``[..., *S]`` with ``S`` as :meth:`sklearn_shape` (the diagonal, the mean variance,
            or the first component for shared types).
        """

    @abstractmethod
    def from_sklearn(self, array: Tensor, num_components: int, num_features: int) -> Tensor:
        """Dense matrices ``[K, D, D]`` from scikit-learn's layout ``array`` (shape
        :meth:`sklearn_shape`; ValueError otherwise). Shared forms are expanded over K."""

    def _check_sklearn_shape(self, array: Tensor, num_components: int,
                             num_features: int) -> None:
        shape = self.sklearn_shape(num_components, num_features)
        if tuple(array.shape) != shape:
            raise ValueError(f"{type(self).__name__} expects scikit-learn's shape {list(shape)} "
                             f"for K={num_components}, D={num_features}; got "
                             f"{list(array.shape)}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_scale={self.min_scale})"

    # -- helpers for the scale constraint ----------------------------------------------------
    def _constrain(self, raw: Tensor) -> Tensor:
        return F.softplus(raw) + self.min_scale

    def _unconstrain(self, scale: Tensor) -> Tensor:
        excess = (scale - self.min_scale).clamp_min(1e-6 * self.min_scale)
        return _softplus_inverse(excess)
