"""Gaussian mixture as a plain ``nn.Module``: learnable weights, means and covariances.

Usable in any training loop; the gradient-descent regime lives in ``mixtures.lit``.

Letters: N points, K components, D features.

Example:
    >>> from mixtures.distributions import FullCovariance
    >>> gmm = GaussianMixtureModel(num_components=3, num_features=2, covariance=FullCovariance())
    >>> gmm.initialize(x)                            # k-means (k-means++ seeds + Lloyd)
    >>> opt = torch.optim.Adam(gmm.parameters(), lr=0.05)
    >>> for _ in range(200):
    ...     opt.zero_grad(); loss = -gmm(x).mean(); loss.backward(); opt.step()
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixtures.distributions import (
    CovarianceType,
    FullCovariance,
    weighted_log_prob,
)
from mixtures.models.base import MixtureDensity
from mixtures.models.init import check_init, cluster_moments, initial_responsibilities
from mixtures.models.kmeans import assign

__all__ = ["GaussianMixtureModel"]


class GaussianMixtureModel(MixtureDensity):
    """Finite Gaussian mixture ``p(x) = Σ_k π_k N(x | μ_k, Σ_k)``.

    Parameters are unconstrained: ``weight_logits`` ``[K]`` (π = softmax), ``means`` ``[K, D]``
    and ``raw_covariance`` ``[K, P]`` (a buffer when the covariance type is fixed).

    Args:
        num_components: K ≥ 1.
        num_features: D ≥ 1.
        covariance: covariance parametrisation (default: full).
        init: default method of :meth:`initialize` (:data:`mixtures.models.init.INIT_METHODS`).
        kmeans_iters: Lloyd iterations of the ``kmeans`` init.
        seed: seed of the initialisation.
    """

    def __init__(
        self,
        num_components: int,
        num_features: int,
        covariance: CovarianceType | None = None,
        init: str = "kmeans",
        kmeans_iters: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._check_sizes(num_components, num_features)
        check_init(init, kmeans_iters, name="model.net.init")
        self.num_components = num_components
        self.num_features = num_features
        self.init, self.kmeans_iters, self.seed = init, kmeans_iters, seed
        self.cov = covariance if covariance is not None else FullCovariance()
        k, d = num_components, num_features
        self.weight_logits = nn.Parameter(torch.zeros(k))
        self.means = nn.Parameter(torch.randn(k, d))
        eye = torch.eye(d).expand(k, d, d)
        raw = self.cov.from_covariance(eye, torch.full((k,), 1.0 / k))
        if self.cov.learnable:
            self.raw_covariance = nn.Parameter(raw)
        else:
            self.register_buffer("raw_covariance", raw)
        self.register_buffer("initialized", torch.tensor(False))

    # -- constrained views ----------------------------------------------------------------
    @property
    def log_weights(self) -> Tensor:
        """``[K]``"""
        return torch.log_softmax(self.weight_logits, -1)

    @property
    def weights(self) -> Tensor:
        """``[K]``"""
        return torch.softmax(self.weight_logits, -1)

    @property
    def covariances(self) -> Tensor:
        """Dense covariances ``[K, D, D]``."""
        cov = self.cov.covariance(self.raw_covariance, self.num_features)
        return cov.expand(self.num_components, self.num_features, self.num_features)

    @property
    def scale_tril(self) -> Tensor:
        """Cholesky factors ``[K, D, D]``."""
        tril = self.cov.scale_tril(self.raw_covariance, self.num_features)
        return tril.expand(self.num_components, self.num_features, self.num_features)

    def component_parameters(self) -> list[nn.Parameter]:
        """Parameters of the components (means, covariances): the ``component_lr`` group."""
        return [p for p in (self.means, self.raw_covariance) if isinstance(p, nn.Parameter)]

    def mixture_weight_parameters(self) -> list[nn.Parameter]:
        """Parameters of the mixing weights: the ``mixture_lr`` group."""
        return [self.weight_logits]

    # -- densities --------------------------------------------------------------------------
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log π_k + log N(x_n | μ_k, Σ_k)``: ``[N, D]`` → ``[N, K]``."""
        x = self._check_points(x, self.means.dtype)
        return weighted_log_prob(x, self.log_weights, self.means, self.raw_covariance, self.cov)

    def sampling_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.log_weights, self.means, self.raw_covariance

    def forward(self, x: Tensor) -> Tensor:
        """Mixture log-density ``[N]`` (the negative of its mean is the training loss)."""
        return self.log_prob(x)

    # -- initialisation and collapse protection ---------------------------------------------
    @torch.no_grad()
    def initialize(
        self,
        x: Tensor,
        method: str | None = None,
        generator: torch.Generator | None = None,
        kmeans_iters: int | None = None,
    ) -> None:
        """Set means, covariances and weights from data (:mod:`mixtures.models.init`).

        Every point is assigned to a cluster (``kmeans``: k-means; ``k-means++`` /
        ``random_from_data``: the nearest seed; ``random``: soft random weights); means and
        covariances are the clusters' moments projected onto the covariance type (floored),
        weights ``(N_k + 1) / (N + K)`` (never exactly zero).

        Args:
            x: training points ``[N, D]`` (any device; results are copied to the parameters').
            method: overrides the constructor's ``init``.
            generator: random generator on ``x``'s device (default: seeded with ``seed``).
            kmeans_iters: overrides the constructor's ``kmeans_iters``.
        """
        method = self.init if method is None else method
        iters = self.kmeans_iters if kmeans_iters is None else kmeans_iters
        check_init(method, iters)
        x = self._check_points(x.detach(), torch.float64)
        n, k = x.shape[0], self.num_components
        resp = initial_responsibilities(x, k, 1, method, self.seed, iters, assign_all=True,
                                        generator=generator)[:, 0]
        counts, means, raw = cluster_moments(x, resp, self.cov)
        weights = (counts + 1.0) / (n + k)
        dev, dt = self.means.device, self.means.dtype
        self.means.copy_(means.to(dev, dt))
        self.raw_covariance.copy_(raw.to(dev, dt))
        self.weight_logits.copy_(weights.log().to(dev, dt) - weights.log().mean().to(dev, dt))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _load(self, means: Tensor, cov: Tensor, weights: Tensor) -> None:
        dev, dt = self.means.device, self.means.dtype
        self.means.copy_(means.to(dev, dt))
        self.raw_covariance.copy_(self.cov.from_covariance(cov, weights).to(dev, dt))
        self.weight_logits.copy_(weights.log().to(dev, dt) - weights.log().mean().to(dev, dt))

    @torch.no_grad()
    def collapsed(self, min_weight: float, scale_margin: float = 1.05) -> Tensor:
        """Components that lost their weight or whose scale sits on the floor: ``[K]`` bool."""
        low_weight = self.weights < min_weight
        if not self.cov.learnable:
            return low_weight
        smallest = self.cov.min_scale_of(self.raw_covariance, self.num_features)
        on_floor = (smallest <= self.cov.min_scale * scale_margin).expand(self.num_components)
        return low_weight | on_floor

    @torch.no_grad()
    def reseed(self, x: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> None:
        """Move the components in ``mask`` ``[K]`` onto data the healthy ones explain badly.

        New means are drawn one after the other k-means++-style (probability ∝ squared distance
        to the nearest healthy or already re-seeded mean); new covariances are the
        weight-averaged covariance of the healthy components (or the data covariance when none
        is healthy); each new weight is 1/K.
        """
        bad = mask.nonzero().flatten()
        if bad.numel() == 0:
            return
        good = (~mask).nonzero().flatten()
        x = self._check_points(x, self.means.dtype).to(self.means.device)
        if good.numel() > 0:
            _, d2 = assign(x, self.means[good])
            cov_dense = self.covariances[good]
            w = self.weights[good]
            mean_cov = (w[:, None, None] * cov_dense).sum(0) / w.sum()
        else:
            d2 = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            mean_cov = torch.cov(x.T).reshape(self.num_features, self.num_features)
        gen_dev = generator.device if generator is not None else x.device
        for k in bad.tolist():  # a few collapsed components, not a hot loop
            probs = d2 / d2.sum() if d2.sum() > 0 else torch.ones_like(d2) / d2.numel()
            pick = torch.multinomial(probs.to(gen_dev), 1, generator=generator).to(x.device)
            self.means[k] = x[pick[0]]
            d2 = torch.minimum(d2, (x - x[pick[0]]).square().sum(-1))
        if not self.cov.shared and self.cov.learnable:
            new_raw = self.cov.from_covariance(mean_cov.expand(bad.numel(), *mean_cov.shape))
            self.raw_covariance[bad] = new_raw.to(self.raw_covariance.dtype)
        log_w = self.log_weights
        log_w[bad] = -math.log(self.num_components)
        self.weight_logits.copy_(log_w - torch.logsumexp(log_w, -1))

