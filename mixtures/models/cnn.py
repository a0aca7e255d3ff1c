"""The small MNIST CNN of the reference (PyTorch's MNIST example): two convolutions, a 128-unit
feature, then a classifier head — a :class:`~mixtures.models.GaussianMixtureClassifier` or the
usual linear layer (:class:`LinearHead`, the baseline) — and optionally a post-hoc
:class:`~mixtures.models.ClassDensity` of the feature for out-of-distribution scores.

``ood_score(x)`` is higher for more anomalous inputs: ``−log p(z)`` of the fitted post-hoc
density when there is one, else the head's ``−log_density`` (a mixture head's
``logsumexp_c log π_c p(z | c)``; for a linear head the "energy" ``logsumexp_c`` of the logits).

Letters: B batch, C classes, F = 128 features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvNet", "LinearHead"]


class LinearHead(nn.Module):
    """Linear classifier ``[B, F] → [B, C]`` logits (the baseline head).

    ``class_log_likelihood`` returns the logits: the "energy" score ``logsumexp_c`` of them is
    the linear head's counterpart of the mixture's ``log p(z)``.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.num_classes = num_classes

    def class_log_likelihood(self, z: Tensor) -> Tensor:
        return self.linear(z)

    def log_density(self, z: Tensor) -> Tensor:
        """The energy score ``logsumexp_c`` of the logits ``[B]`` (higher: more typical)."""
        return torch.logsumexp(self.linear(z), dim=-1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.log_softmax(self.linear(z), dim=-1)


class ConvNet(nn.Module):
    """conv 1→32 3×3, ReLU, conv 32→64 3×3, ReLU, max-pool 2, dropout, fc 9216→128, ReLU,
    dropout, head.

    Args:
        head: the classifier head, ``[B, 128] → [B, C]`` class log-probabilities, with a
            ``class_log_likelihood`` method.
        in_channels: image channels (1 for MNIST).
        image_size: side of the square input images (28).
        feature_dim: width of the penultimate feature (128).
        dropout1, dropout2: dropout after the pooling and after the feature layer.
        density: optional post-hoc density of the feature (:class:`ClassDensity`), fitted
            after training by :meth:`fit_density`; it then gives :meth:`ood_score`.
    """

    def __init__(self, head: nn.Module, in_channels: int = 1, image_size: int = 28,
                 feature_dim: int = 128, dropout1: float = 0.25,
                 dropout2: float = 0.5, density: nn.Module | None = None) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        side = (image_size - 4) // 2
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(dropout1), nn.Flatten(),
            nn.Linear(64 * side * side, feature_dim), nn.ReLU(), nn.Dropout(dropout2),
        )
        self.head = head
        if density is not None and density.feature_dim != feature_dim:
            raise ValueError(f"model.net.density.feature_dim={density.feature_dim} must be the "
                             f"network's feature_dim={feature_dim}.")
        self.density = density

    def features(self, x: Tensor) -> Tensor:
        """The 128-unit feature ``[B, F]`` of images, flattened ``[B, H·W]`` or ``[B, 1, H, W]``."""
        if x.dim() == 2:
            x = x.view(x.shape[0], self.in_channels, self.image_size, self.image_size)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class log-probabilities ``[B, C]``."""
        return self.head(self.features(x))

    def class_log_likelihood(self, x: Tensor) -> Tensor:
        """The head's ``log p(z | c)`` ``[B, C]`` (logits for the linear head)."""
        return self.head.class_log_likelihood(self.features(x))

    def log_density(self, x: Tensor, source: str = "auto") -> Tensor:
        """``log p(z)`` ``[B]`` of images: ``source`` ``density`` (the post-hoc fit), ``head``
        or ``auto`` (the post-hoc fit when fitted, else the head)."""
        if source not in ("auto", "head", "density"):
            raise ValueError(f"source={source!r}: choose auto, head or density.")
        z = self.features(x)
        fitted = self.density is not None and self.density.is_fitted
        if source == "density" or (source == "auto" and fitted):
            if self.density is None:
                raise ValueError("source='density' needs a post-hoc density: set "
                                 "model.net.density (see conf/model/gmm_classifier.yaml).")
            return self.density.log_prob(z)
        return self.head.log_density(z)

    def ood_score(self, x: Tensor, source: str = "auto") -> Tensor:
        """Out-of-distribution score ``[B]``, higher for more anomalous inputs:
        ``−log_density(x, source)``."""
        return -self.log_density(x, source)

    @torch.no_grad()
    def fit_density(self, x: Tensor, y: Tensor, batch_size: int = 1000,
                    step: int = 0) -> dict[str, Tensor]:
        """Fit the post-hoc density to the features of training images ``x`` with labels ``y``
        (computed in evaluation mode, ``batch_size`` at a time; the mode is restored)."""
        if self.density is None:
            raise ValueError("fit_density needs model.net.density (a ClassDensity).")
        was_training = self.training
        self.eval()
        z = torch.cat([self.features(x[i:i + batch_size])
                       for i in range(0, x.shape[0], batch_size)])
        self.train(was_training)
        return self.density.fit(z, y, step=step)
