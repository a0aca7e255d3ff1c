"""What every mixture LightningModule shares: the injected model, the data check, evaluation.

A LightningModule receives its built model (``net``, a
:class:`~mixtures.models.base.MixtureDensity`) from the config and holds only the training
regime. This base checks the data against the model (:func:`~mixtures.lit.requirements.
check_data`), initialises an uninitialised model from the training points, and logs
``val/…`` and ``test/…`` — held-out log-likelihood, BIC, ARI / NMI — from DDP-exact sums,
through the model's one prediction API.

Evaluation may run less often than training (``eval_every_n_epochs``, e.g. for the closed-form
models, whose epoch is cheap next to a held-out pass): Lightning still runs its validation loop
every epoch, but only an *evaluation epoch* computes and logs ``val/…`` — epoch 0, every n-th
epoch, the first epoch of a resumed fit, and the last epoch (``max_epochs`` reached, or the run
asked to stop before validation, as EM and the DPMM do at convergence). The sanity check,
``trainer.validate`` and ``trainer.test`` always evaluate. Skipped epochs log nothing, so a
checkpoint monitoring ``val/nll`` sees no new best on them, and
:class:`mixtures.callbacks.EarlyStopping` counts only evaluations.
"""

from __future__ import annotations

import atexit

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torchmetrics import Metric

from mixtures.data.standardize import Standardizer
from mixtures.lit.requirements import check_data
from mixtures.lit.saving import CheckpointLoading, build_net
from mixtures.metrics import ClusteringScores, LogLikelihood, bic
from mixtures.models.base import MixtureDensity

__all__ = ["MixtureModule", "global_batch_mean", "take_standardizers"]


def take_standardizers(module: L.LightningModule, datamodule: object) -> None:
    """Copy the data's standardisation into the module's ``x_standardizer`` /
    ``y_standardizer`` (the one path by which original units travel: the module saves them in
    its checkpoints and reports metrics, figures and the fitted mixture with them). A side the
    data does not standardise keeps the module's own (identity, or a restored checkpoint's)."""
    if hasattr(datamodule, "split"):
        datamodule.split("train")  # loaded: its standardisation is fitted on first access
    for side in ("x_standardizer", "y_standardizer"):
        source, target = getattr(datamodule, side, None), getattr(module, side, None)
        if source is not None and target is not None:
            target.load_state_dict(source.state_dict())


def global_batch_mean(module: L.LightningModule, values: Tensor) -> Tensor:
    """The training loss of a batch: ``Σ values · world / |B_global|``.

    Under DDP, which averages gradients over ranks, this gives exactly the gradient of the mean
    over the *global* batch, whatever each rank holds (every point is served once per epoch,
    so shards may differ by a point, and a rank may get an empty batch). On one process it is
    the batch mean, with no communication.

    Args:
        module: the LightningModule (for its trainer's strategy).
        values: per-point losses ``[B]`` of this rank's batch.
    """
    world = module.trainer.world_size if module._trainer is not None else 1
    if world == 1:
        return values.mean()
    local = torch.tensor(float(values.shape[0]), device=values.device)
    total = module.trainer.strategy.reduce(local, reduce_op="sum")
    return values.sum() * (world / total)


def prepare_process(module: torch.nn.Module) -> None:
    """Per-process set-up that every module's ``setup`` runs first (in each DDP worker too).

    1. Every torchmetrics state of ``module`` gets fresh storage of its own. ``ddp_spawn``
       passes the module to its worker processes through shared memory; Lightning copies
       parameters and buffers out of it on CPU, but metric states are neither, so on CPU every
       rank would add into the *same* tensors (sums ×world_size, e.g. ``test/bic``).
       ``Metric.reset`` replaces each state by a clone of its default.
    2. Under ``torch.distributed`` the process group is destroyed when the process exits.
       Lightning does so for NCCL only; a gloo group left to the interpreter's shutdown aborted
       a worker ("terminate called without an active exception", SIGABRT) when it exited
       before its peer — 3 of 30 two-process gloo runs in plain torch, 0 of 40 with the group
       destroyed at exit (``trainer=ddp_cpu``, and CI's ddp_spawn test).
    """
    for sub in module.modules():
        if isinstance(sub, Metric):
            sub.reset()
    global _DESTROY_AT_EXIT
    if not _DESTROY_AT_EXIT and torch.distributed.is_available() \
            and torch.distributed.is_initialized():
        atexit.register(_destroy_process_group)
        _DESTROY_AT_EXIT = True


