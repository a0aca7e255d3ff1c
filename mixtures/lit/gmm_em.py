"""Exact EM for a Gaussian mixture under Lightning (``model=gmm_em``).

One epoch is one EM iteration: every training batch adds its sufficient statistics (E-step), the
sums are reduced across DDP ranks, and the M-step runs after the epoch's last batch, before
validation. Statistics are sums, so any batch size (N need not divide evenly) and any number of
processes give exactly the full-batch result. There is no optimizer and no gradient; training
stops when every restart's mean log-likelihood changes by less than ``tol``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from mixtures.lit.base import MixtureModule
from mixtures.models.em import EMStatistics, GaussianMixtureEM

__all__ = ["GMMEM"]

# EM has no optimizer by design; Lightning warns about that on every fit.
warnings.filterwarnings("ignore", message=r".*configure_optimizers.*returned .None.*")


class GMMEM(MixtureModule):
    """Gaussian mixture fitted by expectation–maximisation.

    Args:
        net: the :class:`~mixtures.models.GaussianMixtureEM` (``model.net``: K, D, covariance
            type, restarts, ``reg_covar``, init, ``means_init``); evaluation uses its restart
            with the best lower bound.
        tol: convergence threshold on the change of the mean log-likelihood.
        eval_every_n_epochs: evaluate every this many iterations, and at the first and the
            last (:class:`~mixtures.lit.base.MixtureModule`; ``model=gmm_em``: 10).
    """

    def __init__(self, net: GaussianMixtureEM, tol: float = 1e-3,
                 eval_every_n_epochs: int = 1) -> None:
        super().__init__(net, eval_every_n_epochs)
        self.save_hyperparameters(ignore=["net"])
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
            raise ValueError(f"model.tol must be a number ≥ 0 (0: run trainer.max_epochs "
                             f"iterations), got {tol!r}.")
        self.automatic_optimization = False
        # DistributedDataParallel refuses a module with nothing to train; EM has no gradients.
        self._ddp_placeholder = nn.Parameter(torch.zeros(()))
        self._stats: EMStatistics | None = None
        self._counts: Tensor | None = None

    def configure_optimizers(self) -> None:
        return None

    def _count_step(self) -> None:
        """Count the M-step as the trainer's step (one per iteration).

        EM calls no optimizer, so ``global_step`` would stay 0: ``ModelCheckpoint`` (which
        saves only when it moved) would never write ``last.ckpt`` and ``trainer.max_steps``
        would never stop a run. The manual-optimisation step counter is what Lightning reads
        for ``global_step`` and saves in the checkpoint's loop state, so a resumed run
        continues the count.
        """
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    def on_train_end(self) -> None:
        """Warn when a dense covariance was fitted from fewer points than it has dimensions
        (N_k ≤ D): its scatter is singular, so the covariance in the missing directions is
        ``reg_covar`` alone and held-out likelihoods are meaningless (a val/nll of 1e8, not an
        error). Raised once, at the end, from the last iteration's counts."""
        d = self.model.num_features
        if self._counts is None or self.model.cov.raw_size(d) <= d:  # not a dense type
            return
        counts = self._counts[self.model.best_restart]
        if self.model.cov.shared:
            counts = counts.sum(-1, keepdim=True)
        smallest = float(counts.min())
        if smallest <= d:
            warnings.warn(
                f"a {d}-dimensional dense covariance was fitted from {smallest:.1f} points "
                f"(at most D = {d}): it is singular but for reg_covar="
                f"{self.model.reg_covar:g}, so densities and held-out scores are not "
                "meaningful. Use covariance=diag (or scalar), fewer components, more data, "
                "or a larger model.net.reg_covar.", RuntimeWarning, stacklevel=1)

    # -- one EM iteration per epoch -------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._stats = None

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        stats = self.model.statistics(batch[0])
        self._stats = stats if self._stats is None else self._stats + stats
        if batch_idx == self.trainer.num_training_batches - 1:
            self._m_step()

    def _m_step(self) -> None:
        assert self._stats is not None
        strategy = self.trainer.strategy
        stats = EMStatistics(*(strategy.reduce(t, reduce_op="sum")
                               for t in self._stats.as_tuple()))
        self._stats = None
        self._counts = stats.counts  # [R, K], for the check at the end of training
        self.model.em_step(stats, self.hparams.tol)
        self._count_step()
        # one host synchronisation per iteration: the finiteness checks and convergence together
        names = ("log_weights", "means", "raw_covariance")
        flags = torch.stack([torch.isfinite(getattr(self.model, n)).all() for n in names]
                            + [self.model.converged.all()]).tolist()
        for name, finite in zip(names, flags, strict=False):
            if not finite:
                raise FloatingPointError(
                    f"EM produced a non-finite '{name}' at iteration "
                    f"{int(self.model.n_iter.max())}"
                    "; raise model.net.reg_covar, standardise the data, or train in float64 "
                    "(trainer.precision=64)."
                )
        bound = self.model.lower_bound  # the best restart's: the largest finite bound
        best = torch.where(torch.isfinite(bound), bound, -torch.inf).max()
        self.log("train/nll", -best.float(), prog_bar=True)
        self.log("train/converged", self.model.converged.float().mean())
        if flags[-1]:
            # set before validation: this last iteration is evaluated
            self.trainer.should_stop = True
