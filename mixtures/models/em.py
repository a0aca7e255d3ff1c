"""Expectation–maximisation for Gaussian mixtures, as a plain ``nn.Module`` with buffers.

R restarts (scikit-learn's ``n_init``) run side by side: every tensor has a leading restart
dimension. The E-step, one read of each chunk of points that returns float64 sums of the
sufficient statistics (:class:`EMStatistics`), is :class:`~mixtures.models.em_pass.EStepPass`;
this module holds the parameters, the initialisation, the closed-form M-step and the
full-batch loop.

Data are centred by a fixed ``shift`` (the data mean at initialisation) before the moment
features are formed; this keeps the expanded second moments well conditioned in float32.

Letters: N points, R restarts, K components, D features, Q moment features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixtures.distributions import CovarianceType, FullCovariance
from mixtures.models.base import MixtureDensity
from mixtures.models.em_pass import CHUNK_ELEMENTS, EMStatistics, EStepPass
from mixtures.models.init import check_init, initial_responsibilities, kmeans_labels

__all__ = ["CHUNK_ELEMENTS", "EMStatistics", "GaussianMixtureEM"]


class GaussianMixtureEM(EStepPass, MixtureDensity):
    """Gaussian mixture whose parameters are updated by closed-form EM.

    The prediction API (:class:`~mixtures.models.base.MixtureDensity`: ``predict``,
    ``score_samples``, ``sample``, …) uses the restart with the highest lower bound; the
    ``restart_*`` methods and the ``weights`` / ``means`` / ``covariances`` properties keep the
    restart dimension R.

    Args:
        num_components: K ≥ 1.
        num_features: D ≥ 1.
        covariance: covariance type (default full).
        num_restarts: R parallel restarts (scikit-learn's ``n_init``).
        reg_covar: added to every variance in the M-step (scikit-learn's ``reg_covar``).
        init: initial responsibilities of :meth:`initialize` (:mod:`mixtures.models.init`).
        kmeans_iters: Lloyd iterations of the ``kmeans`` init.
        seed: seed of the initialisation (restart r uses seed + r).
        means_init: optional initial means ``[K, D]``; as in scikit-learn, weights and
            covariances still come from ``init`` and the given means replace the estimated ones
            in every restart.
        chunk_elements: bound on the E-step's working set, in tensor elements (default by
            device, see ``CHUNK_ELEMENTS``).
    """

    def __init__(
        self,
        num_components: int,
        num_features: int,
        covariance: CovarianceType | None = None,
        num_restarts: int = 1,
        reg_covar: float = 1e-6,
        init: str = "kmeans",
        kmeans_iters: int = 100,
        seed: int = 0,
        means_init: Tensor | list[list[float]] | None = None,
        chunk_elements: int | None = None,
    ) -> None:
        super().__init__()
        self._check_sizes(num_components, num_features)
        if not (isinstance(num_restarts, int) and num_restarts >= 1):
            raise ValueError(f"n_init / num_restarts must be an integer ≥ 1, got "
                             f"{num_restarts!r}.")
        if not reg_covar >= 0:
            raise ValueError(f"reg_covar must be ≥ 0, got {reg_covar}; the default is 1e-6.")
        check_init(init, kmeans_iters, name="model.net.init")
        self.num_components, self.num_features = num_components, num_features
        self.num_restarts = num_restarts
        self.cov = covariance if covariance is not None else FullCovariance()
        self.reg_covar = float(reg_covar)
        self.init, self.kmeans_iters, self.seed = init, kmeans_iters, seed
        self.chunk_elements = chunk_elements
        r, k, d = num_restarts, num_components, num_features
        if means_init is not None:
            means_init = torch.as_tensor(means_init, dtype=torch.float64)
            if means_init.shape != (k, d):
                raise ValueError(
                    f"means_init has shape {list(means_init.shape)}; expected [num_components, "
                    f"num_features] = [{k}, {d}]."
                )
        self.means_init = means_init
        eye = torch.eye(d).expand(r, k, d, d)
        self.register_buffer("log_weights", torch.full((r, k), -math.log(k)))
        self.register_buffer("means", torch.zeros(r, k, d))
        self.register_buffer("raw_covariance", self.cov.from_covariance(eye, torch.ones(r, k)))
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("initialized", torch.tensor(False))
        # scikit-learn's bookkeeping per restart, kept by em_step during training
        self.register_buffer("lower_bound", torch.full((r,), -math.inf, dtype=torch.float64))
        self.register_buffer("converged", torch.zeros(r, dtype=torch.bool))
        self.register_buffer("n_iter", torch.zeros(r, dtype=torch.long))

    # -- parameters ---------------------------------------------------------------------------
    @torch.no_grad()
    def set_parameters(self, weights: Tensor, means: Tensor, covariances: Tensor,
                       shift: Tensor | None = None) -> None:
        """Load weights ``[R, K]``, means ``[R, K, D]`` and dense covariances ``[R, K, D, D]``
        (leading R may be omitted: broadcast to every restart)."""
        r, k, d = self.num_restarts, self.num_components, self.num_features
        dev, dt = self.means.device, self.means.dtype
        weights = weights.to(dev, dt).expand(r, k)
        covariances = covariances.to(dev, dt).expand(r, k, d, d)
        self.log_weights.copy_(weights.log() - weights.sum(-1, keepdim=True).log())
        self.means.copy_(means.to(dev, dt).expand(r, k, d))
        self.raw_covariance.copy_(self.cov.from_covariance(covariances, weights))
        if shift is not None:
            self.shift.copy_(shift.to(dev, dt))
        self.initialized.fill_(True)

    @property
    def weights(self) -> Tensor:
        """``[R, K]``"""
        return self.log_weights.exp()

    @property
    def covariances(self) -> Tensor:
        """Dense covariances ``[R, K, D, D]``."""
        cov = self.cov.covariance(self.raw_covariance, self.num_features)
        return cov.expand(self.num_restarts, self.num_components, *cov.shape[-2:])

    def _coefficients(self) -> tuple[Tensor, Tensor, Tensor]:
        quad, lin, const = self.cov.coefficients(self.raw_covariance, self.means - self.shift)
        return quad, lin, const + self.log_weights

    def _check(self, x: Tensor) -> Tensor:
        return self._check_points(x, self.means.dtype)

    # -- the best restart: the prediction API's mixture ------------------------------------------
    @property
    def best_restart(self) -> int:
        """Index of the restart with the highest lower bound (0 before training)."""
        finite = torch.isfinite(self.lower_bound)
        if not bool(finite.any()):
            return 0
        return int(self.lower_bound.masked_fill(~finite, -math.inf).argmax())

    @torch.no_grad()
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log π_k + log N(x_n | μ_k, Σ_k)`` of the best restart ``[N, K]``."""
        if self.num_restarts == 1:
            return self.restart_weighted_log_prob(x)[:, 0]
        return self.restart_weighted_log_prob(x)[:, self.best_restart]

    @torch.no_grad()
    def mixture_parameters(self) -> dict[str, Tensor]:
        r = self.best_restart
        return {"weights": self.weights[r].clone(), "means": self.means[r].clone(),
                "covariances": self.covariances[r].clone()}

    def sampling_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        r = self.best_restart
        return self.log_weights[r], self.means[r], self.raw_covariance[r]


    @torch.no_grad()
    def initialize(self, x: Tensor, resp: Tensor | None = None) -> None:
        """Initialise every restart from the training points ``[N, D]``: an M-step from the
        responsibilities of ``init`` (or ``resp`` ``[N, R, K]``), then ``means_init`` if given."""
        x = self._check(x)
        if resp is None and self.init == "kmeans":
            self.initialize_from_labels(x, kmeans_labels(
                x, self.num_components, self.num_restarts, self.seed, self.kmeans_iters))
        else:
            if resp is None:
                resp = initial_responsibilities(x, self.num_components, self.num_restarts,
                                                self.init, self.seed, self.kmeans_iters)
            self.initialize_from_responsibilities(x, resp)
        if self.means_init is not None:
            self.means.copy_(self.means_init.to(self.means).expand_as(self.means))

    @torch.no_grad()
    def initialize_from_responsibilities(self, x: Tensor, resp: Tensor) -> None:
        """Set the shift to the data mean and run one M-step from ``resp`` ``[N, R, K]``
        (how scikit-learn initialises from k-means labels, seeds or random weights)."""
        x = self._check(x)
        self.shift.copy_(x.mean(0))
        self.m_step(self.statistics(x, resp))
        self.initialized.fill_(True)

    @torch.no_grad()
    def initialize_from_labels(self, x: Tensor, labels: Tensor) -> None:
        """:meth:`initialize_from_responsibilities` from hard labels ``[N, R]`` (int64, e.g.
        k-means'), without forming their ``[N, R, K]`` one-hot tensor."""
        x = self._check(x)
        r, n = self.num_restarts, x.shape[0]
        if labels.shape != (n, r) or labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 of shape [N, R] = [{n}, {r}], got "
                             f"{labels.dtype} {tuple(labels.shape)}.")
        self.shift.copy_(x.mean(0))
        self.m_step(self.statistics(x, labels=labels.to(x.device)))
        self.initialized.fill_(True)

    # -- M-step -------------------------------------------------------------------------------
    @torch.no_grad()
    def m_step(self, stats: EMStatistics, active: Tensor | None = None) -> None:
        """Closed-form update from statistics; restarts where ``active`` ``[R]`` is False keep
        their parameters (they have converged)."""
        dt = self.means.dtype
        eps = 10 * torch.finfo(dt).eps  # as scikit-learn: no component has exactly zero mass
        counts = stats.counts + eps
        means_c, raw = self.cov.estimate(counts, stats.sum_x, stats.sum_f, self.reg_covar)
        log_w = (counts / stats.num_points).log()
        new = (log_w.to(dt), (means_c + self.shift.double()).to(dt), raw.to(dt))
        for buf, value in zip((self.log_weights, self.means, self.raw_covariance), new,
                              strict=True):
            if active is None:
                buf.copy_(value)
            else:
                mask = active.reshape(-1, *([1] * (buf.dim() - 1)))
                buf.copy_(torch.where(mask, value, buf))

    @torch.no_grad()
    def em_step(self, stats: EMStatistics, tol: float) -> None:
        """M-step from ``stats`` for the restarts not yet converged, and scikit-learn's
        bookkeeping in the buffers: ``lower_bound`` ``[R]`` becomes the mean log-likelihood
        before this M-step, ``n_iter`` ``[R]`` counts, ``converged`` ``[R]`` is set when the
        lower bound changed by less than ``tol``."""
        current = stats.log_likelihood / stats.num_points
        active = ~self.converged
        self.m_step(stats, active)
        change = current - self.lower_bound
        self.lower_bound.copy_(torch.where(active, current.to(self.lower_bound.dtype),
                                           self.lower_bound))
        self.n_iter += active.long()
        self.converged |= active & (change.abs() < tol)

    # -- full-batch driver ----------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, x: Tensor, max_iter: int = 100, tol: float = 1e-3,
            lower_bound: Tensor | None = None) -> dict[str, Tensor]:
        """Iterate EM on ``x`` until every restart's mean log-likelihood changes by < ``tol``.

        Follows scikit-learn's loop: the lower bound of an iteration is the mean log-likelihood
        of the parameters *before* its M-step. ``lower_bound`` ``[R]`` continues from an earlier
        fit (a warm start); by default the first change is measured from −∞.

        Returns:
            ``converged`` ``[R]`` bool, ``n_iter`` ``[R]``, ``lower_bound`` ``[R]``, and
            ``trace`` ``[T, R]`` (lower bound per iteration).
        """
        x = self._check(x)
        self.lower_bound.fill_(-math.inf)
        if lower_bound is not None:
            self.lower_bound.copy_(torch.as_tensor(lower_bound, dtype=torch.float64)
                                   .expand_as(self.lower_bound))
        self.converged.zero_()
        self.n_iter.zero_()
        trace = []
        for _ in range(max_iter):
            self.em_step(self.statistics(x), tol)
            trace.append(self.lower_bound.clone())
            if bool(self.converged.all()):
                break
        lower = self.lower_bound.clone()
        return {"converged": self.converged.clone(), "n_iter": self.n_iter.clone(),
                "lower_bound": lower, "trace": torch.stack(trace) if trace else lower[None]}

    @torch.no_grad()
    def keep_restart(self, index: int) -> None:
        """Keep only restart ``index`` (R becomes 1), e.g. the best after :meth:`fit`."""
        for name in ("log_weights", "means", "raw_covariance", "lower_bound", "converged",
                     "n_iter"):
            buf = getattr(self, name)
            setattr(self, name, buf[index : index + 1].clone())
        self.num_restarts = 1

