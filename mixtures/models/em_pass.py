"""The E-step pass of exact EM: one read of each chunk of points gives all statistics.

:class:`EStepPass` is the part of :class:`~mixtures.models.em.GaussianMixtureEM` that reads
the data. Each chunk's design matrix ``G = [1 | x | F(x)]`` ``[n, 1 + D + Q]`` scores all
points against all R·K components with one matrix product, ``log π_k N(x | μ_k, Σ_k) = G ·
[c_k, b_k, A_k]`` (the exponential-family form of :func:`mixtures.distributions.expfam_log_prob`),
and after the softmax one more product ``Gᵀ r`` gives every statistic at once (counts, Σ r x,
Σ r F(x)). The pass returns these *sums* accumulated in float64 (:class:`EMStatistics`, with
Σ log-likelihood), so statistics from mini-batches or DDP ranks add up to exactly the
full-batch ones before the M-step.

Letters: N points, R restarts, K components, D features, Q moment features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mixtures.distributions import normalize_log_prob

__all__ = ["CHUNK_ELEMENTS", "EMStatistics", "EStepPass"]

#: elements per chunk of the E-step's working set (design matrix and scores): on a CPU small
#: enough that a chunk stays in cache between its two matrix products, which then run at ~85%
#: of the large-GEMM rate (N = 800k, D = K = 32, 2 cores, fastest of 10 loops: 0.53 / 0.47 /
#: 0.45 / 0.56 s per iteration at 2¹⁹ / 2²⁰ / 2²¹ / 2²², i.e. 780 / 1560 / 3120 / 6230 rows);
#: large on a GPU, where kernel launches cost more than memory traffic.
CHUNK_ELEMENTS = {"cpu": 2**21, "cuda": 2**26}


@dataclass
class EMStatistics:
    """Sufficient statistics of a set of points (float64 sums; add them to combine batches).

    Attributes:
        counts: ``Σ_n r_nk`` ``[R, K]``.
        sum_x: ``Σ_n r_nk (x_n − shift)`` ``[R, K, D]``.
        sum_f: ``Σ_n r_nk F(x_n − shift)`` ``[R, K, Q]`` (shared covariance types: only the
            total over components, ``[R, 1, Q]``).
        log_likelihood: ``Σ_n log p(x_n)`` ``[R]``.
        num_points: N ``[]``.
    """

    counts: Tensor
    sum_x: Tensor
    sum_f: Tensor
    log_likelihood: Tensor
    num_points: Tensor

    def __add__(self, other: EMStatistics) -> EMStatistics:
        return EMStatistics(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(),
                                                      strict=True)))

    def as_tuple(self) -> tuple[Tensor, ...]:
        return (self.counts, self.sum_x, self.sum_f, self.log_likelihood, self.num_points)


class EStepPass:
    """The data-reading half of EM, mixed into :class:`~mixtures.models.em.GaussianMixtureEM`.

    The host class provides ``num_restarts``, ``num_components``, ``num_features``, ``cov``
    (a :class:`~mixtures.distributions.CovarianceType`), the ``shift`` buffer,
    ``chunk_elements``, ``_coefficients()`` (quadratic, linear and constant terms of every
    component's score) and ``_check(x)``.
    """

    # -- the design matrix G = [1 | x − shift | F(x − shift)] of a chunk --------------------
    def _width(self) -> int:
        """Columns of the design matrix, ``1 + D + Q``."""
        return 1 + self.num_features + self.cov.feature_size(self.num_features)

    def _chunk_rows(self, x: Tensor) -> int:
        width = self._width() + 3 * self.num_restarts * self.num_components
        budget = self.chunk_elements or CHUNK_ELEMENTS.get(x.device.type, 2**24)
        return max(1, min(x.shape[0], max(256, budget // width)))

    def _design_buffer(self, x: Tensor) -> Tensor:
        """An uninitialised design matrix for the largest chunk, ``[rows, 1 + D + Q]``, with
        its column of ones."""
        buffer = x.new_empty(self._chunk_rows(x), self._width())
        buffer[:, 0] = 1.0
        return buffer

    def _design(self, chunk: Tensor, buffer: Tensor) -> Tensor:
        """Fill the first n rows of ``buffer`` (from :meth:`_design_buffer`) for the points
        ``chunk`` ``[n, D]``: ``[n, 1 + D + Q]``."""
        n, d = chunk.shape
        g = buffer[:n]
        xc = torch.sub(chunk, self.shift, out=g[:, 1 : 1 + d])
        feats = self.cov.moment_features(xc, out=g[:, 1 + d :])
        if feats.data_ptr() != g[:, 1 + d :].data_ptr():  # a type that ignores ``out``
            g[:, 1 + d :] = feats
        return g

    def _score_matrix(self) -> tuple[Tensor, Tensor | None]:
        """Coefficients of the scores ``G · C``: ``C`` ``[1 + D + Q, R·K]`` with rows
        ``(c, b, A)``; for shared covariance types ``C`` holds only ``(c, b)`` ``[1 + D, R·K]``
        and the one quadratic term per restart comes second, ``[Q, R]``."""
        quad, lin, const = self._coefficients()
        rk = self.num_restarts * self.num_components
        head = torch.cat([const.reshape(rk, 1), lin.reshape(rk, -1)], 1)  # [R·K, 1 + D]
        if self.cov.shared:
            return head.T.contiguous(), quad[..., 0, :].T.contiguous()
        return torch.cat([head, quad.reshape(rk, -1)], 1).T.contiguous(), None

    def _score(self, g: Tensor, coef: Tensor, shared_quad: Tensor | None, out: Tensor) -> Tensor:
        """``log π_k + log N(x_n | μ_k, Σ_k)`` from the design matrix ``g`` ``[n, 1 + D + Q]``
        into ``out`` ``[n, R·K]``."""
        if shared_quad is None:
            return torch.mm(g, coef, out=out)
        d1 = 1 + self.num_features
        torch.mm(g[:, :d1], coef, out=out)
        quad = g[:, d1:] @ shared_quad  # [n, R]: one column per restart, not per component
        out.view(g.shape[0], self.num_restarts, -1).add_(quad.unsqueeze(-1))
        return out
    # -- E-step -------------------------------------------------------------------------------
    @torch.no_grad()
    def restart_weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log π_k + log N(x_n | μ_k, Σ_k)`` for every restart: ``[N, D]`` → ``[N, R, K]``."""
        x = self._check(x)
        r, k = self.num_restarts, self.num_components
        coef, shared_quad = self._score_matrix()
        buffer = self._design_buffer(x)
        out = x.new_empty(x.shape[0], r * k)
        for chunk, part in zip(x.split(buffer.shape[0]), out.split(buffer.shape[0]),
                               strict=True):
            self._score(self._design(chunk, buffer), coef, shared_quad, part)
        return out.view(x.shape[0], r, k)

    @torch.no_grad()
    def restart_log_prob(self, x: Tensor) -> Tensor:
        """Mixture log-density of every restart ``[N, R]``."""
        return torch.logsumexp(self.restart_weighted_log_prob(x), -1)

    @torch.no_grad()
    def statistics(self, x: Tensor, resp: Tensor | None = None,
                   labels: Tensor | None = None) -> EMStatistics:
        """E-step on the points ``x`` ``[N, D]``: summed sufficient statistics.

        One pass over chunks of ``x``; per chunk two matrix products with its design matrix
        ``G = [1 | x | F(x)]`` (:meth:`_design`): the scores ``G C`` and, after the softmax,
        ``Gᵀ r``, whose rows are the counts, ``Σ r x`` and ``Σ r F(x)`` of every component.
        They are added in float64 across chunks.

        With ``resp`` ``[N, R, K]`` given, those responsibilities are used instead of the
        model's (an initialisation from hard or random assignments; log-likelihood left 0);
        with ``labels`` ``[N, R]`` (int64), their one-hot responsibilities (on a CPU by
        :meth:`_label_statistics`, without a product; elsewhere one-hot rows a chunk at a time,
        as a product is deterministic where ``index_add_`` is not).
        """
        x = self._check(x)
        if labels is not None and x.device.type == "cpu":
            return self._label_statistics(x, labels)
        r, k, d = self.num_restarts, self.num_components, self.num_features
        rk, q = r * k, self.cov.feature_size(d)
        shared = self.cov.shared
        f64 = dict(dtype=torch.float64, device=x.device)
        buffer = self._design_buffer(x)  # [rows, 1 + D + Q], reused by every chunk
        rows = buffer.shape[0]
        # float64 sums of Gᵀ r: [1 + D + Q, R·K] (shared types: [1 + D, R·K] and [Q, R])
        total = torch.zeros(1 + d if shared else 1 + d + q, rk, **f64)
        total_f = torch.zeros(q, r, **f64) if shared else None
        part = x.new_empty(total.shape)  # one chunk's Gᵀ r, before it is added in float64
        loglik = torch.zeros(r, **f64)
        given = resp is not None or labels is not None
        if not given:
            coef, shared_quad = self._score_matrix()
        scores = x.new_empty(rows, rk) if resp is None else None
        offsets = torch.arange(0, rk, k, device=x.device)  # [R]: restart r's first column
        start = 0
        for chunk in x.split(rows):
            n = chunk.shape[0]
            g = self._design(chunk, buffer)
            if labels is not None:  # one-hot rows in the scores' buffer
                r_chunk = scores[:n].zero_().scatter_(1, labels[start : start + n] + offsets,
                                                      1.0)
            elif resp is not None:
                r_chunk = resp[start : start + n].to(g.dtype).reshape(n, rk)
            else:
                logp = self._score(g, coef, shared_quad, scores[:n]).view(n, r, k)
                r_chunk, norm = normalize_log_prob(logp)  # [n, R, K], in place
                loglik += norm.sum(0)
                r_chunk = r_chunk.view(n, rk)
            start += n
            if shared:  # the features need only Σ_k r_nk: one column per restart
                total += torch.mm(g[:, : 1 + d].T, r_chunk, out=part)
                total_f += g[:, 1 + d :].T @ r_chunk.reshape(n, r, k).sum(-1)
            else:
                total += torch.mm(g.T, r_chunk, out=part)
        counts, sum_x = total[0].reshape(r, k), total[1 : 1 + d].T.reshape(r, k, d)
        if shared:
            sum_f = total_f.T.reshape(r, 1, q)
        else:
            sum_f = total[1 + d :].T.reshape(r, k, q)
        return EMStatistics(counts, sum_x, sum_f, loglik, torch.tensor(float(x.shape[0]), **f64))

    def _label_statistics(self, x: Tensor, labels: Tensor) -> EMStatistics:
        """:meth:`statistics` for hard labels ``[N, R]``: a chunk's design rows ``G`` are added
        into their component's row of a ``[R·K, 1 + D + Q]`` block by ``index_add_`` (N·(1 + D
        + Q) additions per restart instead of the one-hot product's 2·N·(1 + D + Q)·R·K:
        4-6x faster at 800k x 32 x 32), the block summed in float64 per chunk, as the product
        is."""
        r, k, d = self.num_restarts, self.num_components, self.num_features
        rk = r * k
        f64 = dict(dtype=torch.float64, device=x.device)
        buffer = self._design_buffer(x)
        block = x.new_empty(rk, buffer.shape[1])  # one chunk's sums per component
        total = torch.zeros(rk, buffer.shape[1], **f64)
        glob = labels + torch.arange(0, rk, k, device=x.device)  # [N, R] rows of the block
        start = 0
        for chunk in x.split(buffer.shape[0]):
            n = chunk.shape[0]
            g = self._design(chunk, buffer)
            block.zero_()
            for j in range(r):  # restarts, not components
                block.index_add_(0, glob[start : start + n, j], g)
            total += block
            start += n
        total = total.view(r, k, -1)
        counts, sum_x, sum_f = total[..., 0], total[..., 1 : 1 + d], total[..., 1 + d :]
        if self.cov.shared:  # only the total over components
            sum_f = sum_f.sum(1, keepdim=True)
        return EMStatistics(counts, sum_x, sum_f, torch.zeros(r, **f64),
                            torch.tensor(float(x.shape[0]), **f64))
