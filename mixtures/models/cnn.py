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
With ``combine_confidence=True`` it combines the density's score with the classifier's
confidence ``−max_c log p(c | x)`` (Fisher's rule on their tail probabilities among validation
digits, :class:`~mixtures.models.score_calibration.TailCalibration`): the density alone ranks
digits of classes never trained on (the open-set protocol) barely above the known ones, where
the classifier is unsure of them.

Letters: B batch, C classes, F = 128 features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixtures.models.score_calibration import TailCalibration

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
        combine_confidence: with a post-hoc density, :meth:`ood_score` combines the density's
            ``−log p(z)`` with the classifier's confidence ``−max_c log p(c | x)`` by Fisher's
            rule on their tail probabilities among validation digits
            (:class:`~mixtures.models.score_calibration.TailCalibration`, fitted by
            :meth:`calibrate`): the density sees inputs unlike digits, the confidence digits of
            unseen classes. ``False``: the density alone.
    """

    def __init__(self, head: nn.Module, in_channels: int = 1, image_size: int = 28,
                 feature_dim: int = 128, dropout1: float = 0.25,
                 dropout2: float = 0.5, density: nn.Module | None = None,
                 spectral_norm: float | None = None, conv_means: bool = False,
                 combine_confidence: bool = False) -> None:
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
        if combine_confidence and density is None:
            raise ValueError("model.net.combine_confidence=true combines the post-hoc density "
                             "with the confidence: set model.net.density too, or "
                             "model.net.combine_confidence=false.")
        #: tail probabilities of [density score, confidence score] among validation digits
        self.calibration = TailCalibration(2) if combine_confidence else None

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
            raise ValueError(f"source={source!r}: choose auto, head or density "
                             "(ood_score also takes combined).")
        fitted = self.density is not None and self.density.is_fitted
        if source == "density" or (source == "auto" and fitted):
            if self.density is None:
                raise ValueError("source='density' needs a post-hoc density: set "
                                 "model.net.density (see conf/model/gmm_classifier.yaml).")
            return self.density.log_prob(self.density_features(x))
        return self.head.log_density(self.features(x))

    def confidence_score(self, x: Tensor) -> Tensor:
        """``−max_c log p(c | x)`` ``[B]``: high where the classifier is unsure."""
        return -self(x).amax(dim=1)

    def ood_score(self, x: Tensor, source: str = "auto") -> Tensor:
        """Out-of-distribution score ``[B]``, higher for more anomalous inputs. ``source``:
        ``head`` or ``density``: ``−log_density(x, source)``; ``combined``: Fisher's
        ``−log P(S_d ≥ s_d) − log P(S_c ≥ s_c)`` of the density score and
        :meth:`confidence_score` among the calibration digits (``combine_confidence``);
        ``auto``: ``combined`` when calibrated, else ``density`` when fitted, else ``head``."""
        calibrated = self.calibration is not None and self.calibration.is_fitted
        if source == "combined" or (source == "auto" and calibrated):
            if not calibrated:
                raise ValueError("source='combined' needs a calibrated combination: set "
                                 "model.net.combine_confidence=true and fit the density "
                                 "(model.posthoc=true), or call calibrate(x).")
            return self.calibration.combined(self._score_pair(x))
        return -self.log_density(x, source)

    def _score_pair(self, x: Tensor) -> Tensor:
        """``[B, 2]``: the post-hoc density's ``−log p(z)`` and :meth:`confidence_score`."""
        return torch.stack([-self.log_density(x, "density"), self.confidence_score(x)], dim=1)

    @torch.no_grad()
    def calibrate(self, x: Tensor, batch_size: int = 1000) -> None:
        """Fit the combination's tail probabilities to in-distribution images ``x`` not used
        for training (validation digits), in evaluation mode (the mode is restored)."""
        if self.calibration is None:
            raise ValueError("calibrate needs model.net.combine_confidence=true.")
        self.calibration.fit(self._in_eval_mode(self._score_pair, x, batch_size))

    @torch.no_grad()
    def _in_eval_mode(self, fn, x: Tensor, batch_size: int) -> Tensor:
        """``fn`` of ``x`` in evaluation mode, ``batch_size`` rows at a time, concatenated
        (the mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def fit_density(self, x: Tensor, y: Tensor, batch_size: int = 1000,
                    step: int = 0) -> dict[str, Tensor]:
        """Fit the post-hoc density to the :meth:`density_features` of training images ``x``
        with labels ``y`` (computed in evaluation mode, ``batch_size`` at a time; the mode is
        restored)."""
        if self.density is None:
            raise ValueError("fit_density needs model.net.density (a ClassDensity).")
        z = self._in_eval_mode(self.density_features, x, batch_size)
        return self.density.fit(z, y, step=step)
