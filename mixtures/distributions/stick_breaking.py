"""Truncated stick-breaking weights of a Dirichlet-process mixture, with Beta sticks.

The prior breaks a unit stick with ``v_k ~ Beta(1, α)``: ``π_k = v_k Π_{j<k} (1 − v_j)``. The
truncation at K sets ``v_K = 1`` so that the K weights sum to one (Blei & Jordan, 2006);
scikit-learn instead keeps a K-th Beta stick and renormalises its weights. Given expected
component counts ``n_k``, the variational posterior of stick k < K is
``Beta(1 + n_k, α + Σ_{j>k} n_j)``: linear in the counts, so a natural-gradient step on the
counts is one on the sticks.

Sticks are held as ``(a, b)`` ``[..., K − 1]``. Letters: K components.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "stick_posterior",
    "expected_log_weights",
    "expected_weights",
    "kl_sticks",
    "allocation_bound",
]


def stick_posterior(counts: Tensor, concentration: float | Tensor) -> tuple[Tensor, Tensor]:
    """Beta parameters of the sticks: counts ``[..., K]`` → ``(a, b)`` ``[..., K − 1]``."""
    tail = counts.flip(-1).cumsum(-1).flip(-1) - counts  # Σ_{j>k} n_j
    return 1.0 + counts[..., :-1], concentration + tail[..., :-1]


def expected_log_weights(a: Tensor, b: Tensor) -> Tensor:
    """``E[log π_k] = E[log v_k] + Σ_{j<k} E[log(1 − v_j)]`` ``[..., K]`` (``E[log v_K] = 0``)."""
    total = torch.digamma(a + b)
    log_v = torch.digamma(a) - total  # [..., K-1]
    log_1mv = torch.digamma(b) - total
    zero = log_v.new_zeros(log_v.shape[:-1] + (1,))
    before = torch.cat([zero, log_1mv.cumsum(-1)], -1)  # Σ_{j<k} E log(1 − v_j)  [..., K]
    return before + torch.cat([log_v, zero], -1)


def expected_weights(a: Tensor, b: Tensor) -> Tensor:
    """``E[π_k] = E[v_k] Π_{j<k} E[1 − v_j]`` ``[..., K]``; sums to one."""
    v = a / (a + b)
    one = v.new_ones(v.shape[:-1] + (1,))
    before = torch.cat([one, (1.0 - v).cumprod(-1)], -1)
    return before * torch.cat([v, one], -1)


def kl_sticks(a: Tensor, b: Tensor, concentration: float | Tensor) -> Tensor:
    """``KL(Beta(a, b) ‖ Beta(1, α))`` per stick ``[..., K − 1]``."""
    alpha = torch.as_tensor(concentration, dtype=a.dtype, device=a.device)
    one = torch.ones_like(alpha)
    log_beta_q = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    log_beta_p = torch.lgamma(one) + torch.lgamma(alpha) - torch.lgamma(one + alpha)
    total = torch.digamma(a + b)
    return (log_beta_p - log_beta_q + (a - 1.0) * (torch.digamma(a) - total)
            + (b - alpha) * (torch.digamma(b) - total))


def allocation_bound(counts: Tensor, concentration: float | Tensor) -> Tensor:
    """The weights' share of the ELBO: ``Σ_k n_k E[log π_k] − Σ_k KL(q(v_k) ‖ p(v_k))`` at the
    optimal sticks of the counts ``[..., K]`` → ``[...]`` (equals ``Σ_k log B(a_k, b_k) −
    log B(1, α)``). Order matters: the stick-breaking prior favours large early components."""
    a, b = stick_posterior(counts.clamp_min(0), concentration)
    return ((counts * expected_log_weights(a, b)).sum(-1)
            - kl_sticks(a, b, concentration).sum(-1))
