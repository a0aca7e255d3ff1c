"""Training regime of the mixture density network (``model=mdn``).

Minimises the mean negative log-likelihood ``−log p(y | x)`` (full Gaussian constant) with any
torch optimizer and optional learning-rate scheduler from the config. The data are standardised
by the DataModule; the module keeps the maps as buffers (saved in checkpoints) and reports
densities in the **original units** of ``y``: ``val/nll`` is the mean of
``−log p_std(z | x) + Σ_j log scale_j`` (``val/nll_standardized`` is the standardised-unit value).

Metrics (sums over batches and DDP ranks): ``val/nll``, ``val/nll_standardized``,
``val/coverage50``, ``val/coverage90`` (fraction of held-out targets inside the central 50% /
90% predictive interval of each target dimension, from the PIT), ``val/calibration_error``
(largest gap between the PIT's CDF and the uniform one) and, for 1-D targets, ``val/crps``
(by sampling, original units); the same under ``test/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor

from mixtures.data.standardize import Standardizer
from mixtures.lit.base import global_batch_mean, prepare_process, take_standardizers
from mixtures.lit.optim import optimizer_factory, optimizers_from_config
from mixtures.lit.requirements import check_data
from mixtures.lit.saving import CheckpointLoading, build_net
from mixtures.metrics import Calibration, LogLikelihood, crps_from_samples
from mixtures.models.mdn import MixtureDensityNetwork

__all__ = ["MDNModule"]

NO_TARGETS = (
    "model=mdn is a conditional density p(y | x) and needs a regression data set with targets: "
    "data=inverse_sine, ring, heteroscedastic, diabetes, or data=file data.target_columns=[...]"
)


class MDNModule(CheckpointLoading, L.LightningModule):
    """Mixture density network fitted by gradient descent on the negative log-likelihood.

    Args:
        net: the :class:`~mixtures.models.MixtureDensityNetwork` (``model.net``: F, D, K,
            hidden sizes, activation, covariance).
        optimizer: a partial torch optimizer (the ``optimizer`` config group).
        lr: learning rate that replaces the optimizer's (None: keep ``optimizer.lr``). The
            group's default suits the mixtures' few parameters, not a network.
        scheduler: optional partial learning-rate scheduler (``ReduceLROnPlateau`` monitors
            ``val/nll``).
        crps_samples: samples per input for the CRPS (1-D targets).
        pit_bins: bins of the PIT histogram.
        seed: seed of the initialisation and of the evaluation samples.
    """

    #: the data this module trains on (:mod:`mixtures.lit.requirements`)
    data_kind = "regression"

    def __init__(
        self,
        net: MixtureDensityNetwork,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lr: float | None = None,
        scheduler: Callable[..., Any] | None = None,
        crps_samples: int = 100,
        pit_bins: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        net = build_net(net)  # or a saved config of it (mixtures.lit.saving)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        if crps_samples < 2:
            raise ValueError(f"model.crps_samples must be ≥ 2, got {crps_samples}.")
        self.optimizer_factory = optimizer_factory(optimizer, lr)
        self.scheduler_factory = scheduler
        self.model = net
        num_targets = net.num_targets
        # the data's standardisation (identity until setup copies it; saved in checkpoints)
        self.x_standardizer = Standardizer(net.num_features)
        self.y_standardizer = Standardizer(num_targets)
        self.val_ll, self.test_ll = LogLikelihood(), LogLikelihood()
        self.val_cal = Calibration(num_targets, pit_bins)
        self.test_cal = Calibration(num_targets, pit_bins)
        self.val_crps, self.test_crps = LogLikelihood(), LogLikelihood()  # sum and count
        self.pit_histogram: Tensor | None = None  # of the last evaluation, for figures

    def model_sizes(self) -> dict[str, int]:
        """The sizes the network was built with (compared with the data's)."""
        return {"num_features": self.model.num_features, "num_targets": self.model.num_targets}

    # -- set-up ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Check the data, take its standardisation, and on ``fit`` initialise the network from
        the training targets (a checkpoint overrides)."""
        prepare_process(self)
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None:
            return
        check_data(self, dm)
        x, y = dm.split("train")
        take_standardizers(self, dm)
        if stage == "fit" and not bool(self.model.initialized):
            gen = torch.Generator(device=y.device).manual_seed(self.hparams.seed)
            self.model.initialize(y, gen)

    def configure_optimizers(self) -> Any:
        return optimizers_from_config(self.model.parameters(), self.optimizer_factory,
                                      self.scheduler_factory, monitor="val/nll")

    # -- units ----------------------------------------------------------------------------------
    @property
    def log_target_scale(self) -> Tensor:
        """``Σ_j log scale_j``: original-unit log-density = standardised one − this."""
        return self.y_standardizer.log_scale_sum

    def standardize_x(self, x: Tensor) -> Tensor:
        return self.x_standardizer(x)

    def log_prob_original(self, x: Tensor, y: Tensor) -> Tensor:
        """``log p(y | x)`` in the original units (``x`` ``[*B, F]``, ``y`` ``[*E, *B, D]``)."""
        z = self.y_standardizer(y)
        return self.model.log_prob(self.standardize_x(x), z) - self.log_target_scale

    def sample_original(self, x: Tensor, num_samples: int,
                        generator: torch.Generator | None = None) -> Tensor:
        """Draws ``[S, *B, D]`` in the original units for original-unit inputs ``[*B, F]``."""
        z = self.model.sample(self.standardize_x(x), num_samples, generator)
        return self.y_standardizer.inverse(z)

    # -- steps ----------------------------------------------------------------------------------
    @staticmethod
    def _xy(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        if len(batch) != 2 or batch[1].dim() != 2:
            raise ValueError(f"{NO_TARGETS}; batches must be (x [B, F], y [B, D]).")
        return batch[0], batch[1]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.model.log_prob(x, y)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = self._xy(batch)
        loss = global_batch_mean(self, -self.model.log_prob(x, y))  # standardised units
        self.log("train/nll", loss + self.log_target_scale, prog_bar=True, on_step=True,
                 on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def _eval_step(self, batch: tuple[Tensor, ...], batch_idx: int, ll: LogLikelihood,
                   cal: Calibration, crps: LogLikelihood) -> None:
        x, y = self._xy(batch)
        with torch.no_grad():
            ll.update(self.model.log_prob(x, y))
            cal.update(self.model.marginal_cdf(x, y))
            if self.model.num_targets == 1 and x.shape[0] > 0:
                gen = torch.Generator(device=x.device).manual_seed(
                    self.hparams.seed + 1_000_003 * batch_idx)
                draws = self.model.sample(x, self.hparams.crps_samples, gen)[..., 0]
                crps.update(crps_from_samples(draws, y[:, 0]) * self.y_standardizer.scale[0])

    def _eval_epoch_end(self, prefix: str, ll: LogLikelihood, cal: Calibration,
                        crps: LogLikelihood) -> None:
        nll_std = -ll.compute()["mean"]
        stats = cal.compute()
        metrics = {
            f"{prefix}/nll": nll_std + self.log_target_scale.double(),
            f"{prefix}/nll_standardized": nll_std,
            f"{prefix}/calibration_error": stats["error"],
        }
        for level, value in zip(cal.levels, stats["coverage"], strict=True):
            metrics[f"{prefix}/coverage{round(100 * level)}"] = value
        if crps.update_count > 0:
            metrics[f"{prefix}/crps"] = crps.compute()["mean"]
            crps.reset()
        self.pit_histogram = stats["histogram"].detach().cpu()
        ll.reset()
        cal.reset()
        metrics = {k: v.float() for k, v in metrics.items()}
        # already reduced over ranks by the metrics; sync_dist only averages equal values
        self.log_dict(metrics, prog_bar=prefix == "val", sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.val_ll, self.val_cal, self.val_crps)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_ll, self.val_cal, self.val_crps)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.test_ll, self.test_cal, self.test_crps)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_ll, self.test_cal, self.test_crps)

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        """Predictive ``mean``, ``variance`` and ``mode`` ``[B, D]`` in the original units."""
        x = batch[0]
        with torch.no_grad():
            return {
                "mean": self.y_standardizer.inverse(self.model.mean(x)),
                "variance": self.y_standardizer.scale.square() * self.model.variance(x),
                "mode": self.y_standardizer.inverse(self.model.mode(x)),
            }
