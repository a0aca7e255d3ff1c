"""Training regime of the image classifiers (``model=gmm_classifier``, ``model=cnn_linear``).

Minimises the mean negative log-likelihood of the labels with any optimizer (and optional
scheduler) from the config. Metrics (DDP-exact sums, per epoch): ``val/acc``, ``val/nll``,
``val/ece`` (expected calibration error, 15 bins), the same under ``test/``; for a Gaussian-
mixture head also the per-class component usage — the mean responsibility ``p(g | z, c)`` of
each component over the digits of class c — as ``val/usage_min`` (the least-used component's
share relative to 1/G) and the tensor :attr:`ClassifierModule.component_usage` (drawn by
:class:`~mixtures.callbacks.ClassifierFigure`).

Letters: B batch, C classes, G components per class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from mixtures.lit.base import global_batch_mean, unshare_metric_states
from mixtures.lit.optim import optimizer_factory, optimizers_from_config
from mixtures.lit.requirements import check_data
from mixtures.lit.saving import CheckpointLoading, build_net
from mixtures.metrics import ClassificationScores

__all__ = ["ClassifierModule"]

class ComponentUsage(Metric):
    """Summed responsibilities ``p(g | z, c)`` of the true class ``[C, G]`` and class counts."""

    full_state_update = False

    def __init__(self, num_classes: int, num_components: int) -> None:
        super().__init__()
        self.add_state("resp", torch.zeros(num_classes, num_components, dtype=torch.float64),
                       "sum")
        self.add_state("count", torch.zeros(num_classes, dtype=torch.float64), "sum")

    def update(self, resp: Tensor, labels: Tensor) -> None:
        """``resp`` ``[B, C, G]``, ``labels`` ``[B]``."""
        own = resp.detach().double()[torch.arange(labels.numel(), device=labels.device), labels]
        self.resp.index_add_(0, labels, own)
        self.count += torch.bincount(labels, minlength=self.count.numel()).double()

    def compute(self) -> Tensor:
        """Mean responsibility of each component within its class ``[C, G]`` (rows sum to 1)."""
        return self.resp / self.count.clamp_min(1)[:, None]


class ClassifierModule(CheckpointLoading, L.LightningModule):
    """A network that returns class log-probabilities, trained on the labels' NLL.

    Args:
        net: ``nn.Module`` ``x [B, ·] → log p(c | x) [B, C]`` (e.g.
            :class:`~mixtures.models.ConvNet` with a Gaussian-mixture or linear head).
        optimizer: a partial torch optimizer (the ``optimizer`` config group).
        lr: learning rate that replaces the optimizer's (None: keep ``optimizer.lr``).
        scheduler: optional partial learning-rate scheduler (``scheduler`` group, e.g. step).
        ece_bins: bins of the expected calibration error.
    """

    #: the data this module trains on (:mod:`mixtures.lit.requirements`)
    data_kind = "images"

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lr: float | None = None,
        scheduler: Callable[..., Any] | None = None,
        ece_bins: int = 15,
    ) -> None:
        super().__init__()
        net = build_net(net)  # or a saved config of it (mixtures.lit.saving)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer_factory(optimizer, lr)
        self.scheduler_factory = scheduler
        self.val_scores, self.test_scores = ClassificationScores(ece_bins), \
            ClassificationScores(ece_bins)
        head = getattr(net, "head", net)
        self.mixture_head = head if hasattr(head, "component_responsibilities") else None
        if self.mixture_head is not None:
            c, g = self.mixture_head.num_classes, self.mixture_head.num_components
            self.val_usage, self.test_usage = ComponentUsage(c, g), ComponentUsage(c, g)
        self.component_usage: Tensor | None = None  # [C, G] of the last evaluation

    def model_sizes(self) -> dict[str, int]:
        """No size to compare: the images' shape is the network's, the classes may be fewer."""
        return {}

    def setup(self, stage: str) -> None:
        unshare_metric_states(self)
        check_data(self, self.trainer.datamodule if self._trainer is not None else None)

    def configure_optimizers(self) -> Any:
        return optimizers_from_config(self.net.parameters(), self.optimizer_factory,
                                      self.scheduler_factory, monitor="val/nll")

    # -- steps --------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Class log-probabilities ``[B, C]``."""
        return self.net(x)

    def class_log_likelihood(self, x: Tensor) -> Tensor:
        """``log p(x | c)`` ``[B, C]`` of the head (logits for a linear head)."""
        return self.net.class_log_likelihood(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = batch
        loss = global_batch_mean(self, nn.functional.nll_loss(self.net(x), y, reduction="none"))
        self.log("train/nll", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=x.shape[0], sync_dist=True)
        return loss

    def _eval_step(self, batch: tuple[Tensor, ...], scores: ClassificationScores,
                   usage: ComponentUsage | None) -> None:
        x, y = batch
        if usage is None:
            scores.update(self.net(x), y)
            return
        feats = self.net.features(x) if self.mixture_head is not self.net else x
        scores.update(self.mixture_head(feats), y)
        usage.update(self.mixture_head.component_responsibilities(feats), y)

    def _eval_epoch_end(self, prefix: str, scores: ClassificationScores,
                        usage: ComponentUsage | None) -> None:
        result = scores.compute()
        for name in ("acc", "nll", "ece"):
            self.log(f"{prefix}/{name}", result[name].float(), prog_bar=name == "acc")
        scores.reset()
        if usage is not None:
            self.component_usage = usage.compute().float()
            share = self.component_usage.amin() * self.component_usage.shape[1]
            self.log(f"{prefix}/usage_min", share)
            usage.reset()

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, self.val_scores, getattr(self, "val_usage", None))

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_scores, getattr(self, "val_usage", None))

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, self.test_scores, getattr(self, "test_usage", None))

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_scores, getattr(self, "test_usage", None))
