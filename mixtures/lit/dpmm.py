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

import warnings

import torch
from torch import Tensor

from mixtures.distributions import CovarianceType
from mixtures.lit.base import MixtureModule
from mixtures.metrics import LogLikelihood
from mixtures.models.dpmm import DPMM
from mixtures.models.dpmm_moves import global_moves
from mixtures.models.em import EM_INIT_METHODS

__all__ = ["DPMMModule"]

warnings.filterwarnings("ignore", message=r".*The number of training batches.*")


class DPMMModule(MixtureModule):
    """Dirichlet-process Gaussian mixture trained by stochastic variational inference.

    Args:
        num_components: truncation K (an upper bound on the clusters found).
        num_features: D (filled in from the data when null).
        covariance: ``unit``, ``scalar``, ``diag`` or ``full`` (the ``covariance`` group).
        weight_concentration_prior, mean_precision_prior, mean_prior, degrees_of_freedom_prior,
            covariance_prior: the priors, as in scikit-learn's ``BayesianGaussianMixture``
            (null: from the data / its defaults; see :class:`~mixtures.models.DPMM`).
        tau, kappa: step size ``ρ_t = min(1, (t + τ)^(−κ))`` at step t (κ = 0: ρ = 1).
        init: initial responsibilities — ``kmeans``, ``k-means++``, ``random`` or
            ``random_from_data``.
        kmeans_iters: Lloyd iterations of the ``kmeans`` init.
        seed: seed of the initialisation.
        tol: stop when the training ELBO per point changes by less than this over an epoch
            (null: run all epochs).
        active_threshold: expected weight above which a component counts as active.
        moves_every_n_epochs: every this many epochs, try the ELBO-checked sort / merge /
            prune / re-seed moves of :mod:`mixtures.models.dpmm_moves` on the training data
            (null: never).
        max_merges: merge candidates tried per round.
    """

    #: every point exactly once per epoch under DDP (no padding)
    exact_statistics = True

    def __init__(
        self,
        num_components: int = 20,
        num_features: int | None = None,
        covariance: CovarianceType | None = None,
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float = 1.0,
        mean_prior: list[float] | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: float | list | None = None,
        tau: float = 1.0,
        kappa: float = 0.0,
        init: str = "kmeans",
        kmeans_iters: int = 100,
        seed: int = 0,
        tol: float | None = None,
        active_threshold: float = 0.01,
        moves_every_n_epochs: int | None = None,
        max_merges: int = 5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["covariance"])
        if num_features is None:
            raise ValueError(
                "model.num_features is unknown; train() fills it from the data, or set it."
            )
        if init not in EM_INIT_METHODS:
            raise ValueError(f"model.init={init!r} is unknown; choose one of {EM_INIT_METHODS}.")
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
        if not 0 < active_threshold < 1:
            raise ValueError(f"model.active_threshold={active_threshold} must lie in (0, 1).")
        self.model = DPMM(
            num_components, num_features, covariance,
            weight_concentration_prior=weight_concentration_prior,
            mean_precision_prior=mean_precision_prior,
            mean_prior=mean_prior,
            degrees_of_freedom_prior=degrees_of_freedom_prior,
            covariance_prior=covariance_prior,
        )
        self.val_elbo, self.test_elbo = LogLikelihood(), LogLikelihood()
        self._epoch_elbo = torch.zeros(2, dtype=torch.float64)  # [Σ ELBO terms, points]
        self._last_elbo: float | None = None

    def initialize_model(self, x: Tensor) -> None:
        self.model.to(x.device).initialize(x, method=self.hparams.init, seed=self.hparams.seed,
                                           kmeans_iters=self.hparams.kmeans_iters)

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
        self._epoch_elbo = torch.zeros(2, dtype=torch.float64, device=self.device)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0]
        strategy = self.trainer.strategy
        world = self.trainer.world_size
        local = torch.tensor(float(x.shape[0]), device=self.device)
        total = strategy.reduce(local, reduce_op="sum") if world > 1 else local
        _, neg_elbo = self.model(x)
        # DDP averages gradients over ranks: weight by world / |B_global| so that the average is
        # the natural gradient of the global batch mean.
        loss = neg_elbo.sum() * (world / total)
        with torch.no_grad():
            self._epoch_elbo += torch.stack([-neg_elbo.detach().double().sum(), local.double()])
        self.log("train/rho", self.step_size(self.global_step))
        return loss

    def on_train_epoch_end(self) -> None:
        sums = self._epoch_elbo
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        if float(sums[1]) == 0:
            return
        elbo = float(sums[0] / sums[1])
        if not torch.isfinite(torch.tensor(elbo)):
            raise FloatingPointError(
                f"the ELBO became {elbo} at epoch {self.current_epoch}; standardise the data "
                "(data.standardize), train in float64 (trainer.precision=64) or raise "
                "covariance.min_scale."
            )
        self.log("train/elbo", elbo, prog_bar=True, sync_dist=False, rank_zero_only=False)
        self.log("train/active_k", float(self.model.active_components(
            self.hparams.active_threshold).numel()))
        every = self.hparams.moves_every_n_epochs
        if every and (self.current_epoch + 1) % every == 0:
            # every rank holds the whole training set and takes the same decisions
            accepted = global_moves(self.model, self.checked_train_tensor(),
                                    max_merges=self.hparams.max_merges)
            self.log("train/moves", float(sum(accepted.values())))
            if any(accepted.values()):
                self._last_elbo = None  # the ELBO jumped: do not stop on this epoch's change
                return
        tol = self.hparams.tol
        if tol is not None and self._last_elbo is not None and abs(elbo - self._last_elbo) < tol:
            self.trainer.should_stop = True
        self._last_elbo = elbo

    # -- evaluation ----
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """Posterior-predictive ``log E[π_k] + log p(x | k, data)`` (``val/nll`` is held-out
        predictive)."""
        return self.model.weighted_log_prob(x)

    def predict_labels(self, x: Tensor) -> Tensor:
        return self.model.predict(x)

    def _eval_step(self, batch, ll, scores) -> None:
        x = batch[0]
        elbo_terms = self.val_elbo if ll is self.val_ll else self.test_elbo
        with torch.no_grad():
            resp, log_norm = self.model._local_step(x)
            ll.update(self.model.score_samples(x))
        elbo_terms.update(log_norm)
        if scores is not None and len(batch) > 1:
            scores.update(batch[1], resp.argmax(-1))

    def _eval_epoch_end(self, prefix, ll, scores) -> None:
        elbo_terms = self.val_elbo if prefix == "val" else self.test_elbo
        stats = elbo_terms.compute()
        elbo_terms.reset()
        kl = self.model.kl() / self.model.dataset_size.double()
        active = self.model.active_components(self.hparams.active_threshold).numel()
        self.log_dict({f"{prefix}/elbo": (stats["mean"] - kl).float(),
                       f"{prefix}/active_k": float(active)}, sync_dist=True,
                      prog_bar=prefix == "val")
        super()._eval_epoch_end(prefix, ll, scores)

    def mixture_parameters(self) -> dict[str, Tensor]:
        return {"weights": self.model.weights.detach().clone(),
                "means": self.model.means.detach().clone(),
                "covariances": self.model.covariances.detach().clone()}

    def num_mixture_parameters(self) -> int:
        return self.model.num_parameters(self.hparams.active_threshold)
