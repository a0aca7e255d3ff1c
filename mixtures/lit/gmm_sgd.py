"""Gradient-descent training regime for a Gaussian mixture (``model=gmm_sgd``).

Minimises the mean negative log-likelihood with any torch optimizer, with separate learning
rates for the mixing weights (``mixture_lr``) and the components (``component_lr``). The model
is initialised from the DataModule's training tensor (k-means by default) before DDP wraps it,
and collapsed components are re-seeded during training.

No step waits for the device: ``train/nll`` is accumulated on the device and logged per epoch,
and on a GPU the collapse check reads its answer one check later (copied to the host
asynchronously), so a collapsed component is re-seeded ``reseed_every_n_steps`` steps after it
is first seen. On the CPU, where nothing is asynchronous, it is re-seeded at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from mixtures.lit.base import MixtureModule, global_batch_mean
from mixtures.lit.optim import check_lr, optimizer_factory
from mixtures.models.gmm import GaussianMixtureModel

__all__ = ["GMMSGD"]


class GMMSGD(MixtureModule):
    """Gaussian mixture fitted by gradient descent on the negative log-likelihood.

    Args:
        net: the :class:`~mixtures.models.GaussianMixtureModel` (``model.net``).
        optimizer: a partial torch optimizer (the ``optimizer`` config group; default Adam,
            lr 0.05).
        mixture_lr: learning rate of the mixing weights (None: the optimizer's ``lr``).
        component_lr: learning rate of means and covariances (None: the optimizer's ``lr``).
        seed: seed of re-seeding.
        reseed: re-seed collapsed components.
        min_weight: a component whose weight falls below this (default 1e-3 / K) is re-seeded.
        reseed_every_n_steps: how often the collapse check runs.
        eval_every_n_epochs: evaluate every this many epochs, and at the first and the last
            (:class:`~mixtures.lit.base.MixtureModule`).
    """

    def __init__(
        self,
        net: GaussianMixtureModel,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        mixture_lr: float | None = None,
        component_lr: float | None = None,
        seed: int = 0,
        reseed: bool = True,
        min_weight: float | None = None,
        reseed_every_n_steps: int = 10,
        eval_every_n_epochs: int = 1,
    ) -> None:
        super().__init__(net, eval_every_n_epochs)
        self.save_hyperparameters(ignore=["net", "optimizer"])
        check_lr("model.mixture_lr", mixture_lr)
        check_lr("model.component_lr", component_lr)
        self.optimizer_factory = optimizer_factory(
            optimizer, default=functools.partial(torch.optim.Adam, lr=0.05))
        self.min_weight = min_weight if min_weight is not None else 1e-3 / self.model.num_components
        self.register_buffer("num_reseeded", torch.zeros((), dtype=torch.long))
        self._collapse_seen = _LaggedFlag()

    # -- set-up -------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        mixture_lr, component_lr = self.hparams.mixture_lr, self.hparams.component_lr
        if mixture_lr is None and component_lr is None:
            # One group: works with every optimizer, LBFGS included.
            return self.optimizer_factory(self.model.parameters())
        groups: list[dict[str, Any]] = [
            {"params": self.model.mixture_weight_parameters(), "name": "mixture"},
            {"params": self.model.component_parameters(), "name": "components"},
        ]
        if mixture_lr is not None:
            groups[0]["lr"] = mixture_lr
        if component_lr is not None:
            groups[1]["lr"] = component_lr
        try:
            return self.optimizer_factory(groups)
        except ValueError as err:
            raise ValueError(
                f"{err}: this optimizer takes a single learning rate; drop model.mixture_lr "
                "and model.component_lr (or choose optimizer=adam / sgd)."
            ) from err

    # -- steps --------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.model.log_prob(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0]
        loss = global_batch_mean(self, -self.model.log_prob(x))
        # per epoch: a per-step value would be copied to the host (a synchronisation) each step
        self.log("train/nll", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.hparams.reseed or self.global_step % self.hparams.reseed_every_n_steps:
            return
        mask = self.model.collapsed(self.min_weight)
        if not self._collapse_seen(mask.any()) or not bool(mask.any()):
            return  # (the second test synchronises only once a collapse was seen)
        x = self.train_tensor()
        x = batch[0] if x is None else x
        gen = torch.Generator(device=x.device).manual_seed(
            self.hparams.seed + 7919 * int(self.global_step)
        )
        self.model.reseed(x, mask, gen)
        self._reset_optimizer_state(mask)
        self.num_reseeded += int(mask.sum())
        rank_zero_info(
            f"[gmm_sgd] step {self.global_step}: re-seeded collapsed component(s) "
            f"{mask.nonzero().flatten().tolist()}"
        )

    def _reset_optimizer_state(self, mask: Tensor) -> None:
        """Zero optimizer moments of re-seeded components (rows along the component dim)."""
        k = self.num_components
        for opt in self.trainer.optimizers:
            for p, state in opt.state.items():
                if p.dim() == 0 or p.shape[0] != k:
                    continue
                for value in state.values():
                    if isinstance(value, Tensor) and value.shape == p.shape:
                        value[mask] = 0

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.evaluating:
            self.log("train/reseeded", self.num_reseeded.float(), sync_dist=True)


class _LaggedFlag:
    """Reads a boolean device tensor without waiting for the device: on the CPU its value at
    once; on a GPU the value passed at the previous call (copied to pinned host memory
    asynchronously, so it has long arrived), False at the first."""

    def __init__(self) -> None:
        self._host: Tensor | None = None
        self._ready: torch.cuda.Event | None = None

    def __call__(self, flag: Tensor) -> bool:
        if flag.device.type != "cuda":
            return bool(flag)
        previous = False
        if self._ready is not None:
            self._ready.synchronize()
            previous = bool(self._host)
        if self._host is None:
            self._host = torch.empty((), dtype=torch.bool, pin_memory=True)
        self._host.copy_(flag, non_blocking=True)
        self._ready = torch.cuda.Event()
        self._ready.record()
        return previous
