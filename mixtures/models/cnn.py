"""The small MNIST CNN of the reference (PyTorch's MNIST example): two convolutions, a 128-unit
feature, then a classifier head — a :class:`~mixtures.models.GaussianMixtureClassifier` or the
usual linear layer (:class:`LinearHead`, the baseline).

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
    """

    def __init__(self, head: nn.Module, in_channels: int = 1, image_size: int = 28,
                 feature_dim: int = 128, dropout1: float = 0.25,
                 dropout2: float = 0.5) -> None:
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
