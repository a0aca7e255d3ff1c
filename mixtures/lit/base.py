"""Evaluation shared by every mixture LightningModule: held-out log-likelihood, BIC, ARI / NMI.

Subclasses provide :meth:`MixtureModule.weighted_log_prob` (``[B, K]``), the parameter count and
the mixture's parameters; this class logs ``val/…`` and ``test/…`` from DDP-exact sums.
"""

from __future__ import annotations

from abc import abstractmethod

import lightning as L
import torch
from torch import Tensor

from mixtures.metrics import ClusteringScores, LogLikelihood, bic

__all__ = ["MixtureModule"]


class MixtureModule(L.LightningModule):
    """Base LightningModule of the mixture models (metrics and summaries, no math)."""

    def __init__(self) -> None:
        super().__init__()
        self.val_ll, self.test_ll = LogLikelihood(), LogLikelihood()
        self.val_scores: ClusteringScores | None = None
        self.test_scores: ClusteringScores | None = None

    # -- to implement ---------------------------------------------------------------------------
    @abstractmethod
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log π_k + log N(x | k)`` ``[B, K]`` of the fitted (best) mixture."""

    @abstractmethod
    def mixture_parameters(self) -> dict[str, Tensor]:
        """Detached ``weights`` ``[K]``, ``means`` ``[K, D]``, ``covariances`` ``[K, D, D]``."""

    @abstractmethod
    def num_mixture_parameters(self) -> int:
        """Free parameters, for BIC."""

    @abstractmethod
    def initialize_model(self, x: Tensor) -> None:
        """Initialise ``self.model`` from the training points ``[N, D]`` (checked for K, D)."""

    @property
    def num_components(self) -> int:
        """K."""
        return self.model.num_components

    def setup(self, stage: str) -> None:
        """Create the clustering metrics; on ``fit``, initialise an uninitialised model from the
        DataModule's training tensor (before DDP wraps it; a restored checkpoint overrides)."""
        self.setup_scores()
        if stage == "fit" and not bool(self.model.initialized):
            self.initialize_model(self.checked_train_tensor())

    # -- shared ---------------------------------------------------------------------------------
    def train_tensor(self) -> Tensor | None:
        """The DataModule's training points, when it has them in memory."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        return getattr(dm, "train_tensor", None)

    def checked_train_tensor(self) -> Tensor:
        """Training points for initialisation, validated against K and D."""
        x = self.train_tensor()
        if x is None:
            raise RuntimeError(
                f"{type(self).__name__} initialises from the DataModule's `train_tensor`; pass a "
                "mixtures DataModule to trainer.fit, or initialise module.model yourself first."
            )
        k = self.num_components
        if k > x.shape[0]:
            raise ValueError(
                f"model.num_components={k} exceeds the number of training points "
                f"({x.shape[0]}); lower model.num_components or supply more data."
            )
        if x.shape[1] != self.model.num_features:
            raise ValueError(
                f"the data has {x.shape[1]} features but model.num_features="
                f"{self.model.num_features}; remove the override or fix the data."
            )
        return x

    def setup_scores(self) -> None:
        """Create ARI / NMI metrics when the DataModule has labels."""
        num_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if num_classes and self.val_scores is None:
            self.val_scores = ClusteringScores(num_classes, self.num_components)
            self.test_scores = ClusteringScores(num_classes, self.num_components)

    def predict_labels(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.weighted_log_prob(x).argmax(-1)

    def _eval_step(self, batch: tuple[Tensor, ...], ll: LogLikelihood,
                   scores: ClusteringScores | None) -> None:
        x = batch[0]
        with torch.no_grad():
            weighted = self.weighted_log_prob(x)  # [B, K]
        ll.update(torch.logsumexp(weighted, -1))
        if scores is not None and len(batch) > 1:
            scores.update(batch[1], weighted.argmax(-1))

    def _eval_epoch_end(self, prefix: str, ll: LogLikelihood,
                        scores: ClusteringScores | None) -> None:
        stats = ll.compute()
        metrics = {
            f"{prefix}/nll": -stats["mean"],
            f"{prefix}/bic": bic(stats["total"], self.num_mixture_parameters(), stats["count"]),
        }
        if scores is not None and scores.update_count > 0:
            cs = scores.compute()
            metrics[f"{prefix}/ari"] = cs["ari"]
            metrics[f"{prefix}/nmi"] = cs["nmi"]
            scores.reset()
        ll.reset()
        metrics = {k: v.float() for k, v in metrics.items()}
        # already reduced over ranks by the metrics; sync_dist only averages equal values
        self.log_dict(metrics, prog_bar=prefix == "val", sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, self.val_ll, self.val_scores)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_ll, self.val_scores)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, self.test_ll, self.test_scores)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_ll, self.test_scores)

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self.predict_labels(batch[0])
