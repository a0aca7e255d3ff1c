"""Initialisation of every mixture model: one set of methods, one spelling (scikit-learn's).

``init`` / ``init_params`` is one of :data:`INIT_METHODS`:

- ``kmeans``: one-hot labels of a k-means run (k-means++ seeds refined by Lloyd iterations);
- ``k-means++``: the k-means++ seed points only;
- ``random``: uniform random responsibilities, normalised;
- ``random_from_data``: K distinct random points.

The seed-based methods (``k-means++``, ``random_from_data``) put, as in scikit-learn, a one-hot
responsibility on the K seed points alone — right for EM and coordinate ascent, whose first
M-step moves them. A gradient-trained model asks for ``assign_all=True``: every point is then
assigned to its nearest seed, so the starting covariances are those of the seeds' clusters.
Given means (scikit-learn's ``means_init``) are applied by the model after this step.

Letters: N points, R restarts, K components, D features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixtures.distributions import CovarianceType
from mixtures.models.kmeans import assign, kmeans_plusplus, kmeans_restarts

__all__ = ["INIT_METHODS", "check_init", "cluster_moments", "initial_responsibilities",
           "kmeans_labels"]

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def check_init(method: str, kmeans_iters: int = 1, name: str = "init") -> None:
    """Raise a clear error for an unknown method or a non-positive iteration count."""
    if method not in INIT_METHODS:
        raise ValueError(f"{name}={method!r} is unknown (an unknown init method); choose one "
                         f"of {INIT_METHODS}.")
    if not (isinstance(kmeans_iters, int) and kmeans_iters >= 0):
        raise ValueError(f"kmeans_iters must be an integer ≥ 0, got {kmeans_iters!r}.")


@torch.no_grad()
def kmeans_labels(x: Tensor, num_components: int, num_restarts: int = 1, seed: int = 0,
                  kmeans_iters: int = 100, generator: torch.Generator | None = None) -> Tensor:
    """The hard labels ``[N, R]`` (int64) of ``init="kmeans"``: restart r seeds with
    ``seed + r`` (or ``generator`` alone, R = 1); :func:`initial_responsibilities` one-hot
    encodes them. A model that takes labels directly saves the ``[N, R, K]`` tensor."""
    if generator is not None and num_restarts != 1:
        raise ValueError("a generator serves one restart; pass seed for several.")
    gens = [generator or torch.Generator(device=x.device).manual_seed(seed + r)
            for r in range(num_restarts)]
    return kmeans_restarts(x, num_components, gens, kmeans_iters)[1]


@torch.no_grad()
def initial_responsibilities(
    x: Tensor,
    num_components: int,
    num_restarts: int = 1,
    method: str = "kmeans",
    seed: int = 0,
    kmeans_iters: int = 100,
    assign_all: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Initial responsibilities ``[N, R, K]`` with scikit-learn's meaning of ``init_params``.

    Args:
        x: training points ``[N, D]``.
        num_components: K ≤ N.
        num_restarts: R; restart r uses seed ``seed + r`` (a loop over restarts, not points).
        method: one of :data:`INIT_METHODS`.
        seed: base seed.
        kmeans_iters: Lloyd iterations of ``kmeans``.
        assign_all: for ``k-means++`` / ``random_from_data``, assign every point to its nearest
            seed (hard labels) instead of marking only the seeds.
        generator: use this generator (on ``x``'s device) instead of seeding one; R must be 1.
    """
    check_init(method, kmeans_iters)
    n, k = x.shape[0], num_components
    if k > n:
        raise ValueError(
            f"num_components={k} exceeds the number of training points ({n}); lower "
            "the number of components or supply more data."
        )
    if generator is not None and num_restarts != 1:
        raise ValueError("a generator serves one restart; pass seed for several.")
    resp = torch.zeros(n, num_restarts, k, dtype=x.dtype, device=x.device)
    if method == "kmeans":  # Lloyd for all restarts at once, each from its own seeds
        labels = kmeans_labels(x, k, num_restarts, seed, kmeans_iters, generator)  # [N, R]
        return resp.scatter_(2, labels[..., None], 1.0)
    gens = [generator or torch.Generator(device=x.device).manual_seed(seed + r)
            for r in range(num_restarts)]
    rows, arange = torch.arange(n, device=x.device), torch.arange(k, device=x.device)
    for r, gen in enumerate(gens):
        if method == "random":
            u = torch.rand(n, k, generator=gen, device=x.device, dtype=x.dtype)
            resp[:, r] = u / u.sum(-1, keepdim=True)
            continue
        if method == "k-means++":
            seeds, idx = kmeans_plusplus(x, k, gen, return_indices=True)
        else:  # random_from_data
            idx = torch.randperm(n, generator=gen, device=x.device)[:k]
            seeds = x[idx]
        if assign_all:
            resp[rows, r, assign(x, seeds)[0]] = 1.0
        else:
            resp[idx, r, arange] = 1.0
    return resp


@torch.no_grad()
def cluster_moments(x: Tensor, resp: Tensor, covariance: CovarianceType,
                    reg_covar: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted counts ``[K]``, means ``[K, D]`` and raw covariances ``[K or 1, P]`` of the
    clusters given by responsibilities ``resp`` ``[N, K]``, by the covariance type's own
    moment estimate (float64, centred on the data mean for conditioning)."""
    x = x.double()
    resp = resp.double()
    shift = x.mean(0)
    xc = x - shift
    counts = resp.sum(0) + 10 * torch.finfo(torch.float64).eps  # [K]
    sum_x = resp.T @ xc
    feats = covariance.moment_features(xc)  # [N, Q]
    sum_f = resp.sum(-1, keepdim=True).T @ feats if covariance.shared else resp.T @ feats
    means_c, raw = covariance.estimate(counts, sum_x, sum_f, reg_covar)
    return counts, means_c + shift, raw