#: whether this process has registered :func:`_destroy_process_group` at exit
_DESTROY_AT_EXIT = False


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class MixtureModule(CheckpointLoading, L.LightningModule):
    """Base LightningModule of the mixture densities (training regimes add their steps).

    Args:
        net: the model, built by the config (``model.net``), or a saved config of it
            (:mod:`mixtures.lit.saving`: ``load_from_checkpoint`` rebuilds it so).
        eval_every_n_epochs: evaluate (held-out likelihood, BIC, ARI / NMI) every this many
            training epochs, and always at the first and the last (module docstring).
    """

    #: the data this module trains on (:mod:`mixtures.lit.requirements`)
    data_kind = "points"

    def __init__(self, net: MixtureDensity, eval_every_n_epochs: int = 1) -> None:
        super().__init__()
        net = build_net(net)
        if isinstance(eval_every_n_epochs, bool) or not isinstance(eval_every_n_epochs, int) \
                or eval_every_n_epochs < 1:
            raise ValueError("model.eval_every_n_epochs must be a positive integer, got "
                             f"{eval_every_n_epochs!r}.")
        self.eval_every_n_epochs = int(eval_every_n_epochs)
        #: whether the current validation epoch computes and logs metrics
        self.evaluating = True
        self._fit_first_epoch: int | None = None
        self.model = net
        # the data's standardisation (identity until setup copies it; saved in checkpoints)
        self.x_standardizer = Standardizer(net.num_features)
        self.val_ll, self.test_ll = LogLikelihood(), LogLikelihood()
        self.val_scores: ClusteringScores | None = None
        self.test_scores: ClusteringScores | None = None

    @property
    def num_components(self) -> int:
        """K."""
        return self.model.num_components

    def model_sizes(self) -> dict[str, int]:
        """The sizes the model was built with (compared with the data's)."""
        return {"num_features": self.model.num_features}

    def setup(self, stage: str) -> None:
        """Check the data, create the clustering metrics; on ``fit``, initialise an
        uninitialised model from the training points (before DDP wraps it; a restored
        checkpoint overrides)."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        check_data(self, dm)
        take_standardizers(self, dm)
        self.setup_scores(dm)
        prepare_process(self)
        if stage == "fit" and not bool(self.model.initialized):
            self.initialize_model(self.checked_train_tensor())

    def initialize_model(self, x: Tensor) -> None:
        """Initialise the model from the training points ``[N, D]`` (its own ``init``)."""
        self.model.to(x.device).initialize(x)

    # -- shared ---------------------------------------------------------------------------------
    def train_tensor(self) -> Tensor | None:
        """The DataModule's training points, when it has them in memory."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        return getattr(dm, "train_tensor", None)

    def checked_train_tensor(self) -> Tensor:
        """Training points for initialisation, validated against K."""
        x = self.train_tensor()
        if x is None:
            raise RuntimeError(
                f"{type(self).__name__} initialises from the DataModule's `train_tensor`; pass a "
                "mixtures DataModule to trainer.fit, or initialise module.model yourself first."
            )
        k = self.num_components
        if k > x.shape[0]:
            raise ValueError(
                f"model.net.num_components={k} exceeds the number of training points "
                f"({x.shape[0]}); lower model.net.num_components or supply more data."
            )
        return x

    def setup_scores(self, datamodule: object) -> None:
        """Create ARI / NMI metrics when the DataModule has labels."""
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes and self.val_scores is None:
            self.val_scores = ClusteringScores(num_classes, self.num_components)
            self.test_scores = ClusteringScores(num_classes, self.num_components)

    def mixture_parameters(self, original_units: bool = False) -> dict[str, Tensor]:
        """The fitted mixture's ``weights``, ``means``, ``covariances``: in the units the model
        was trained in (for figures), or in the data's original units — in float64 then, so a
        float32 model of data on a scale beyond ~1e19 (covariances beyond float32's 3.4e38 in
        the data's units) is reported finite and exact."""
        params = self.model.mixture_parameters()
        if original_units:
            params = {k: v.double() for k, v in params.items()}
            params["means"] = self.x_standardizer.means_to_original(params["means"])
            params["covariances"] = self.x_standardizer.covariances_to_original(
                params["covariances"])
        return params

    def _eval_step(self, batch: tuple[Tensor, ...], ll: LogLikelihood,
                   scores: ClusteringScores | None) -> None:
        x = batch[0]
        log_density, labels = self.model.score_and_predict(x)
        ll.update(log_density)
        if scores is not None and len(batch) > 1:
            scores.update(batch[1], labels)

    def _eval_epoch_end(self, prefix: str, ll: LogLikelihood,
                        scores: ClusteringScores | None) -> None:
        stats = ll.compute()
        # in the data's own units: the model sees standardised points z = (x − shift) / scale,
        # so log p(x) = log p(z) − Σ_j log scale_j (0 for data the DataModule does not scale)
        log_scale = self.x_standardizer.log_scale_sum.to(stats["mean"])
        total = stats["total"] - stats["count"] * log_scale
        metrics = {
            f"{prefix}/nll": log_scale - stats["mean"],
            f"{prefix}/bic": bic(total, self.model.num_parameters(), stats["count"]),
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

    # -- when to evaluate ------------------------------------------------------------------------
    def evaluation_due(self) -> bool:
        """Whether this validation epoch evaluates: always outside fitting and in the sanity
        check; during fitting at epoch 0, every ``eval_every_n_epochs``-th epoch, the first
        epoch of this fit (a resumed run) and the last one."""
        trainer = self.trainer
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return True
        epoch, n = trainer.current_epoch, self.eval_every_n_epochs
        if n == 1 or epoch % n == 0 or epoch == self._fit_first_epoch:
            return True
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        return bool(trainer.should_stop
                    or (max_epochs is not None and max_epochs > 0 and epoch + 1 >= max_epochs)
                    or (max_steps is not None and max_steps > 0
                        and trainer.global_step >= max_steps))

    def on_train_start(self) -> None:
        # after a checkpoint's loop state is restored: the resumed fit's first epoch
        self._fit_first_epoch = self.trainer.current_epoch

    def on_validation_epoch_start(self) -> None:
        self.evaluating = self.evaluation_due()

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        if self.evaluating:
            self._eval_step(batch, self.val_ll, self.val_scores)

    def on_validation_epoch_end(self) -> None:
        if self.evaluating:
            self._eval_epoch_end("val", self.val_ll, self.val_scores)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, self.test_ll, self.test_scores)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_ll, self.test_scores)

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self.model.predict(batch[0])
