"""Merge and split proposals for a :class:`~mixtures.models.DPMM`, scored from summaries alone.

The ELBO of responsibilities ``r`` and the optimal global factors of their statistics is

    L = Σ_k [E_q log p(X | θ_k) − KL(q_k ‖ p)]  +  Σ_k n_k E[log π_k] − KL(sticks)  +  H(r)

(:meth:`ConjugatePrior.data_bound`, :func:`allocation_bound`, ``H = −Σ r log r``): every term
is a function of per-component statistics and entropies, so a proposal that rewrites the
responsibilities of whole components — merge ``j ← j + k``, split ``k → (k, e)`` by two
sub-components — is scored exactly without touching the data, provided the pass that made the
statistics also summed the proposal's entropy (``−Σ (r_j + r_k) log(r_j + r_k)`` for a
candidate pair, ``−Σ w log w`` of each child's weights ``w = r_k s_c``), as bnpy does.

A merge can only lower the entropy, so ``Δdata + Δalloc`` bounds its gain from above: the
candidate pairs of a pass are the pairs with the largest positive bound. Letters: P proposals,
K components (truncation), A active components, D features, Q moment features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixtures.distributions import allocation_bound

__all__ = ["child_statistics", "component_bounds", "merge_candidates", "summary_elbo"]


def summary_elbo(model, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                 entropy: Tensor) -> Tensor:
    """``L`` of the module docstring from statistics ``[..., K, ·]`` and the total entropy
    ``[...]`` (float64)."""
    family, prior = model.prior_family, model.prior()
    q = family.posterior(prior, counts, sum_x, sum_f)
    data = family.data_bound(q, prior, counts, sum_x, sum_f).sum(-1)
    return data + allocation_bound(counts, model.alpha) + entropy


def component_bounds(model, counts: Tensor, sum_x: Tensor, sum_f: Tensor) -> Tensor:
    """Each component's data term ``E_q log p(X | θ) − KL(q ‖ p)`` ``[P]`` for P sets of
    statistics ``[P]``, ``[P, D]``, ``[P, Q]`` (the prior repeated P times)."""
    family = model.prior_family
    prior = family.prior(counts.shape[0], model.num_features, model.beta0, model.nu0,
                         model.prior_scatter.double())
    q = family.posterior(prior, counts, sum_x, sum_f)
    return family.data_bound(q, prior, counts, sum_x, sum_f)


@torch.no_grad()
def merge_candidates(model, counts: Tensor, sum_x: Tensor, sum_f: Tensor, active: Tensor,
                     max_pairs: int) -> Tensor:
    """The pairs ``[M, 2]`` (j < k, component indices) of active components whose merge has the
    largest positive upper bound ``Δdata + Δalloc`` on its gain (at most ``max_pairs``)."""
    empty = torch.zeros(0, 2, dtype=torch.long, device=counts.device)
    if active.numel() < 2 or max_pairs < 1:
        return empty
    i, j = torch.triu_indices(active.numel(), active.numel(), 1, device=counts.device)
    a, b = active[i], active[j]  # a < b: active is sorted
    single = component_bounds(model, counts, sum_x, sum_f)  # [K]
    merged = component_bounds(model, counts[a] + counts[b], sum_x[a] + sum_x[b],
                              sum_f[a] + sum_f[b])
    rows = torch.arange(a.numel(), device=counts.device)
    new = counts.expand(a.numel(), -1).clone()  # [P, K]
    new[rows, a] = counts[a] + counts[b]
    new[rows, b] = 0.0
    alpha = model.alpha
    bound = (merged - single[a] - single[b]
             + allocation_bound(new, alpha) - allocation_bound(counts, alpha))
    top = bound.topk(min(max_pairs, bound.numel()))
    keep = top.values > 0
    return torch.stack([a[top.indices[keep]], b[top.indices[keep]]], -1)


@torch.no_grad()
def child_statistics(model, counts: Tensor, sum_x: Tensor, sum_f: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Statistics of two children for each of T parents, split along the parent's principal
    axis: means ``m ± 0.8 √λ₁ v₁``, covariance ``Σ − 0.64 λ₁ v₁ v₁ᵀ``, half the count each.
    Returned as ``[2T]``, ``[2T, D]``, ``[2T, Q]`` (children 2t, 2t + 1 of parent t): the
    exact moment features of those Gaussians (sigma points ``m ± √D L e_i``)."""
    family = model.prior_family
    d = model.num_features
    t = counts.shape[0]
    prior = family.prior(t, d, model.beta0, model.nu0, model.prior_scatter.double())
    q = family.posterior(prior, counts, sum_x, sum_f)
    cov = family.expected_covariance(q)  # [T, D, D]
    vals, vecs = torch.linalg.eigh(cov)
    top, axis = vals[:, -1].clamp_min(0), vecs[:, :, -1]  # [T], [T, D]
    step = 0.8 * top.sqrt()[:, None] * axis  # [T, D]
    means = torch.stack([q.mean + step, q.mean - step], 1).reshape(2 * t, d)
    child_cov = cov - 0.64 * top[:, None, None] * axis[:, :, None] * axis[:, None, :]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    floor = 1e-6 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
    chol = torch.linalg.cholesky(child_cov + floor[:, None, None] * eye)  # [T, D, D]
    chol = chol.repeat_interleave(2, 0)  # [2T, D, D]
    spread = math.sqrt(d) * chol.transpose(-1, -2)  # rows: √D L e_i
    sigma = torch.cat([means[:, None] + spread, means[:, None] - spread], 1)  # [2T, 2D, D]
    moments = model.cov.moment_features(sigma).mean(1)  # [2T, Q]
    half = (counts / 2).repeat_interleave(2)
    return half, half[:, None] * means, half[:, None] * moments
