"""Gaussian and Gaussian-mixture densities, responsibilities and sampling.

Pure functions over (means, raw covariance) pairs and a :class:`CovarianceType`. They broadcast
over leading dimensions so that the same code serves a Gaussian mixture (means ``[K, D]``,
data ``[N, D]``) and a mixture density network (means ``[B, K, D]``, data ``[B, D]``).

Letters: N points, B batch, K components, D features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixtures.distributions.covariance import CovarianceType

__all__ = [
    "component_log_prob",
    "expfam_log_prob",
    "mixture_log_prob",
    "weighted_log_prob",
    "normalize_log_prob",
    "responsibilities",
    "sample_mixture",
]

_LOG_2PI = math.log(2.0 * math.pi)


def component_log_prob(x: Tensor, means: Tensor, raw: Tensor, cov: CovarianceType) -> Tensor:
    """Log-density of every point under every component, ``log N(x | μ_k, Σ_k)``.

    Args:
        x: points ``[*E, *R, D]`` (``[N, D]`` for a GMM, ``[B, D]`` for an MDN).
        means: ``[*R, K, D]``.
        raw: raw covariance ``[*R, K, P]`` (or ``[*R, 1, P]`` for shared types).
        cov: the covariance parametrisation of ``raw``.

    Returns:
        ``[*E, *R, K]``.
    """
    d = x.shape[-1]
    if means.shape[-1] != d:
        raise ValueError(
            f"points have {d} features but the components have {means.shape[-1]}; "
            "check the data's feature count against model.net.num_features."
        )
    diff = x.unsqueeze(-2) - means  # [*E, *R, K, D]
    maha = cov.mahalanobis(raw, diff)  # [*E, *R, K]
    return -0.5 * (d * _LOG_2PI + cov.log_det(raw, d) + maha)


def expfam_log_prob(
    features: Tensor, x: Tensor, quad: Tensor, lin: Tensor, const: Tensor
) -> Tensor:
    """``log N(x_n | μ_k, Σ_k) = F(x_n)·A_k + x_n·b_k + c_k`` for all points and components by
    two matrix products (the fast E-step; see ``CovarianceType.coefficients``).

    Args:
        features: ``F(x)`` ``[N, Q]``.
        x: ``[N, D]``.
        quad: ``A`` ``[*R, K, Q]``, or ``[*R, 1, Q]`` when one second-order term serves every
            component (a shared covariance's coefficients): then it is multiplied once per
            restart instead of once per component.
        lin: ``b`` ``[*R, K, D]``; const: ``c`` ``[*R, K]`` (``R``: e.g. a batch of restarts,
            flattened into the matrix product).

    Returns:
        ``[N, *R, K]``.
    """
    batch = const.shape
    q, d, k = quad.shape[-1], lin.shape[-1], batch[-1]
    if k > 1 and quad.shape[-2] == 1:
        # One second-order term for all K (a shared covariance): one column per restart.
        shared = features @ quad[..., 0, :].expand(*batch[:-1], q).reshape(-1, q).T  # [N, R']
        out = torch.addmm(const.reshape(1, -1), x, lin.reshape(-1, d).T)
        return (out.view(x.shape[0], -1, k) + shared.unsqueeze(-1)).reshape(x.shape[0], *batch)
    quad = quad.expand(*batch, q)
    out = torch.addmm(const.reshape(1, -1), features, quad.reshape(-1, q).T)
    out = out.addmm_(x, lin.reshape(-1, d).T)
    return out.reshape(x.shape[0], *batch)


def weighted_log_prob(
    x: Tensor, log_weights: Tensor, means: Tensor, raw: Tensor, cov: CovarianceType
) -> Tensor:
    """``log π_k + log N(x | μ_k, Σ_k)``: ``[*E, *R, K]`` (``log_weights`` is ``[*R, K]``)."""
    return log_weights + component_log_prob(x, means, raw, cov)


def mixture_log_prob(
    x: Tensor, log_weights: Tensor, means: Tensor, raw: Tensor, cov: CovarianceType
) -> Tensor:
    """Mixture log-density ``log Σ_k π_k N(x | μ_k, Σ_k)`` by logsumexp: ``[*E, *R]``."""
    return torch.logsumexp(weighted_log_prob(x, log_weights, means, raw, cov), dim=-1)


def responsibilities(weighted: Tensor) -> Tensor:
    """Posterior component probabilities from ``weighted_log_prob`` output: softmax over K."""
    return torch.softmax(weighted, dim=-1)


def normalize_log_prob(logp: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over K and its log-normaliser from ``logp`` ``[..., K]`` (overwritten).

    Responsibilities below ``2·e²⁰·tiny`` of the largest are set to exactly 0: on
    well-separated data most would otherwise be subnormal floats, which make ``exp`` ~10× and
    the M-step's matrix products ~50× slower on x86 CPUs. The log-probabilities are clamped at
    the cut before the exponential and the results at the cut zeroed after it, because ``exp``
    of −∞ (or of anything below ``log tiny``) also takes a slow path (~3× on AMD Zen). The
    relative error is below ``K·e⁻⁶⁷`` in float32 (``e⁻⁶⁸⁸`` in float64). One exponential pass
    serves both outputs.
    """
    cut = math.log(torch.finfo(logp.dtype).tiny) + 20.0
    top = logp.amax(-1, keepdim=True)  # [..., 1]
    logp.sub_(top).clamp_min_(cut)
    resp = logp.exp_()
    torch.nn.functional.threshold_(resp, 2.0 * math.exp(cut), 0.0)  # ≤ the cut's exp → 0
    total = resp.sum(-1, keepdim=True)
    resp.div_(total)
    return resp, (top + total.log()).squeeze(-1)


def sample_mixture(
    num_samples: int,
    log_weights: Tensor,
    means: Tensor,
    raw: Tensor,
    cov: CovarianceType,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw points from a mixture (not reparameterised through the component choice).

    Args:
        num_samples: S.
        log_weights: ``[*R, K]``.
        means: ``[*R, K, D]``.
        raw: ``[*R, K, P]``.
        cov: covariance parametrisation.
        generator: optional random generator (on the tensors' device).

    Returns:
        points ``[S, *R, D]`` and component labels ``[S, *R]``.
    """
    batch = log_weights.shape[:-1]
    k = log_weights.shape[-1]
    probs = log_weights.softmax(-1).reshape(-1, k)  # [R', K]
    labels = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
    labels = labels.T.reshape(num_samples, *batch)  # [S, *R]
    d = means.shape[-1]
    eps = torch.randn(
        (num_samples, *batch, d), generator=generator, device=means.device, dtype=means.dtype
    )
    means_b = means.expand(num_samples, *means.shape)
    raw_b = raw.expand(num_samples, *batch, k, raw.shape[-1]) if raw.shape[-2] == k else raw
    idx = labels[..., None, None]
    mu = torch.take_along_dim(means_b, idx.expand(*labels.shape, 1, d), dim=-2)[..., 0, :]
    if raw.shape[-2] == k:
        r = torch.take_along_dim(raw_b, idx.expand(*labels.shape, 1, raw.shape[-1]), dim=-2)
    else:
        r = raw.expand(num_samples, *batch, 1, raw.shape[-1])
    points = mu + cov.colour(r, eps.unsqueeze(-2))[..., 0, :]
    return points, labels
