"""Exact EM for a Gaussian mixture under Lightning (``model=gmm_em``).

One epoch is one EM iteration: every training batch adds its sufficient statistics (E-step), the
sums are reduced across DDP ranks, and the M-step runs after the epoch's last batch, before
validation. Statistics are sums, so any batch size (N need not divide evenly) and any number of
processes give exactly the full-batch result. There is no optimizer and no gradient; training
stops when every restart's mean log-likelihood changes by less than ``tol``.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from mixtures.distributions import CovarianceType
from mixtures.lit.base import MixtureModule
from mixtures.models.em import (
    EM_INIT_METHODS,
    EMStatistics,
    GaussianMixtureEM,
    initial_responsibilities,
)

__all__ = ["GMMEM"]

# EM has no optimizer by design; Lightning warns about that on every fit.
warnings.filterwarnings("ignore", message=r".*configure_optimizers.*returned .None.*")


class GMMEM(MixtureModule):
    """Gaussian mixture fitted by expectation–maximisation.

    Args:
        num_components: K.
        num_features: D (filled in from the data when null).
        covariance: covariance type (the ``covariance`` config group; ``shared_full`` is
            scikit-learn's "tied", ``scalar`` its "spherical").
        n_init: restarts, run side by side; the best by lower bound is used for evaluation.
        reg_covar: added to every variance in the M-step.
        tol: convergence threshold on the change of the mean log-likelihood.
        init: ``kmeans``, ``k-means++``, ``random`` or ``random_from_data``.
        kmeans_iters: Lloyd iterations of the ``kmeans`` init.
        seed: seed of the initialisation (restart r uses seed + r).
        means_init: optional initial means ``[K][D]`` (in the data's units after any
            standardisation); as in scikit-learn, weights and covariances still come from
            ``init``, and the given means replace the estimated ones in every restart.
    """

    #: statistics must not see padded (duplicated) points under DDP
    exact_statistics = True

    def __init__(
        self,
        num_components: int = 5,
        num_features: int | None = None,
        covariance: CovarianceType | None = None,
        n_init: int = 1,
        reg_covar: float = 1e-6,
        tol: float = 1e-3,
        init: str = "kmeans",
        kmeans_iters: int = 100,
        seed: int = 0,
        means_init: list[list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["covariance"])
        if num_features is None:
            raise ValueError(
                "model.num_features is unknown; train() fills it from the data, or set it."
            )
        if init not in EM_INIT_METHODS:
            raise ValueError(f"model.init={init!r} is unknown; choose one of {EM_INIT_METHODS}.")
        if not tol >= 0:
            raise ValueError(f"model.tol must be ≥ 0, got {tol}.")
        if means_init is not None:
            shape = torch.as_tensor(means_init, dtype=torch.float64).shape
            if shape != (num_components, num_features):
                raise ValueError(
                    f"model.means_init has shape {list(shape)}; expected [num_components, "
                    f"num_features] = [{num_components}, {num_features}]."
                )
        self.automatic_optimization = False
        self.model = GaussianMixtureEM(num_components, num_features, covariance,
                                       num_restarts=n_init, reg_covar=reg_covar)
        # DistributedDataParallel refuses a module with nothing to train; EM has no gradients.
        self._ddp_placeholder = nn.Parameter(torch.zeros(()))
        r = n_init
        self.register_buffer("lower_bound", torch.full((r,), -math.inf, dtype=torch.float64))
        self.register_buffer("converged", torch.zeros(r, dtype=torch.bool))
        self.register_buffer("n_iter", torch.zeros(r, dtype=torch.long))
        self._stats: EMStatistics | None = None

    def initialize_model(self, x: Tensor) -> None:
        resp = initial_responsibilities(x, self.num_components, self.model.num_restarts,
                                        self.hparams.init, self.hparams.seed,
                                        self.hparams.kmeans_iters)
        self.model.to(x.device).initialize_from_responsibilities(x, resp)
        if self.hparams.means_init is not None:
            given = torch.as_tensor(self.hparams.means_init, dtype=x.dtype, device=x.device)
            self.model.means.copy_(given.expand_as(self.model.means))

    def configure_optimizers(self) -> None:
        return None

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
        self.model.em_step(stats, self.lower_bound, self.converged, self.n_iter,
                           self.hparams.tol)
        for name in ("log_weights", "means", "raw_covariance"):
            if not bool(torch.isfinite(getattr(self.model, name)).all()):
                raise FloatingPointError(
                    f"EM produced a non-finite '{name}' at iteration {int(self.n_iter.max())}"
                    "; raise model.reg_covar, standardise the data, or train in float64 "
                    "(trainer.precision=64)."
                )
        best = int(self.lower_bound.argmax())
        self.log("train/nll", -self.lower_bound[best].float(), prog_bar=True)
        self.log("train/converged", self.converged.float().mean())
        if bool(self.converged.all()):
            self.trainer.should_stop = True

    # -- the best restart -------------------------------------------------------------------------
    def best_restart(self) -> int:
        return int(self.lower_bound.argmax()) if torch.isfinite(self.lower_bound).any() else 0

    def weighted_log_prob(self, x: Tensor) -> Tensor:
        return self.model.weighted_log_prob(x)[:, self.best_restart()]

    def mixture_parameters(self) -> dict[str, Tensor]:
        r = self.best_restart()
        return {"weights": self.model.weights[r].clone(), "means": self.model.means[r].clone(),
                "covariances": self.model.covariances[r].clone()}

    def num_mixture_parameters(self) -> int:
        return self.model.num_parameters()
