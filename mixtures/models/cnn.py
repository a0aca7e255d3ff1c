"""The small MNIST CNN of the reference (PyTorch's MNIST example): two convolutions, a 128-unit
feature, then a classifier head — a :class:`~mixtures.models.GaussianMixtureClassifier` or the
usual linear layer (:class:`LinearHead`, the baseline) — and optionally a post-hoc
:class:`~mixtures.models.ClassDensity` of the feature for out-of-distribution scores.

``spectral_norm=c`` bounds the spectral norm of every weight of the body by ``c`` (the
feature-scale control of DDU, Mukhoti et al. 2021; :class:`SoftSpectralNorm`).

``conv_means=True`` gives the post-hoc density more than the 128-unit feature: each
convolution's per-channel mean activation (after its ReLU) is appended, ``[B, F + 32 + 64]``
(:meth:`ConvNet.density_features`; the feature ensemble of Lee et al. 2018, as one Gaussian per
class component over the concatenation). The last feature alone forgets how an input looks at
the pixel level: shuffled and inverted digits land inside the digit classes' feature density
(AUROC 0.94 at one seed of ``experiments/gmm_classifier``), while their convolution statistics
are far from every digit's (AUROC 1.000 with the means; the classification is unchanged).

``ood_score(x)`` is higher for more anomalous inputs: ``−log p(z)`` of the fitted post-hoc
density when there is one, else the head's ``−log_density`` (a mixture head's
``logsumexp_c log π_c p(z | c)``; for a linear head the "energy" ``logsumexp_c`` of the logits).

Letters: B batch, C classes, F = 128 features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvNet", "LinearHead", "SoftSpectralNorm"]


class SoftSpectralNorm(nn.Module):
    """Parametrisation ``W ↦ W / max(1, σ(W) / c)``: the weight's spectral norm capped at ``c``
    (DDU's soft spectral normalisation; ``torch.nn.utils.parametrizations.spectral_norm``
    always divides by σ, i.e. c = 1 with equality).

    σ is estimated by power iteration on the weight reshaped to ``[out, in·k·k]`` (Miyato et al.
    2018; for a convolution an approximation of its operator norm), one step per training
    forward, vectors ``u`` ``[out]`` and ``v`` ``[in·k·k]`` kept in buffers (so a checkpoint
    resumes the estimate); evaluation reuses them without a step.
    """

    def __init__(self, weight: Tensor, coeff: float, n_power_iterations: int = 1,
                 eps: float = 1e-12) -> None:
        super().__init__()
        if not coeff > 0:
            raise ValueError(f"spectral_norm={coeff} must be > 0 (or null for none).")
        self.coeff, self.n_power_iterations, self.eps = float(coeff), n_power_iterations, eps
        w = weight.detach().flatten(1)  # [out, in·k·k]
        gen = torch.Generator(device="cpu").manual_seed(0)
        u = torch.randn(w.shape[0], generator=gen, dtype=w.dtype).to(w.device)
        self.register_buffer("u", nn.functional.normalize(u, dim=0, eps=eps))
        self.register_buffer("v", nn.functional.normalize(w.t() @ self.u, dim=0, eps=eps))

    def forward(self, weight: Tensor) -> Tensor:
        w = weight.flatten(1)  # [out, in·k·k]
        if self.training:
            with torch.no_grad():
                for _ in range(self.n_power_iterations):
                    self.v.copy_(nn.functional.normalize(w.t() @ self.u, dim=0, eps=self.eps))
                    self.u.copy_(nn.functional.normalize(w @ self.v, dim=0, eps=self.eps))
        sigma = torch.dot(self.u, w @ self.v)  # [] differentiable in W (u, v held fixed)
        return weight / torch.clamp(sigma / self.coeff, min=1.0)


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
        spectral_norm: ``c`` > 0 caps the spectral norm of each convolution's and the feature
            layer's weight at ``c`` (:class:`SoftSpectralNorm`); ``None``: unconstrained.
        conv_means: the post-hoc density sees the feature and each convolution's per-channel
            mean activation (``density.feature_dim`` = ``feature_dim`` + 96); ``False``: the
            feature alone.
    """

    def __init__(self, head: nn.Module, in_channels: int = 1, image_size: int = 28,
                 feature_dim: int = 128, dropout1: float = 0.25,
                 dropout2: float = 0.5, density: nn.Module | None = None,
                 spectral_norm: float | None = None, conv_means: bool = False) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        side = (image_size - 4) // 2
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(dropout1), nn.Flatten(),
            nn.Linear(64 * side * side, feature_dim), nn.ReLU(), nn.Dropout(dropout2),
        )
        if spectral_norm is not None:
            for layer in self.body:
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrize.register_parametrization(
                        layer, "weight", SoftSpectralNorm(layer.weight, spectral_norm))
        self.head = head
        self.conv_means = bool(conv_means)
        #: width of :meth:`density_features`
        self.density_dim = feature_dim + (sum(layer.out_channels for layer in self.body
                                              if isinstance(layer, nn.Conv2d))
                                          if self.conv_means else 0)
        if density is not None and density.feature_dim != self.density_dim:
            what = (f"the network's feature_dim={feature_dim} plus its convolutions' "
                    f"{self.density_dim - feature_dim} channel means (conv_means=true)"
                    if self.conv_means else f"the network's feature_dim={feature_dim}")
            raise ValueError(f"model.net.density.feature_dim={density.feature_dim} must be "
                             f"{self.density_dim}: {what}.")
        self.density = density

    def _images(self, x: Tensor) -> Tensor:
        """Flattened images ``[B, H·W]`` as ``[B, channels, H, W]`` (4-d input unchanged)."""
        if x.dim() == 2:
            return x.view(x.shape[0], self.in_channels, self.image_size, self.image_size)
        return x

    def features(self, x: Tensor) -> Tensor:
        """The 128-unit feature ``[B, F]`` of images, flattened ``[B, H·W]`` or ``[B, 1, H, W]``."""
        return self.body(self._images(x))

    def density_features(self, x: Tensor) -> Tensor:
        """What the post-hoc density models, ``[B, density_dim]``: the feature, followed with
        ``conv_means`` by each convolution's per-channel mean activation after its ReLU."""
        if not self.conv_means:
            return self.features(x)
        h, means = self._images(x), []
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.ReLU) and h.dim() == 4:
                means.append(h.mean(dim=(2, 3)))  # [B, channels]
        return torch.cat([h, *means], dim=1)

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
        fitted = self.density is not None and self.density.is_fitted
        if source == "density" or (source == "auto" and fitted):
            if self.density is None:
                raise ValueError("source='density' needs a post-hoc density: set "
                                 "model.net.density (see conf/model/gmm_classifier.yaml).")
            return self.density.log_prob(self.density_features(x))
        return self.head.log_density(self.features(x))

    def ood_score(self, x: Tensor, source: str = "auto") -> Tensor:
        """Out-of-distribution score ``[B]``, higher for more anomalous inputs:
        ``−log_density(x, source)``."""
        return -self.log_density(x, source)

    @torch.no_grad()
    def fit_density(self, x: Tensor, y: Tensor, batch_size: int = 1000,
                    step: int = 0) -> dict[str, Tensor]:
        """Fit the post-hoc density to the :meth:`density_features` of training images ``x``
        with labels ``y`` (computed in evaluation mode, ``batch_size`` at a time; the mode is
        restored)."""
        if self.density is None:
            raise ValueError("fit_density needs model.net.density (a ClassDensity).")
        was_training = self.training
        self.eval()
        z = torch.cat([self.density_features(x[i:i + batch_size])
                       for i in range(0, x.shape[0], batch_size)])
        self.train(was_training)
        return self.density.fit(z, y, step=step)
