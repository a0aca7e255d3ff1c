"""k-means++ seeding and Lloyd iterations in torch, on the data's device.

Used to initialise mixture models; no scikit-learn at run time. Distances are computed as
``‖x‖² − 2 x·c + ‖c‖²`` (one matrix product), in chunks of points so memory stays bounded.

Letters: N points, K centres, D features.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kmeans_plusplus", "kmeans", "assign"]

_CHUNK = 65536


def _sq_dist(x: Tensor, centres: Tensor) -> Tensor:
    """Squared distances ``[N, K]`` (clamped at 0 against round-off)."""
    d2 = x.square().sum(-1, keepdim=True) - 2.0 * x @ centres.T + centres.square().sum(-1)
    return d2.clamp_min_(0.0)


def assign(x: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest centre of every point: labels ``[N]`` and squared distances ``[N]``."""
    labels, dists = [], []
    for chunk in x.split(_CHUNK):
        d2 = _sq_dist(chunk, centres)
        dist, lab = d2.min(-1)
        labels.append(lab)
        dists.append(dist)
    return torch.cat(labels), torch.cat(dists)


def kmeans_plusplus(
    x: Tensor,
    num_clusters: int,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007) with greedy local trials.

    Like scikit-learn, each step draws ``2 + ⌊log K⌋`` candidates proportionally to the squared
    distance to the nearest chosen centre and keeps the one that lowers the potential most.

    Args:
        x: points ``[N, D]``.
        num_clusters: K ≤ N.
        generator: random generator on ``x``'s device, for reproducibility.

        return_indices: also return the rows' indices ``[K]`` (as scikit-learn's does).

    Returns:
        centres ``[K, D]`` (rows of ``x``), and their indices if asked.
    """
    n = x.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"k-means++ needs 1 ≤ K ≤ N, got K={num_clusters} for N={n} points.")
    trials = 2 + int(torch.log(torch.tensor(float(num_clusters))).item())
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centres, indices = [x[first]], [first]
    closest = _sq_dist(x, centres[0]).squeeze(-1)  # [N]
    for _ in range(1, num_clusters):
        total = closest.sum()
        if total <= 0:  # all remaining points coincide with a centre: pick any
            probs = torch.ones_like(closest)
        else:
            probs = closest / total
        cand = torch.multinomial(probs, trials, replacement=True, generator=generator)
        cand_d2 = torch.minimum(closest, _sq_dist(x, x[cand]).T)  # [T, N]
        best = cand_d2.sum(-1).argmin()
        centres.append(x[cand[best]].unsqueeze(0))
        indices.append(cand[best].reshape(1))
        closest = cand_d2[best]
    if return_indices:
        return torch.cat(centres), torch.cat(indices)
    return torch.cat(centres)


def kmeans(
    x: Tensor,
    num_clusters: int,
    num_iters: int = 20,
    generator: torch.Generator | None = None,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Lloyd's algorithm from k-means++ seeds.

    Empty clusters are re-seeded at the point farthest from its centre.

    Args:
        x: points ``[N, D]``.
        num_clusters: K.
        num_iters: maximum Lloyd iterations.
        generator: random generator for the seeding.
        tol: stop when no centre moves more than ``tol`` × the data's scale.

    Returns:
        centres ``[K, D]`` and labels ``[N]``.
    """
    centres = kmeans_plusplus(x, num_clusters, generator)
    scale = x.var(0, correction=0).sum().sqrt().clamp_min(1e-12)  # finite for N = 1
    labels, _ = assign(x, centres)
    for _ in range(num_iters):
        counts = torch.bincount(labels, minlength=num_clusters).to(x.dtype)  # [K]
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        new = sums / counts.clamp_min(1.0)[:, None]
        empty = counts == 0
        if bool(empty.any()):
            _, dists = assign(x, new[~empty])  # not to the empty clusters' zero placeholders
            far = dists.topk(int(empty.sum())).indices
            new[empty] = x[far]
        shift = (new - centres).norm(dim=-1).max()
        centres = new
        labels, _ = assign(x, centres)
        if shift <= tol * scale:
            break
    return centres, labels
