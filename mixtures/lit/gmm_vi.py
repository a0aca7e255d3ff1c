"""Bayesian Gaussian mixture by reparameterised variational inference (``model=gmm_vi``).

Every step draws S reparameterised samples of the global parameters, estimates the ELBO with
the assignment marginalised (logsumexp over components) and takes a step of any optimizer from
the ``optimizer`` group on its negative (:mod:`mixtures.models.vi`). Full batch or mini-batches:
the batch mean of the per-point loss is an unbiased estimate of −ELBO / N.

Logged: ``train/elbo`` (per point, the training estimate), ``train/grad_var`` (total variance of
the stochastic gradient, every ``grad_var_every_n_epochs``), and on held-out data ``val/elbo``
(``E_q[log p(x | θ)] − KL / N_train`` per point), ``val/nll`` (posterior-mean plug-in mixture,
as the other models), ``val/nll_predictive`` (Monte-Carlo posterior predictive), ``val/ari``,
``val/nmi``, ``val/bic``; the mixture figure of the posterior means.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mixtures.lit.base import MixtureModule, global_batch_mean
from mixtures.lit.optim import optimizer_factory, optimizers_from_config
from mixtures.metrics import LogLikelihood
from mixtures.models.vi import VariationalGMM

__all__ = ["GMMVI"]


class GMMVI(MixtureModule):
    """Finite Bayesian GMM trained by black-box (reparameterised) variational inference.

    Args:
        net: the :class:`~mixtures.models.VariationalGMM` (``model.net``: K, D, covariance,
            priors as in scikit-learn's ``BayesianGaussianMixture``, draws per step S, analytic
            or Monte-Carlo KL, init).
        optimizer: a partial torch optimizer (the ``optimizer`` group; default Adam, lr 0.05).
        scheduler: optional partial learning-rate scheduler (``+scheduler=cosine``: a decaying
            step lets the stochastic iterates settle instead of hovering around the optimum).
        eval_samples: draws of the Monte-Carlo predictive and ELBO on held-out data.
        seed: seed of the evaluation draws and of the gradient-variance diagnostic.
        grad_var_every_n_epochs: period of the gradient-variance diagnostic (null: never).
        grad_var_draws: independent gradient estimates it compares.
        eval_every_n_epochs: evaluate every this many epochs, and at the first and the last
            (:class:`~mixtures.lit.base.MixtureModule`).
    """

    def __init__(
        self,
        net: VariationalGMM,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        eval_samples: int = 64,
        seed: int = 0,
        grad_var_every_n_epochs: int | None = 10,
        grad_var_draws: int = 16,
        eval_every_n_epochs: int = 1,
    ) -> None:
        super().__init__(net, eval_every_n_epochs)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        for name, value in (("eval_samples", eval_samples), ("grad_var_draws", grad_var_draws)):
            if not (isinstance(value, int) and value >= 2):
                raise ValueError(f"model.{name} must be an integer ≥ 2, got {value!r}.")
        if grad_var_every_n_epochs is not None and not grad_var_every_n_epochs >= 1:
            raise ValueError(f"model.grad_var_every_n_epochs={grad_var_every_n_epochs} must be "
                             "a positive integer or null.")
        self.optimizer_factory = optimizer_factory(
            optimizer, default=functools.partial(torch.optim.Adam, lr=0.05))
        self.scheduler_factory = scheduler
        self.val_pred, self.test_pred = LogLikelihood(), LogLikelihood()
        self.val_expected, self.test_expected = LogLikelihood(), LogLikelihood()
        self._eval_draws = None
        self._last_batch: Tensor | None = None

    def configure_optimizers(self) -> Any:
        return optimizers_from_config(self.model.parameters(), self.optimizer_factory,
                                      self.scheduler_factory)

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0]
        loss = global_batch_mean(self, self.model(x))  # −ELBO / N, estimated
        self.log("train/elbo", -loss.detach(), prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=x.shape[0], sync_dist=True)
        self._last_batch = x.detach()
        return loss

    def on_train_epoch_end(self) -> None:
        every = self.hparams.grad_var_every_n_epochs
        if not every or (self.current_epoch + 1) % every or self._last_batch is None:
            return
        device = self._last_batch.device
        # its own random stream: the diagnostic does not change the training draws
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.hparams.seed + 104_729 * (self.current_epoch + 1))
            var = self.model.gradient_variance(self._last_batch, self.hparams.grad_var_draws)
        self.log("train/grad_var", var.float(), sync_dist=True)

    # -- evaluation -----------------------------------------------------------------------------
    def _draws(self):
        """The held-out draws of this evaluation epoch (same for every batch and rank)."""
        if self._eval_draws is None:
            device = self.model.loc.device
            with torch.no_grad(), torch.random.fork_rng(
                    devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(self.hparams.seed)
                self._eval_draws = self.model.rsample(self.hparams.eval_samples)
        return self._eval_draws

    def _eval_step(self, batch, ll, scores) -> None:
        super()._eval_step(batch, ll, scores)  # plug-in log-likelihood, ARI / NMI
        pred, expected = ((self.val_pred, self.val_expected) if ll is self.val_ll
                          else (self.test_pred, self.test_expected))
        with torch.no_grad():
            per_draw = self.model.draw_log_prob(batch[0], *self._draws())  # [B, S]
        pred.update(torch.logsumexp(per_draw, -1) - math.log(per_draw.shape[-1]))
        expected.update(per_draw.mean(-1))

    def _eval_epoch_end(self, prefix, ll, scores) -> None:
        pred, expected = ((self.val_pred, self.val_expected) if prefix == "val"
                          else (self.test_pred, self.test_expected))
        pred_stats, expected_stats = pred.compute(), expected.compute()
        pred.reset()
        expected.reset()
        self._eval_draws = None  # fresh parameters next epoch
        with torch.no_grad():
            kl = self.model.kl().double() / self.model.dataset_size.double()
        self.log_dict({f"{prefix}/elbo": (expected_stats["mean"] - kl).float(),
                       f"{prefix}/nll_predictive": (self.x_standardizer.log_scale_sum.to(
                           pred_stats["mean"]) - pred_stats["mean"]).float()},
                      sync_dist=True, prog_bar=prefix == "val")
        super()._eval_epoch_end(prefix, ll, scores)
