"""Natural-gradient variational inference for a Dirichlet-process mixture (``model=dpmm_*``).

Every training step is an SVI step: the model's backward puts the natural gradient of the
variational statistics into ``.grad`` (:mod:`mixtures.models.dpmm`) and plain SGD with learning
rate ``ρ_t = (t + τ)^(−κ)`` (capped at 1) takes ``s ← (1 − ρ_t) s + ρ_t ŝ``. With the full batch
and κ = 0 (ρ = 1) this is coordinate-ascent VI and the ELBO never decreases; with mini-batches
use a decaying step (0.5 < κ ≤ 1). The ``optimizer`` config group does not apply: any other
optimizer would not take the natural-gradient step.

Under DDP each rank scales its batch by ``world_size / |B|`` with the *global* batch size |B|,
so the gradient average DDP takes is exactly the single-process step; points are not padded.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from mixtures.lit.base import MixtureModule, global_batch_mean
from mixtures.metrics import LogLikelihood
from mixtures.models.dpmm import DPMM
from mixtures.models.dpmm_moves import global_moves

__all__ = ["DPMMModule"]

warnings.filterwarnings("ignore", message=r".*The number of training batches.*")


class DPMMModule(MixtureModule):
    """Dirichlet-process Gaussian mixture trained by stochastic variational inference.

    Args:
        net: the :class:`~mixtures.models.DPMM` (``model.net``: truncation K, D, covariance,
            priors as in scikit-learn's ``BayesianGaussianMixture``, init, active threshold).
        tau, kappa: step size ``ρ_t = min(1, (t + τ)^(−κ))`` at step t (κ = 0: ρ = 1).
        tol: stop when the training ELBO per point changes by less than this over an epoch
            (null: run all epochs).
        moves_every_n_epochs: every this many epochs, try the ELBO-checked sort / merge /
            prune / re-seed moves of :mod:`mixtures.models.dpmm_moves` on the training data
            (null: never).
        max_merges: merge candidates tried per round.
        eval_every_n_epochs: evaluate (the Student-t predictive, ELBO, ARI / NMI, BIC) every
            this many epochs, and at the first and the last
            (:class:`~mixtures.lit.base.MixtureModule`; ``model=dpmm``: 10).

    The epoch's bookkeeping — training ELBO, ``train/active_k``, the moves and the stopping
    test — runs after its last training batch, before validation: evaluation, figures and
    checkpoints see the epoch's final model, and the epoch that meets ``tol`` is evaluated.
    """

    def __init__(
        self,
        net: DPMM,
        tau: float = 1.0,
        kappa: float = 0.0,
        tol: float | None = None,
        moves_every_n_epochs: int | None = None,
        max_merges: int = 5,
        eval_every_n_epochs: int = 1,
    ) -> None:
        super().__init__(net, eval_every_n_epochs)
        self.save_hyperparameters(ignore=["net"])
        if not (0.0 <= kappa <= 1.0):
            raise ValueError(f"model.kappa={kappa} must lie in [0, 1]: 0 for full-batch "
                             "coordinate ascent, in (0.5, 1] for mini-batch SVI.")
        if not tau >= 0:
            raise ValueError(f"model.tau={tau} must be ≥ 0 (the step delay, e.g. 1).")
        if tol is not None and not tol > 0:
            raise ValueError(f"model.tol={tol} must be positive or null.")
        if moves_every_n_epochs is not None and not moves_every_n_epochs >= 1:
            raise ValueError(f"model.moves_every_n_epochs={moves_every_n_epochs} must be a "
                             "positive integer or null.")
        self.val_elbo, self.test_elbo = LogLikelihood(), LogLikelihood()
        self._epoch_elbo = torch.zeros((), dtype=torch.float64)  # Σ ELBO terms (on the device)
        self._epoch_points = 0  # points of this rank's batches (on the host: no transfer)
        self._last_elbo: float | None = None

    # -- optimisation: SGD on the natural gradient ----
    def step_size(self, step: int) -> float:
        """``ρ_t = min(1, (t + τ)^(−κ))``."""
        kappa, tau = self.hparams.kappa, self.hparams.tau
        if kappa == 0:
            return 1.0
        return min(1.0, (step + tau) ** (-kappa)) if step + tau > 0 else 1.0

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.model.parameters(), lr=1.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self.step_size)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        self._epoch_elbo = torch.zeros((), dtype=torch.float64, device=self.device)
        self._epoch_points = 0

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0]
        _, neg_elbo = self.model(x)
        # DDP averages gradients over ranks: the global-batch weighting makes that average the
        # natural gradient of the global batch mean.
        loss = global_batch_mean(self, neg_elbo)
        with torch.no_grad():  # device-side sums: no host synchronisation per batch
            self._epoch_elbo -= neg_elbo.detach().double().sum()
        self._epoch_points += x.shape[0]
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.trainer.num_training_batches - 1:
            self._end_of_epoch()

    def _end_of_epoch(self) -> None:
        """After the epoch's last step (before validation): the epoch's ELBO, the moves, and
        whether to stop."""
        # the step size of the epoch's last step (logged once per epoch, not per step)
        self.log("train/rho", self.step_size(self.global_step - 1), on_step=False,
                 on_epoch=True)
        sums = torch.stack([self._epoch_elbo,
                            self._epoch_elbo.new_tensor(float(self._epoch_points))])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        total, points = sums.tolist()  # the epoch's one host synchronisation
        if points == 0:
            return
        elbo = total / points
        if not math.isfinite(elbo):
            raise FloatingPointError(
                f"the ELBO became {elbo} at epoch {self.current_epoch}; standardise the data "
                "(data.standardize), train in float64 (trainer.precision=64) or raise "
                "covariance.min_scale."
            )
        self.log("train/elbo", elbo, prog_bar=True, on_step=False, on_epoch=True,
                 sync_dist=False, rank_zero_only=False)
        every = self.hparams.moves_every_n_epochs
        moved = False
        if every and (self.current_epoch + 1) % every == 0:
            # every rank holds the whole training set and takes the same decisions
            accepted = global_moves(self.model, self.checked_train_tensor(),
                                    max_merges=self.hparams.max_merges)
            self.log("train/moves", float(sum(accepted.values())), on_step=False,
                     on_epoch=True)
            moved = any(accepted.values())
        active = (self.model.weights > self.model.active_threshold).sum()  # on the device
        self.log("train/active_k", active.float(), on_step=False, on_epoch=True)
        tol = self.hparams.tol
        if moved:  # the ELBO jumped: do not stop on this epoch's change
            self._last_elbo = None
            return
        if tol is not None and self._last_elbo is not None and abs(elbo - self._last_elbo) < tol:
            self.trainer.should_stop = True  # before validation: the last epoch is evaluated
        self._last_elbo = elbo

    # -- evaluation ----
    def _eval_step(self, batch, ll, scores) -> None:
        x = batch[0]
        elbo_terms = self.val_elbo if ll is self.val_ll else self.test_elbo
        with torch.no_grad():
            resp, log_norm = self.model.local_step(x)
            ll.update(self.model.score_samples(x))
        elbo_terms.update(log_norm)
        if scores is not None and len(batch) > 1:
            scores.update(batch[1], resp.argmax(-1))

    def _eval_epoch_end(self, prefix, ll, scores) -> None:
        elbo_terms = self.val_elbo if prefix == "val" else self.test_elbo
        stats = elbo_terms.compute()
        elbo_terms.reset()
        kl = self.model.kl() / self.model.dataset_size.double()
        active = (self.model.weights > self.model.active_threshold).sum()
        self.log_dict({f"{prefix}/elbo": (stats["mean"] - kl).float(),
                       f"{prefix}/active_k": active.float()}, sync_dist=True,
                      prog_bar=prefix == "val")
        MixtureModule._eval_epoch_end(self, prefix, ll, scores)  # (shared by the memoized module)
