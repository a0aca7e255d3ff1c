"""k-means++ seeding and Lloyd iterations in torch, on the data's device and in its dtype.

Used to initialise mixture models; no scikit-learn at run time. What makes it fast:

- **Distances by one matrix product per block of points.** With μ the data mean and centres
  kept relative to it (``c' = c − μ``, float64), ``‖x − c‖² = ‖x − μ‖² − 2 x·c' + (‖c'‖² +
  2 μ·c')``: ``‖x − μ‖²`` is computed once, the rest is one ``addmm`` of a block of points
  (sized to stay in cache on a CPU) into a reused buffer. Points are never copied to float64;
  data far from the origin relative to their spread are centred once, in their own dtype (as
  scikit-learn does), so the expansion keeps its precision.
- **Nearest centre by an integer minimum.** torch's ``argmin`` along a short last dimension is
  several times slower than a plain ``amin``; :func:`_nearest` writes the centre's index into
  the lowest bits of each (non-negative) distance's bit pattern and takes one integer ``amin``
  (float32: distances keep 23 − ⌈log₂ K⌉ mantissa bits, K ≤ 64; exact ``min`` otherwise).
- **Sums in float64 from blocks.** Each block's cluster sums are formed by ``index_add_`` in
  the data's dtype (at most a block of points each) and added up in float64.
- **Seeding and a first Lloyd run on a subsample.** :func:`kmeans` seeds with k-means++ (greedy
  local trials, as scikit-learn) on ``_SAMPLE`` random points and runs Lloyd there first; Lloyd
  on all points then starts near its fixed point and needs few passes over the data — none
  when the subsample has ``_FULL_SKIP_PER_CLUSTER`` points per cluster: its centres are then as
  good to a fraction of a percent of inertia, and one pass labels all points.
- **Restarts together.** :func:`kmeans_restarts` runs Lloyd for R restarts with one
  ``[rows, R·K]`` product per block; a restart that has converged is frozen, so each restart
  gives what it gives alone.

Convergence is scikit-learn's: stop when the squared centre shifts sum to at most ``tol`` × the
mean per-feature variance of the data (labels that no longer change move no centre).

Letters: N points, M subsample points, R restarts, K centres, D features, T trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["assign", "kmeans", "kmeans_plusplus", "kmeans_restarts"]

#: points :func:`kmeans` seeds on and runs its first Lloyd iterations on
_SAMPLE = 32768
_SAMPLE_TRIES = 3
#: a subsample of M points gets min(8, max(3, 2¹⁶ // M)) tries: the seeding's cost is ∝ tries·M,
#: and small subsamples need more (separated blobs, seeds 0–7, clusters merged by k-means:
#: 100k × 16 × 16 (M = 6250) 3 tries 3/8, 5 tries 1/8, 8 tries 0/8; 20k × 16 × 16 4/8 → 0/8)
_SAMPLE_TRY_BUDGET, _SAMPLE_MAX_TRIES = 2**16, 8
#: Lloyd iterations every subsample try gets before the best one alone goes on: a merged
#: cluster shows in the inertia by then (seeds 0–7 as above: the same clusters found as with
#: every try run to convergence, 0/8 merged at 100k, 1/8 at 20k; k-means 47 → 22 ms at 100k)
_SAMPLE_SCREEN_ITERS = 3
_SAMPLE_FRACTION = 16
_SAMPLE_PER_CLUSTER = 32
_SAMPLE_RTOL = 1e-5
_RTOL = 1e-4
#: with this many subsample points per cluster, Lloyd on all points is skipped by default: the
#: subsample's centres are then within ~K/M of the full data's (excess inertia ≤ 0.3% measured
#: on overlapping blobs, 0.01% on separated ones) and one labelling pass remains
_FULL_SKIP_PER_CLUSTER = 1000
#: elements of a ``[rows, K]`` block of distances: in cache on a CPU, a large batch on a GPU
_BLOCK_CPU, _BLOCK_GPU = 2**18, 2**26
#: float32 distances give the centre index at most this many low mantissa bits
_MAX_INDEX_BITS_F32 = 6


class _Points(NamedTuple):
    """Points ready for distance products.

    ``x − shift`` are the points relative to the data mean ``mean``; centres are kept in the
    same coordinates (float64).
    """

    x: Tensor  # [N, D] in the data's dtype (a centred copy when far from the origin)
    shift: Tensor  # [D] float64: the mean, or 0 for the centred copy
    mean: Tensor  # [D] float64: the data mean
    sqn: Tensor  # [N] ‖x − shift‖², data dtype
    var: Tensor  # [] float64: mean per-feature variance (scikit-learn's tolerance scale)

    def take(self, idx: Tensor) -> _Points:
        """The points ``idx`` ``[M]`` (a copy of M rows)."""
        return _Points(self.x[idx], self.shift, self.mean, self.sqn[idx], self.var)


def _rows(x: Tensor, k: int) -> int:
    """Points per block of distances to K centres (per restart)."""
    elems = _BLOCK_CPU if x.device.type == "cpu" else _BLOCK_GPU
    return max(256, elems // max(k, 1))


def _prepare(x: Tensor) -> _Points:
    """Mean, mean variance and ``‖x − μ‖²`` of the points ``[N, D]`` in two passes; a centred
    copy (in the data's dtype) when ``‖μ‖² · eps > 2e-6 · Σ var`` (offset ≳ 4 spreads in
    float32), where the expanded distances would lose their precision."""
    n, d = x.shape
    mean = x.sum(0).double() / n  # [D]
    mean_x = mean.to(x.dtype)
    sqn = torch.empty(n, dtype=x.dtype, device=x.device)
    sq_sum = torch.zeros(d, dtype=torch.float64, device=x.device)
    rows = _rows(x, d)
    for start in range(0, n, rows):
        dev = x[start:start + rows] - mean_x  # [rows, D]
        dev.square_()
        sq_sum += dev.sum(0)
        torch.sum(dev, 1, out=sqn[start:start + dev.shape[0]])
    var = sq_sum / n  # [D]
    shift = mean
    if bool(mean.square().sum() * torch.finfo(x.dtype).eps > 2e-6 * var.sum()):
        x, shift = x - mean_x, torch.zeros_like(mean)
    return _Points(x, shift, mean, sqn, var.mean())


def _nearest(scores: Tensor, labels: Tensor) -> Tensor:
    """Nearest of K centres from squared distances ``scores`` ``[n, R, K]`` (overwritten).

    Writes labels ``[n, R]`` into ``labels`` and returns the distances ``[n, R]`` (for float32
    with packed indices, rounded down to 23 − ⌈log₂ K⌉ mantissa bits; negatives from round-off
    count as their magnitude).
    """
    k = scores.shape[-1]
    bits = max(1, (k - 1).bit_length())
    if scores.dtype == torch.float64 or (scores.dtype == torch.float32
                                         and bits <= _MAX_INDEX_BITS_F32):
        itype = torch.int64 if scores.dtype == torch.float64 else torch.int32
        mask = (1 << bits) - 1
        sign = torch.iinfo(itype).max  # clears the sign bit: |d²|, and -0.0 → +0.0
        key = scores.view(itype)
        key.bitwise_and_(sign & ~mask).bitwise_or_(torch.arange(k, device=key.device,
                                                                dtype=itype))
        best = key.amin(-1)  # [n, R]
        labels.copy_(best & mask)
        return (best & ~mask).view(scores.dtype)
    dists = torch.empty(labels.shape, dtype=scores.dtype, device=scores.device)
    torch.min(scores, -1, out=(dists, labels))
    return dists.abs_()


def _pass(p: _Points, centres: Tensor, labels: Tensor, sums: bool = True,
          dists: Tensor | None = None) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """One pass over the points: nearest centre of every point for R sets of K centres.

    Args:
        p: the points.
        centres: ``[R, K, D]`` float64, relative to the data mean.
        labels: ``[N, R]`` int64, written.
        sums: also return every cluster's sum of points ``[R, K, D]`` (float64, in ``p.x``'s
            coordinates) and its count ``[R, K]`` (float64); else None for both.
        dists: ``[N, R]``, written with the squared distances to the nearest centre if given.

    Returns:
        sums, counts and the inertia ``[R]`` (float64) of the labels' centres.
    """
    r, k, d = centres.shape
    n = p.x.shape[0]
    flat = centres.reshape(r * k, d)
    weight = (-2.0 * flat).T.to(p.x.dtype)  # [D, RK]
    bias = (flat.square().sum(-1) + 2.0 * flat @ p.shift).to(p.x.dtype)  # [RK]
    rows = min(n, _rows(p.x, k))  # independent of R: each restart sums the same blocks
    scores = torch.empty(rows, r * k, dtype=p.x.dtype, device=p.x.device)
    inertia = torch.zeros(r, dtype=torch.float64, device=p.x.device)
    if sums:
        block = torch.empty(r * k, d, dtype=p.x.dtype, device=p.x.device)
        total = torch.zeros(r * k, d, dtype=torch.float64, device=p.x.device)
        counts = torch.zeros(r * k, dtype=torch.int64, device=p.x.device)
        offsets = torch.arange(0, r * k, k, device=p.x.device)  # [R]
    for start in range(0, n, rows):
        xb = p.x[start:start + rows]  # [b, D]
        b = xb.shape[0]
        s = torch.addmm(bias, xb, weight, out=scores[:b])
        s.add_(p.sqn[start:start + b, None])
        lab = labels[start:start + b]  # [b, R]
        near = _nearest(s.view(b, r, k), lab)
        inertia += near.sum(0)
        if dists is not None:
            dists[start:start + b] = near
        if sums:
            glob = lab + offsets  # [b, R] rows of the flat [RK] clusters
            block.zero_()
            for j in range(r):
                block.index_add_(0, glob[:, j], xb)
            total += block
            counts += torch.bincount(glob.flatten(), minlength=r * k)
    if sums:
        return total.reshape(r, k, d), counts.reshape(r, k).double(), inertia
    return None, None, inertia


def _distances(p: _Points, centres: Tensor, out: Tensor | None = None) -> Tensor:
    """Squared distances ``[T, N]`` of every point to centres ``[T, D]`` (float64, relative to
    the data mean), clamped at 0."""
    bias = (centres.square().sum(-1) + 2.0 * centres @ p.shift).to(p.x.dtype)  # [T]
    out = torch.addmm(bias[:, None], centres.to(p.x.dtype), p.x.T, alpha=-2.0, out=out)
    return out.add_(p.sqn).clamp_min_(0.0)


def _relative(p: _Points, rows: Tensor) -> Tensor:
    """Rows of ``p.x`` ``[T, D]`` as centres: float64, relative to the data mean."""
    return rows.double() - p.shift


def _plusplus(p: _Points, k: int, generator: torch.Generator | None, tries: int = 1) -> Tensor:
    """Indices ``[tries, K]`` of ``tries`` independent k-means++ seedings in ``p.x``, with
    greedy local trials, all tries in the same operations.

    Each step draws ``2 + ⌊log K⌉`` candidates per try by inverse-CDF sampling (one cumulative
    sum per try) and keeps the one that lowers that try's potential most; the running nearest
    distances live in one ``[tries, N]`` buffer and the candidates' distances in one reused
    ``[tries·T, N]`` buffer (one matrix product for every try's candidates). No host
    synchronisation: a zero potential (all points on seeds) picks the last point. With
    ``tries=1`` the draws are those of one seeding alone.
    """
    n = p.x.shape[0]
    dev = p.x.device
    trials = 2 + int(math.log(k))
    rows = torch.arange(tries, device=dev)
    idx = torch.empty(tries, k, dtype=torch.int64, device=dev)
    idx[:, 0] = torch.randint(n, (tries,), generator=generator, device=dev)
    closest = _distances(p, _relative(p, p.x[idx[:, 0]]))  # [tries, N]
    closest.scatter_(1, idx[:, :1], 0.0)
    buf = torch.empty(tries * trials, n, dtype=p.x.dtype, device=dev)  # [tries·T, N]
    for i in range(1, k):
        cum = torch.cumsum(closest, 1, dtype=torch.float64)  # [tries, N]
        u = torch.rand(tries, trials, generator=generator, dtype=torch.float64, device=dev)
        cand = torch.searchsorted(cum, u.mul_(cum[:, -1:]), right=True).clamp_max_(n - 1)
        dist = _distances(p, _relative(p, p.x[cand.flatten()]), out=buf)
        pot = torch.minimum(dist.view(tries, trials, n), closest[:, None], out=buf.view(
            tries, trials, n))  # [tries, T, N]
        best = pot.sum(-1).argmin(-1)  # [tries]
        closest.copy_(pot[rows, best])
        idx[:, i] = cand[rows, best]
        closest.scatter_(1, idx[:, i:i + 1], 0.0)
    return idx


def _reseed_empty(p: _Points, new: Tensor, empty: Tensor) -> None:
    """Move the empty clusters ``[K]`` (bool) of centres ``new`` ``[K, D]`` onto the points
    farthest from the non-empty centres (in place)."""
    labels = torch.empty(p.x.shape[0], 1, dtype=torch.int64, device=p.x.device)
    dists = torch.empty(p.x.shape[0], 1, dtype=p.x.dtype, device=p.x.device)
    _pass(p, new[~empty][None], labels, sums=False, dists=dists)
    far = dists[:, 0].topk(int(empty.sum())).indices
    new[empty] = _relative(p, p.x[far])


def _frozen(done: Tensor, new: Tensor, centres: Tensor, limit: Tensor, previous: Tensor,
            inertia: Tensor, rtol: float) -> Tensor:
    """Restarts ``[R]`` that stop: already stopped, centres ``[R, K, D]`` moved by at most
    ``limit`` (sum of squares), or (``rtol`` > 0) inertia ``[R]`` gained at most ``rtol``."""
    frozen = done | ((new - centres).square().sum((-1, -2)) <= limit)
    if rtol > 0:
        frozen |= previous - inertia <= rtol * inertia
    return frozen


def _lloyd(p: _Points, centres: Tensor, num_iters: int, tol: float,
           rtol: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Lloyd iterations for R restarts at once.

    Args:
        p: the points.
        centres: ``[R, K, D]`` float64 start, relative to the data mean.
        num_iters: maximum centre updates.
        tol: a restart stops (is frozen) when its squared centre shifts sum to ≤ ``tol`` ×
            the mean variance,
        rtol: or when a pass lowers its inertia by ≤ ``rtol`` × the inertia.

    Returns:
        centres ``[R, K, D]``, labels ``[N, R]`` (the nearest-centre assignment of them) and
        their inertia ``[R]``.
    """
    r = centres.shape[0]
    labels = torch.empty(p.x.shape[0], r, dtype=torch.int64, device=p.x.device)
    done = torch.zeros(r, dtype=torch.bool, device=p.x.device)
    limit = tol * p.var
    previous = torch.full((r,), math.inf, dtype=torch.float64, device=p.x.device)
    for it in range(num_iters + 1):
        sums, counts, inertia = _pass(p, centres, labels, sums=it < num_iters)
        if sums is None or counts is None:
            break
        new = sums / counts.clamp_min(1.0)[..., None] - p.shift  # [R, K, D]
        empty = (counts == 0) & ~done[:, None]  # [R, K]
        frozen = _frozen(done, new, centres, limit, previous, inertia, rtol)  # [R]
        any_empty, all_frozen = torch.stack((empty.any(), frozen.all())).tolist()  # one sync
        if any_empty:  # rare: a pass over the points per restart concerned
            for j in empty.any(-1).nonzero().flatten().tolist():
                _reseed_empty(p, new[j], empty[j])
            frozen = _frozen(done, new, centres, limit, previous, inertia, rtol)
            all_frozen = bool(frozen.all())
        previous = inertia
        centres = torch.where(frozen[:, None, None], centres, new)
        if all_frozen:
            break
        done = frozen
    return centres, labels, inertia


def kmeans_restarts(
    x: Tensor,
    num_clusters: int,
    generators: Sequence[torch.Generator | None],
    num_iters: int = 100,
    tol: float = 1e-4,
    full_iters: int | None = None,
) -> tuple[Tensor, Tensor]:
    """R k-means runs, Lloyd's iterations batched over restarts.

    With N ≤ M (``_SAMPLE`` points, at least 16 K), each restart draws ``_SAMPLE_TRIES``
    k-means++ seedings, refines each by Lloyd and keeps the one of least inertia: the whole
    run, for all restarts and tries at once. With N > M, each restart draws M points (with
    replacement) from its generator and seeds them ``min(8, max(3, 2¹⁶ // M))`` times
    (``_SAMPLE_TRY_BUDGET``); every try gets ``_SAMPLE_SCREEN_ITERS`` Lloyd iterations there,
    the one of least inertia goes on alone (stopping also when a pass gains less than
    ``_SAMPLE_RTOL`` of the inertia), and Lloyd on all points, all restarts at once, takes over
    from it, stopping also when a pass gains less than ``_RTOL``.
    Restart r uses ``generators[r]`` alone and a converged restart is frozen, so it gives what
    :func:`kmeans` gives with that generator.

    Args:
        x: points ``[N, D]``, any float dtype (not copied to float64).
        num_clusters: K ≤ N.
        generators: one random generator (on ``x``'s device) per restart, or None (global).
        num_iters: maximum Lloyd iterations (centre updates), on the sample and on all points.
        tol: scikit-learn's: stop when the squared centre shifts sum to ≤ ``tol`` × the mean
            per-feature variance of ``x``.
        full_iters: maximum Lloyd iterations on all points after the subsample's; 0 returns
            the nearest-centre labels of the subsample's centres (one pass over the points).
            Default: 0 when the subsample holds at least ``_FULL_SKIP_PER_CLUSTER`` points per
            cluster, else ``num_iters``.

    Returns:
        centres ``[R, K, D]`` (in ``x``'s dtype) and labels ``[N, R]`` (nearest centre), the
        clusters of each restart in order of decreasing size.
    """
    n, d = x.shape
    k, r, tries = num_clusters, len(generators), _SAMPLE_TRIES
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 ≤ K ≤ N, got K={k} for N={n} points.")
    p = _prepare(x)
    m = max(_SAMPLE_PER_CLUSTER * k, min(_SAMPLE, n // _SAMPLE_FRACTION, 2**24 // max(d, 1)))
    if n <= m:
        seeds = torch.cat([_relative(p, p.x[_plusplus(p, k, gen, tries)])
                           for gen in generators])  # [R·tries, K, D]
        centres, labels, inertia = _lloyd(p, seeds, num_iters, tol)
        best = inertia.reshape(r, tries).argmin(-1) + torch.arange(0, r * tries, tries,
                                                                   device=x.device)  # [R]
        centres, labels = centres[best], labels[:, best]
    else:
        starts = []
        tries = min(_SAMPLE_MAX_TRIES, max(tries, _SAMPLE_TRY_BUDGET // m))
        screen = min(_SAMPLE_SCREEN_ITERS, num_iters)
        for gen in generators:
            sample = p.take(torch.randint(n, (m,), generator=gen, device=x.device))
            seeds = _relative(sample, sample.x[_plusplus(sample, k, gen, tries)])  # [tries, K, D]
            cand, _, inertia = _lloyd(sample, seeds, screen, tol, _SAMPLE_RTOL)
            best = cand[inertia.argmin()][None]  # [1, K, D]
            starts.append(_lloyd(sample, best, num_iters - screen, tol, _SAMPLE_RTOL)[0][0])
        if full_iters is None:
            full_iters = 0 if m >= _FULL_SKIP_PER_CLUSTER * k else num_iters
        centres, labels, _ = _lloyd(p, torch.stack(starts), full_iters, tol, _RTOL)
    # canonical order, largest cluster first (a stick-breaking prior favours it)
    offsets = torch.arange(0, r * k, k, device=x.device)  # [R]
    sizes = torch.bincount((labels + offsets).flatten(), minlength=r * k).reshape(r, k)
    order = sizes.argsort(dim=-1, descending=True, stable=True)  # [R, K]
    rank = order.argsort(dim=-1)  # [R, K]: the new label of each old one
    labels = rank.flatten()[labels + offsets]
    centres = centres.gather(1, order[..., None].expand(-1, -1, d))
    return (centres + p.mean).to(x.dtype), labels


def kmeans(
    x: Tensor,
    num_clusters: int,
    num_iters: int = 20,
    generator: torch.Generator | None = None,
    tol: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Lloyd's algorithm from k-means++ seeds (seeded on a subsample when N is large).

    Empty clusters are re-seeded at the points farthest from the other centres.

    Args:
        x: points ``[N, D]``, any float dtype; computed in it (not copied to float64).
        num_clusters: K ≤ N.
        num_iters: maximum Lloyd iterations.
        generator: random generator on ``x``'s device, for reproducibility.
        tol: scikit-learn's: stop when the squared centre shifts sum to ≤ ``tol`` × the mean
            per-feature variance of ``x``.

    Returns:
        centres ``[K, D]`` and labels ``[N]`` (the nearest-centre assignment of the centres).
    """
    centres, labels = kmeans_restarts(x, num_clusters, [generator], num_iters, tol)
    return centres[0], labels[:, 0]


def kmeans_plusplus(
    x: Tensor,
    num_clusters: int,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007) with greedy local trials, on all points.

    Like scikit-learn, each step draws ``2 + ⌊log K⌋`` candidates proportionally to the squared
    distance to the nearest chosen centre and keeps the one that lowers the potential most.

    Args:
        x: points ``[N, D]``, any float dtype.
        num_clusters: K ≤ N.
        generator: random generator on ``x``'s device, for reproducibility.
        return_indices: also return the rows' indices ``[K]`` (as scikit-learn's does).

    Returns:
        centres ``[K, D]`` (rows of ``x``), and their indices if asked.
    """
    n = x.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"k-means++ needs 1 ≤ K ≤ N, got K={num_clusters} for N={n} points.")
    idx = _plusplus(_prepare(x), num_clusters, generator)[0]
    if return_indices:
        return x[idx], idx
    return x[idx]


def assign(x: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest centre of every point: labels ``[N]`` and squared distances ``[N]``.

    Args:
        x: points ``[N, D]``.
        centres: ``[K, D]``.

    Returns:
        labels ``[N]`` (int64) and squared distances ``[N]`` in ``x``'s dtype (float32: to
        about 2⁻¹⁷ relative).
    """
    p = _prepare(x)
    labels = torch.empty(x.shape[0], 1, dtype=torch.int64, device=x.device)
    dists = torch.empty(x.shape[0], 1, dtype=x.dtype, device=x.device)
    _pass(p, (centres.double() - p.mean)[None], labels, sums=False, dists=dists)
    return labels[:, 0], dists[:, 0]
