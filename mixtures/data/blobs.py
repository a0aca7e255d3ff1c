"""Synthetic Gaussian-mixture data with known truth (``data=blobs``).

Letters: N points, K components, D features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixtures.data.base import InMemoryDataModule

__all__ = ["BlobsDataModule", "make_blobs"]

def _random_full(k: int, d: int, uniform, gen: torch.Generator) -> Tensor:
    """Random rotations times standard deviations drawn by ``uniform``."""
    q, r = torch.linalg.qr(torch.randn(k, d, d, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    std = uniform(k, d)
    return q @ torch.diag_embed(std.square()) @ q.transpose(-1, -2)


#: the true covariances of each ``covariance_type`` of the synthetic data ``[K, D, D]``
_TRUE_COVARIANCES = {
    "full": _random_full,
    "diag": lambda k, d, uniform, gen: torch.diag_embed(uniform(k, d).square()),
    "scalar": lambda k, d, uniform, gen: (uniform(k, 1, 1).square()
                                          * torch.eye(d, dtype=torch.float64)),
    "unit": lambda k, d, uniform, gen: torch.eye(d, dtype=torch.float64).expand(k, d, d).clone(),
}
COVARIANCE_TYPES = tuple(_TRUE_COVARIANCES)


def make_blobs(
    num_samples: int,
    num_features: int,
    num_components: int,
    separation: float = 4.0,
    covariance_type: str = "full",
    min_std: float = 0.5,
    max_std: float = 1.5,
    weight_concentration: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Sample a Gaussian mixture whose means are at least ``separation × max_std`` apart.

    Args:
        num_samples: N.
        num_features: D.
        num_components: K.
        separation: minimum distance between two means, in units of ``max_std``.
        covariance_type: ``full`` (random rotation, standard deviations in
            [min_std, max_std]), ``diag``, ``scalar`` or ``unit``.
        min_std, max_std: range of the standard deviations.
        weight_concentration: None for equal weights, else weights ~ Dirichlet(α·1).
        seed: random seed.
        dtype: dtype of the points.

    Returns:
        points ``[N, D]``, labels ``[N]``, and the truth: ``weights`` ``[K]``, ``means``
        ``[K, D]``, ``covariances`` ``[K, D, D]``.
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"data.covariance_type={covariance_type!r} is unknown; choose one of "
            f"{COVARIANCE_TYPES}."
        )
    if num_components < 1 or num_features < 1 or num_samples < 1:
        raise ValueError("data.num_samples, num_features and num_components must all be ≥ 1.")
    if not 0 < min_std <= max_std:
        raise ValueError(f"need 0 < data.min_std ≤ data.max_std, got {min_std}, {max_std}.")
    k, d = num_components, num_features
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    # Means: rejection sampling in a box that grows until K well-separated points fit.
    min_dist = separation * max_std
    half = max(1.0, 0.5 * min_dist * k ** (1.0 / d))
    means = torch.empty(0, d, dtype=f64)
    while means.shape[0] < k:
        means = torch.empty(0, d, dtype=f64)
        for _ in range(200 * k):  # data generation, not a hot path
            cand = (torch.rand(1, d, generator=gen, dtype=f64) * 2 - 1) * half
            if means.shape[0] == 0 or torch.cdist(cand, means).min() >= min_dist:
                means = torch.cat([means, cand])
                if means.shape[0] == k:
                    break
        half *= 1.25

    def uniform(*shape: int) -> Tensor:
        return min_std + (max_std - min_std) * torch.rand(*shape, generator=gen, dtype=f64)

    covs = _TRUE_COVARIANCES[covariance_type](k, d, uniform, gen)  # [K, D, D]

    if weight_concentration is None:
        weights = torch.full((k,), 1.0 / k, dtype=f64)
    else:
        conc = torch.full((k,), float(weight_concentration), dtype=f64)
        with torch.random.fork_rng():  # Dirichlet has no generator argument
            torch.manual_seed(seed)
            weights = torch.distributions.Dirichlet(conc).sample()
    labels = torch.multinomial(weights, num_samples, replacement=True, generator=gen)
    eps = torch.randn(num_samples, d, generator=gen, dtype=f64)
    tril = torch.linalg.cholesky(covs)
    points = means[labels]
    for k_ in range(k):  # per component: no N×D×D gather of factors (7.9 GB at N=800k, D=32)
        rows = (labels == k_).nonzero().squeeze(-1)
        points[rows] += eps[rows] @ tril[k_].T
    truth = {"weights": weights, "means": means, "covariances": covs}
    return points.to(dtype), labels, {k_: v.to(dtype) for k_, v in truth.items()}


class BlobsDataModule(InMemoryDataModule):
    """Synthetic mixture with known truth; see :func:`make_blobs` for the arguments.

    The truth is kept in :attr:`truth` (``weights``, ``means``, ``covariances``) and the
    labels serve ARI / NMI.
    """

    def __init__(
        self,
        num_samples: int = 10_000,
        num_features: int = 2,
        num_components: int = 5,
        separation: float = 4.0,
        covariance_type: str = "full",
        min_std: float = 0.5,
        max_std: float = 1.5,
        weight_concentration: float | None = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(logger=False)
        self.gen_args = dict(
            num_samples=num_samples, num_features=num_features, num_components=num_components,
            separation=separation, covariance_type=covariance_type, min_std=min_std,
            max_std=max_std, weight_concentration=weight_concentration, seed=seed,
        )
        # Validate now (bad config fails before any training starts).
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"data.covariance_type={covariance_type!r} is unknown; choose one of "
                f"{COVARIANCE_TYPES}."
            )
        self.truth: dict[str, Tensor] = {}

    def load(self) -> tuple[Tensor, Tensor]:
        x, y, self.truth = make_blobs(**self.gen_args)
        return x, y

    def _describe(self) -> str:
        return "blobs data"

