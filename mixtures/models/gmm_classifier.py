"""Gaussian-mixture classifier layer: a drop-in replacement of a network's final linear layer.

Each of C classes is a mixture of G Gaussian components over a D-dimensional feature ``z``:

    log p(z | c) = logsumexp_g ( log w_cg + log N(z | μ_cg, Σ_cg) )
    log p(c | z) = log_softmax_c ( log p(z | c) + log π_c )

Everything is learned by backpropagation — means, covariances (any shared parametrisation:
scalar, diag, full, …), the mixing weights ``w_c = softmax(logits_c)`` within each class and the
class prior π — and nothing has to be called after an optimizer step. The input can first be
projected to D by a frozen sparse random (Achlioptas) matrix, a learned linear map, or not at
all. ``class_log_likelihood`` gives ``log p(z | c)`` for out-of-distribution scores.

Letters: B batch, C classes, G components per class, K = C·G components, D features, F inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixtures.distributions import CovarianceType, DiagCovariance, component_log_prob

__all__ = ["GaussianMixtureClassifier", "PROJECTIONS", "achlioptas_matrix"]

PROJECTIONS = ("none", "linear", "sparse")


def achlioptas_matrix(in_features: int, out_features: int, generator: torch.Generator) -> Tensor:
    """Sparse random projection ``[F, D]`` (Achlioptas 2003): entries ``√(3/D)·{+1, 0, −1}``
    with probabilities 1/6, 2/3, 1/6, so that squared norms are preserved in expectation."""
    u = torch.rand(in_features, out_features, generator=generator)
    signs = (u < 1 / 6).float() - (u > 5 / 6).float()
    return signs * math.sqrt(3.0 / out_features)


class GaussianMixtureClassifier(nn.Module):
    """C classes × G Gaussian components over a (projected) feature.

    Args:
        in_features: F, the size of the input feature.
        num_classes: C.
        num_components: G, components per class.
        covariance: the covariance parametrisation (default diag).
        projection: ``none`` (D = F), ``linear`` (learned F → D) or ``sparse`` (frozen
            Achlioptas F → D).
        feature_dim: D for a projection (ignored, and may be None, for ``none``).
        init_mean_std: standard deviation of the random initial means (covariances start at 1).
        learn_prior: learn the class prior π (otherwise uniform).
        seed: seed of the initial means and of the sparse projection.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_components: int = 1,
        covariance: CovarianceType | None = None,
        projection: str = "none",
        feature_dim: int | None = None,
        init_mean_std: float = 0.1,
        learn_prior: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(
                f"model.net.head.projection={projection!r} is unknown; choose one of "
                f"{PROJECTIONS}."
            )
        for name, value in (("in_features", in_features), ("num_classes", num_classes),
                            ("num_components", num_components)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.net.head.{name} must be a positive integer, "
                                 f"got {value!r}.")
        if projection == "none":
            feature_dim = in_features
        elif not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(
                f"projection={projection!r} needs model.net.head.feature_dim (D), a positive "
                f"integer; got {feature_dim!r}."
            )
        self.cov = covariance if covariance is not None else DiagCovariance()
        self.in_features, self.num_classes, self.num_components = in_features, num_classes, \
            num_components
        self.feature_dim, self.projection = feature_dim, projection
        gen = torch.Generator().manual_seed(seed)
        if projection == "sparse":
            self.register_buffer("project", achlioptas_matrix(in_features, feature_dim, gen))
        elif projection == "linear":
            self.linear = nn.Linear(in_features, feature_dim)
        k = num_classes * num_components
        self.means = nn.Parameter(init_mean_std * torch.randn(k, feature_dim, generator=gen))
        # covariances start at the identity (scale 1), every type through its own projection
        eye = torch.eye(feature_dim).expand(k, feature_dim, feature_dim)
        self.raw_cov = nn.Parameter(self.cov.from_covariance(eye).contiguous(),
                                    requires_grad=self.cov.learnable)
        self.mixture_logits = nn.Parameter(torch.zeros(num_classes, num_components))
        self.prior_logits = nn.Parameter(torch.zeros(num_classes), requires_grad=learn_prior)

    # -- constrained views ------------------------------------------------------------------
    @property
    def log_mixing_weights(self) -> Tensor:
        """``log w_cg`` ``[C, G]`` (log-softmax within each class)."""
        return torch.log_softmax(self.mixture_logits, dim=-1)

    @property
    def log_prior(self) -> Tensor:
        """``log π_c`` ``[C]``."""
        return torch.log_softmax(self.prior_logits, dim=-1)

    # -- forward ----------------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """Projected feature ``z`` ``[B, D]`` of inputs ``[B, F]``."""
        if self.projection == "sparse":
            return x @ self.project
        if self.projection == "linear":
            return self.linear(x)
        return x

    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log w_cg + log N(z | μ_cg, Σ_cg)`` ``[B, C, G]`` of inputs ``x [B, F]``."""
        z = self.features(x)
        comp = component_log_prob(z, self.means, self.raw_cov, self.cov)  # [B, K]
        comp = comp.view(*comp.shape[:-1], self.num_classes, self.num_components)
        return comp + self.log_mixing_weights

    def class_log_likelihood(self, x: Tensor) -> Tensor:
        """``log p(z | c)`` ``[B, C]`` — for out-of-distribution scores."""
        return torch.logsumexp(self.weighted_log_prob(x), dim=-1)

    def log_density(self, x: Tensor) -> Tensor:
        """``log p(z) = logsumexp_c (log π_c + log p(z | c))`` ``[B]`` — a density of the
        features only when trained for it (``model.generative_weight``)."""
        return torch.logsumexp(self.class_log_likelihood(x) + self.log_prior, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """Class log-probabilities ``log p(c | z)`` ``[B, C]``."""
        return torch.log_softmax(self.class_log_likelihood(x) + self.log_prior, dim=-1)

    def component_responsibilities(self, x: Tensor) -> Tensor:
        """``p(g | z, c)`` ``[B, C, G]``: which component of each class explains ``z``."""
        return torch.softmax(self.weighted_log_prob(x), dim=-1)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, "
                f"num_components={self.num_components}, projection={self.projection}, "
                f"feature_dim={self.feature_dim}, covariance={self.cov!r}")
