"""Summaries of Gaussian mixtures with batch dimensions: moments, marginal CDFs, modes.

A mixture density network predicts one mixture per input, so every function here takes
``log_weights [*R, K]``, ``means [*R, K, D]`` and a raw covariance ``[*R, K, P]`` (``[*R, 1, P]``
for shared types) and broadcasts over the batch dimensions ``R``. Sampling and log-densities are
in :mod:`mixtures.distributions.gaussian` (``sample_mixture``, ``mixture_log_prob``), which
already broadcast the same way.

Letters: N points, B batch, K components, D features (an MDN's target dimension).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixtures.distributions.covariance import CovarianceType
from mixtures.distributions.gaussian import mixture_log_prob

__all__ = [
    "component_variances",
    "mixture_covariance",
    "mixture_marginal_cdf",
    "mixture_mean",
    "mixture_mode",
]


def mixture_mean(log_weights: Tensor, means: Tensor) -> Tensor:
    """``E[y] = Σ_k π_k μ_k``: ``[*R, K]``, ``[*R, K, D]`` → ``[*R, D]``."""
    return (log_weights.exp().unsqueeze(-1) * means).sum(-2)


def component_variances(raw: Tensor, cov: CovarianceType, num_features: int) -> Tensor:
    """Per-feature variances ``diag Σ_k`` (row sums of ``L²``): ``[*R, K, P]`` → ``[*R, K, D]``
    (``[*R, 1, D]`` for shared types)."""
    return cov.scale_tril(raw, num_features).square().sum(-1)


def mixture_covariance(
    log_weights: Tensor, means: Tensor, raw: Tensor, cov: CovarianceType
) -> Tensor:
    """Covariance of the mixture by the law of total variance,
    ``Σ_k π_k (Σ_k + μ_k μ_kᵀ) − m mᵀ`` with ``m = Σ_k π_k μ_k``, computed around ``m`` as
    ``Σ_k π_k (Σ_k + (μ_k − m)(μ_k − m)ᵀ)`` (no cancellation).

    Returns:
        ``[*R, D, D]``.
    """
    d = means.shape[-1]
    w = log_weights.exp()  # [*R, K]
    centred = means - mixture_mean(log_weights, means).unsqueeze(-2)  # [*R, K, D]
    within = (w[..., None, None] * cov.covariance(raw, d)).sum(-3)  # [*R, D, D]
    between = torch.einsum("...k,...ki,...kj->...ij", w, centred, centred)
    return within + between


def mixture_marginal_cdf(
    y: Tensor, log_weights: Tensor, means: Tensor, raw: Tensor, cov: CovarianceType
) -> Tensor:
    """Marginal CDF of every feature, ``F_j(y_j) = Σ_k π_k Φ((y_j − μ_kj) / σ_kj)`` — the
    probability integral transform (PIT) of ``y``.

    Args:
        y: ``[*E, *R, D]`` (extra leading dimensions ``E`` allowed, as in ``mixture_log_prob``).
        log_weights: ``[*R, K]``; means: ``[*R, K, D]``; raw: ``[*R, K or 1, P]``.
        cov: the covariance parametrisation of ``raw``.

    Returns:
        ``[*E, *R, D]`` in [0, 1].
    """
    d = means.shape[-1]
    std = component_variances(raw, cov, d).sqrt()  # [*R, K or 1, D]
    z = (y.unsqueeze(-2) - means) / std  # [*E, *R, K, D]
    return (log_weights.exp().unsqueeze(-1) * torch.special.ndtr(z)).sum(-2)


def mixture_mode(
    log_weights: Tensor,
    means: Tensor,
    raw: Tensor,
    cov: CovarianceType,
    num_steps: int = 20,
) -> Tensor:
    """Approximate mode of each mixture.

    Every component mean starts a Gaussian-mixture mean-shift (Carreira-Perpiñán 2000): the
    fixed-point iteration ``y ← (Σ_k r_k Λ_k)⁻¹ Σ_k r_k Λ_k μ_k`` with responsibilities
    ``r_k(y)`` and precisions ``Λ_k``, which never decreases the density. After ``num_steps``
    steps the candidate with the highest mixture density wins (``num_steps=0``: the best
    component mean). The mode is exact when it is reached from some component mean, which is
    the usual case; it is an approximation in general.

    Returns:
        ``[*R, D]``.
    """
    d = means.shape[-1]
    k = means.shape[-2]
    y = means.movedim(-2, 0)  # K candidates as an extra leading dimension: [K, *R, D]
    if num_steps > 0:
        tril = cov.scale_tril(raw, d)  # [*R, K or 1, D, D]
        prec = torch.cholesky_inverse(tril)  # Λ_k
        prec_mean = (prec @ means.unsqueeze(-1))[..., 0]  # Λ_k μ_k  [*R, K, D]
        for _ in range(num_steps):  # iterations, not points or components
            diff = y.unsqueeze(-2) - means  # [K, *R, K, D]
            logp = log_weights - 0.5 * cov.mahalanobis(raw, diff) - 0.5 * cov.log_det(raw, d)
            r = torch.softmax(logp, -1)  # [K, *R, K]
            if prec.shape[-3] == 1:  # shared covariance: the iteration is a weighted mean
                y = (r.unsqueeze(-1) * means).sum(-2)
                continue
            a = torch.einsum("...k,...kij->...ij", r, prec)  # [K, *R, D, D]
            b = torch.einsum("...k,...ki->...i", r, prec_mean)  # [K, *R, D]
            y = torch.linalg.solve(a, b)
    density = mixture_log_prob(y, log_weights, means, raw, cov)  # [K, *R]
    best = density.argmax(0)  # [*R]
    idx = best[None, ..., None].expand(1, *best.shape, d)
    return torch.take_along_dim(y, idx, dim=0)[0] if k > 1 else y[0]
