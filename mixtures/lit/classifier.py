"""Training regime of the image classifiers (``model=gmm_classifier``, ``model=cnn_linear``).

Minimises the mean negative log-likelihood of the labels with any optimizer (and optional
scheduler) from the config. Metrics (DDP-exact sums, per epoch): ``val/acc``, ``val/nll``,
``val/ece`` (expected calibration error, 15 bins), the same under ``test/``; for a Gaussian-
mixture head also the per-class component usage — the mean responsibility ``p(g | z, c)`` of
each component over the digits of class c — as ``val/usage_min`` (the least-used component's
share relative to 1/G) and the tensor :attr:`ClassifierModule.component_usage` (drawn by
:class:`~mixtures.callbacks.ClassifierFigure`).

A density of the features, for out-of-distribution (OOD) detection:

- ``generative_weight`` λ > 0 (a mixture head) trains on NLL(y | x) + λ · (−log p(z | y)),
  the head's class-conditional likelihood of the feature (a large-margin-GMM-style term,
  Wan et al. 2018, without the margin);
- ``posthoc=true`` (a network with a ``density``, :class:`~mixtures.models.ClassDensity`)
  fits it by EM to the training features after the last training epoch (before its
  validation, so the last checkpoint holds it; again at the end of fitting if training
  stopped elsewhere, re-saving the last checkpoint); with ``net.combine_confidence`` the
  network's :class:`~mixtures.models.score_calibration.TailCalibration` is then fitted to the
  validation digits' density and confidence scores (``ood_score`` combines the two).

:meth:`ClassifierModule.ood_score` is higher for more anomalous inputs. The test loop scores
the test digits and every OOD set the DataModule makes (``ood_sets``: noise, shuffled,
inverted, rotated; and the split ``heldout`` with ``data.classes``), logs
``test/ood_auroc_<set>`` (AUROC of telling the set from the test digits, computed on the
device) and keeps the scores in :attr:`ClassifierModule.ood_scores` for the figure.

Letters: B batch, C classes, G components per class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from mixtures.lit.base import global_batch_mean, prepare_process
from mixtures.lit.ood import ScoreList, auroc_tensor
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
        generative_weight: λ of the generative term −log p(z | y) (0: none; needs a mixture
            head).
        posthoc: fit the network's post-hoc ``density`` to the training features after
            training (it then gives the OOD score; the head still classifies).
        ood: score the DataModule's OOD sets in the test loop.
        ood_seed: seed of the random OOD sets (noise, shuffled pixels).
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
        generative_weight: float = 0.0,
        posthoc: bool = False,
        ood: bool = True,
        ood_seed: int = 0,
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
        if not (isinstance(generative_weight, int | float) and generative_weight >= 0):
            raise ValueError(f"model.generative_weight must be a number ≥ 0, got "
                             f"{generative_weight!r}; e.g. 0.01 (0: no generative term).")
        if generative_weight > 0 and self.mixture_head is None:
            raise ValueError("model.generative_weight > 0 needs a Gaussian-mixture head "
                             "(model=gmm_classifier); the linear head has no p(z | y).")
        if posthoc and getattr(net, "density", None) is None:
            raise ValueError("model.posthoc=true needs model.net.density (a ClassDensity, as in "
                             "conf/model/gmm_classifier.yaml); set one or model.posthoc=false.")
        self.posthoc = bool(posthoc)
        self.generative_weight, self.ood, self.ood_seed = float(generative_weight), bool(ood), \
            int(ood_seed)
        self._ood_metrics: dict[str, ScoreList] = {}
        #: OOD scores of the last test, ``{"in": [N], <set>: [N_set]}`` on the CPU
        self.ood_scores: dict[str, Tensor] = {}

    def model_sizes(self) -> dict[str, int]:
        """No size to compare: the images' shape is the network's, the classes may be fewer."""
        return {}

    def setup(self, stage: str) -> None:
        prepare_process(self)
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

    def ood_score(self, x: Tensor) -> Tensor:
        """Out-of-distribution score ``[B]`` (higher: more anomalous), ``−log p(z)`` of the
        post-hoc density when fitted, else of the head (see :meth:`ConvNet.ood_score`)."""
        return self.net.ood_score(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = batch
        if self.generative_weight == 0:
            nll = nn.functional.nll_loss(self.net(x), y, reduction="none")
            loss = global_batch_mean(self, nll)
        else:
            head = self.mixture_head
            z = self.net.features(x) if head is not self.net else x
            class_ll = head.class_log_likelihood(z)  # [B, C] log p(z | c)
            nll = nn.functional.nll_loss(torch.log_softmax(class_ll + head.log_prior, -1), y,
                                         reduction="none")
            gen = -class_ll.gather(1, y[:, None]).squeeze(1)  # [B] −log p(z | y)
            loss = global_batch_mean(self, nll + self.generative_weight * gen)
            self.log("train/generative", gen.detach().mean(), on_step=False, on_epoch=True,
                     batch_size=x.shape[0], sync_dist=True)
        self.log("train/nll", nll.detach().mean() if self.generative_weight else loss,
                 prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0],
                 sync_dist=True)
        return loss

    # -- the post-hoc density -------------------------------------------------------------------
    def _fit_density(self) -> None:
        dm = self.trainer.datamodule
        x, y = dm.split("train")
        self.net.fit_density(x, y, step=self.global_step)
        if getattr(self.net, "calibration", None) is not None:
            # the combination's tail probabilities: digits not trained on (validation), or the
            # training digits when there is no validation split
            x_val = dm.split("val")[0] if "val" in getattr(dm, "splits", {}) else x
            self.net.calibrate(x_val if x_val.shape[0] >= 10 else x)

    def on_validation_epoch_start(self) -> None:
        """Fit the post-hoc density before the last training epoch's validation."""
        trainer = self.trainer
        if not self.posthoc or trainer.sanity_checking \
                or trainer.state.fn != "fit":
            return
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs > 0 and self.current_epoch + 1 >= max_epochs:
            self._fit_density()

    def on_fit_end(self) -> None:
        """Training stopped before the last epoch's validation (max_steps, early stopping, no
        validation): fit the density now and re-save the last checkpoints with it."""
        if not self.posthoc or int(self.net.density.fitted_step) == self.global_step:
            return
        self._fit_density()
        for cb in self.trainer.checkpoint_callbacks:  # those saved at this very step
            path = getattr(cb, "_last_checkpoint_saved", "")
            if path and getattr(cb, "_last_global_step_saved", -1) == self.global_step:
                self.trainer.save_checkpoint(path)

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

    # -- test, with the OOD sets ------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        names = dm.ood_split_names() if self.ood and hasattr(dm, "ood_sets") \
            and hasattr(self.net, "ood_score") else ()
        self._ood_metrics = {n: ScoreList().to(self.device) for n in ("in", *names)} \
            if names else {}

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, self.test_scores, getattr(self, "test_usage", None))
        if not self._ood_metrics:
            return
        x = batch[0]
        gen = torch.Generator(device=x.device).manual_seed(
            self.ood_seed * 1_000_003 + self.global_rank * 100_003 + batch_idx)
        self._ood_metrics["in"].update(self.net.ood_score(x))
        for name, x_ood in self.trainer.datamodule.ood_sets(x, gen).items():
            self._ood_metrics[name].update(self.net.ood_score(x_ood))

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_scores, getattr(self, "test_usage", None))
        if not self._ood_metrics:
            return
        if "heldout" in self._ood_metrics:  # this rank's share of the held-out digits
            x = self.trainer.datamodule.split("heldout")[0]
            x = x[self.global_rank::self.trainer.world_size]
            for i in range(0, x.shape[0], 1000):
                self._ood_metrics["heldout"].update(self.net.ood_score(x[i:i + 1000]))
        scores = {name: m.compute() for name, m in self._ood_metrics.items()}
        for name, s in scores.items():
            if name != "in":  # OOD inputs should score higher: they are the positives
                self.log(f"test/ood_auroc_{name}", auroc_tensor(s, scores["in"]).float())
        self.ood_scores = {name: s.float().cpu() for name, s in scores.items()}
        for m in self._ood_metrics.values():
            m.reset()
