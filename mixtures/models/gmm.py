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
    mixture_log_prob,
    responsibilities,
    sample_mixture,
    weighted_log_prob,
)
from mixtures.models.kmeans import assign, kmeans, kmeans_plusplus

__all__ = ["GaussianMixtureModel", "INIT_METHODS"]

INIT_METHODS = ("kmeans", "kmeans++", "random")


class GaussianMixtureModel(nn.Module):
    """Finite Gaussian mixture ``p(x) = Σ_k π_k N(x | μ_k, Σ_k)``.

    Parameters are unconstrained: ``weight_logits`` ``[K]`` (π = softmax), ``means`` ``[K, D]``
    and ``raw_covariance`` ``[K, P]`` (a buffer when the covariance type is fixed).

    Args:
        num_components: K ≥ 1.
        num_features: D ≥ 1.
        covariance: covariance parametrisation (default: full).
    """

    def __init__(
        self,
        num_components: int,
        num_features: int,
        covariance: CovarianceType | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(num_components, int) and num_components >= 1):
            raise ValueError(
                f"num_components must be an integer ≥ 1 (got {num_components!r}); "
                "set model.num_components=K."
            )
        if not (isinstance(num_features, int) and num_features >= 1):
            raise ValueError(f"num_features must be an integer ≥ 1 (got {num_features!r}).")
        self.num_components = num_components
        self.num_features = num_features
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

    def mixture_parameters(self) -> dict[str, Tensor]:
        """Detached ``weights`` ``[K]``, ``means`` ``[K, D]``, ``covariances`` ``[K, D, D]``."""
        with torch.no_grad():
            return {
                "weights": self.weights.detach().clone(),
                "means": self.means.detach().clone(),
                "covariances": self.covariances.detach().clone(),
            }

    def component_parameters(self) -> list[nn.Parameter]:
        """Parameters of the components (means, covariances): the ``component_lr`` group."""
        return [p for p in (self.means, self.raw_covariance) if isinstance(p, nn.Parameter)]

    def mixture_weight_parameters(self) -> list[nn.Parameter]:
        """Parameters of the mixing weights: the ``mixture_lr`` group."""
        return [self.weight_logits]

    def num_parameters(self) -> int:
        """Free parameters, for BIC / AIC: (K − 1) weights + K·D means + covariance."""
        k, d = self.num_components, self.num_features
        return (k - 1) + k * d + self.cov.num_parameters(k, d)

    # -- densities --------------------------------------------------------------------------
    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"expected points of shape [N, {self.num_features}], got {list(x.shape)}; "
                "the model was built with num_features="
                f"{self.num_features}."
            )
        return x.to(self.means.dtype)

    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log π_k + log N(x_n | μ_k, Σ_k)``: ``[N, D]`` → ``[N, K]``."""
        x = self._check(x)
        return weighted_log_prob(x, self.log_weights, self.means, self.raw_covariance, self.cov)

    def log_prob(self, x: Tensor) -> Tensor:
        """Mixture log-density ``[N]``."""
        x = self._check(x)
        return mixture_log_prob(x, self.log_weights, self.means, self.raw_covariance, self.cov)

    def forward(self, x: Tensor) -> Tensor:
        """Mixture log-density ``[N]`` (the negative of its mean is the training loss)."""
        return self.log_prob(x)

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Responsibilities ``[N, K]``."""
        return responsibilities(self.weighted_log_prob(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Most probable component ``[N]``."""
        return self.weighted_log_prob(x).argmax(-1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Points ``[S, D]`` and their component labels ``[S]``."""
        return sample_mixture(
            num_samples, self.log_weights, self.means, self.raw_covariance, self.cov, generator
        )

    # -- initialisation and collapse protection ---------------------------------------------
    @torch.no_grad()
    def initialize(
        self,
        x: Tensor,
        method: str = "kmeans",
        generator: torch.Generator | None = None,
        kmeans_iters: int = 20,
    ) -> None:
        """Set means, covariances and weights from data.

        ``kmeans``: k-means++ seeds refined by Lloyd iterations; ``kmeans++``: the seeds only;
        ``random``: K distinct random points. Covariances and weights are then the moments of
        the hard clusters (projected onto the covariance type, floored).

        Args:
            x: training points ``[N, D]`` (any device; results are copied to the parameters').
            method: one of ``INIT_METHODS``.
            generator: random generator on ``x``'s device.
            kmeans_iters: Lloyd iterations for ``kmeans``.
        """
        if method not in INIT_METHODS:
            raise ValueError(f"unknown init method {method!r}; choose one of {INIT_METHODS}.")
        x = x.detach()
        n, k = x.shape[0], self.num_components
        if k > n:
            raise ValueError(
                f"num_components={k} exceeds the number of training points ({n}); "
                "lower model.num_components or supply more data."
            )
        x = x.to(torch.float64) if x.dtype != torch.float64 else x
        if method == "kmeans":
            centres, labels = kmeans(x, k, kmeans_iters, generator)
        elif method == "kmeans++":
            centres = kmeans_plusplus(x, k, generator)
            labels, _ = assign(x, centres)
        else:
            idx = torch.randperm(n, generator=generator, device=x.device)[:k]
            centres = x[idx]
            labels, _ = assign(x, centres)
        counts, cov = _cluster_moments(x, labels, centres, k)
        weights = (counts + 1.0) / (n + k)  # never exactly zero
        self._load(centres, cov, weights)
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
        x = self._check(x).to(self.means.device)
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


def _cluster_moments(
    x: Tensor, labels: Tensor, centres: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Counts ``[K]`` and covariances ``[K, D, D]`` of hard clusters, about their own means.

    Second moments are accumulated as matrix products over chunks of points, so memory stays
    bounded. Clusters with fewer than two points get the data covariance.
    """
    d = x.shape[1]
    counts = torch.bincount(labels, minlength=k).to(x.dtype)  # [K]
    sums = torch.zeros(k, d, dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    shift = x.mean(0)  # centre first: better conditioned second moments
    second = torch.zeros(k, d, d, dtype=x.dtype, device=x.device)
    chunk = max(1, 2**22 // max(1, k * d))
    for xc, lc in zip(x.split(chunk), labels.split(chunk), strict=True):
        xc = xc - shift
        onehot = torch.nn.functional.one_hot(lc, k).to(x.dtype)  # [n, K]
        second += torch.einsum("nki,nj->kij", onehot.unsqueeze(-1) * xc.unsqueeze(1), xc)
    mean_c = sums / counts.clamp_min(1.0)[:, None] - shift  # centred cluster means [K, D]
    cov = second / counts.clamp_min(1.0)[:, None, None] - mean_c[:, :, None] * mean_c[:, None, :]
    data_cov = torch.cov(x.T).reshape(d, d)
    small = (counts < 2)[:, None, None]
    return counts, torch.where(small, data_cov.expand(k, d, d), cov)
