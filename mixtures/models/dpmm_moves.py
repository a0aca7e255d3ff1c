"""Global moves for a :class:`~mixtures.models.DPMM`: sort, merge, prune and re-seed.

Coordinate ascent only moves statistics a little at a time, so a cluster that k-means split in
two, or an outlying cluster no component covers, can persist for hundreds of steps. Each move
here proposes new statistics and is **accepted only if the full-data ELBO increases**, so the
ELBO stays monotone (as in bnpy's merge and birth moves):

- *sort*: order the components by decreasing expected count (the stick-breaking prior favours
  large components first);
- *merge*: for the pairs whose responsibilities overlap most, add one component's statistics to
  the other's;
- *prune*: components with fewer than ``min_count`` expected points are emptied (reset to the
  prior; they still count as components of the truncation);
- *reseed*: an empty component takes the points that the model explains worst (the nearest
  neighbours of the worst point), removed from the components that held them.

All moves work on the training points ``x`` ``[N, D]`` (every DDP rank holds the same ones and
takes the same decisions). Letters: N points, K components, D features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixtures.models.dpmm import DPMM

__all__ = ["global_moves"]


def _params(model: DPMM) -> tuple[Tensor, Tensor, Tensor]:
    return model.counts.data, model.sum_x.data, model.sum_f.data


def _try(model: DPMM, x: Tensor, proposal: tuple[Tensor, Tensor, Tensor],
         current: float) -> float | None:
    """Load ``proposal``; keep it and return its ELBO if that beats ``current``, else revert."""
    saved = tuple(p.clone() for p in _params(model))
    for p, v in zip(_params(model), proposal, strict=True):
        p.copy_(v.to(p.dtype))
    model.counts.data.clamp_(min=0)
    try:
        elbo = float(model.elbo(x))
    except torch.linalg.LinAlgError:  # an inconsistent proposal (scatter not positive definite)
        elbo = -float("inf")
    if elbo > current:
        return elbo
    for p, v in zip(_params(model), saved, strict=True):
        p.copy_(v)
    return None


@torch.no_grad()
def global_moves(model: DPMM, x: Tensor, max_merges: int = 5, min_count: float = 1.0,
                 reseed_points: int | None = None) -> dict[str, int]:
    """Try sort, merge, prune and re-seed moves in turn; returns the number accepted of each.

    Args:
        model: an initialised DPMM.
        x: the training points (the whole data set the statistics stand for).
        max_merges: candidate pairs tried (most overlapping first).
        min_count: expected count below which a component is empty.
        reseed_points: points given to a re-seeded component (default ``max(2D, 10)``).
    """
    accepted = {"sort": 0, "merge": 0, "prune": 0, "reseed": 0}
    elbo = float(model.elbo(x))
    counts, sum_x, sum_f = _params(model)

    order = counts.argsort(descending=True)
    if not bool((order == torch.arange(order.numel(), device=order.device)).all()):
        new = _try(model, x, (counts[order], sum_x[order], sum_f[order]), elbo)
        if new is not None:
            elbo, accepted["sort"] = new, 1

    # merge: the pairs whose responsibilities overlap most, relative to their sizes
    resp = model.predict_proba(x)  # [N, K]
    mass = resp.sum(0)
    overlap = (resp.T @ resp) / (mass[:, None] * mass[None, :]).clamp_min(1e-12).sqrt()
    overlap = overlap.triu(1)
    big = mass >= min_count
    overlap = overlap * (big[:, None] & big[None, :])
    used: set[int] = set()
    for flat in overlap.flatten().argsort(descending=True)[:max_merges].tolist():
        j, k = divmod(flat, overlap.shape[1])
        if overlap[j, k] <= 0 or j in used or k in used:
            continue
        counts, sum_x, sum_f = (p.clone() for p in _params(model))
        for p in (counts, sum_x, sum_f):
            p[j] += p[k]
            p[k] = 0
        new = _try(model, x, (counts, sum_x, sum_f), elbo)
        if new is not None:
            elbo, accepted["merge"] = new, accepted["merge"] + 1
            used.update((j, k))

    # prune: empty the components that carry almost no points
    counts, sum_x, sum_f = (p.clone() for p in _params(model))
    small = (counts < min_count) & (counts != 0)
    if bool(small.any()):
        for p in (counts, sum_x, sum_f):
            p[small] = 0
        new = _try(model, x, (counts, sum_x, sum_f), elbo)
        if new is not None:
            elbo, accepted["prune"] = new, int(small.sum())

    # re-seed one empty component at the worst-explained points
    empty = (_params(model)[0] < min_count).nonzero().flatten()
    if empty.numel() > 0:
        m = min(reseed_points or max(2 * model.num_features, 10), x.shape[0])
        resp, log_norm = model.local_step(x)
        worst = int(log_norm.argmin())
        xs = x.to(resp.dtype)
        group = (xs - xs[worst]).square().sum(-1).topk(m, largest=False).indices  # [m]
        taken = torch.zeros_like(resp[:, 0])
        taken[group] = 1.0
        removed = model.statistics(x, resp * taken[:, None])  # what the group gave each one
        target = int(empty[0])
        onehot = torch.zeros_like(resp)
        onehot[group, target] = 1.0
        added = model.statistics(x, onehot)
        proposal = tuple(p.double() - r + a for p, r, a in
                         zip(_params(model), removed, added, strict=True))
        new = _try(model, x, proposal, elbo)
        if new is not None:
            elbo, accepted["reseed"] = new, 1
    return accepted
