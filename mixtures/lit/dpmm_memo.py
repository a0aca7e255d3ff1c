"""Memoized variational inference for a Dirichlet-process mixture (``model=dpmm_*``, default).

An epoch is one lap over this process's fixed batches: each training step runs the local step
on its batch, replaces the batch's cached summary and takes the exact global step
(:class:`~mixtures.models.memoized.MemoizedVI`); after the last batch the summaries are summed
exactly and the merge / split / sort moves are decided from them. With one batch
(``data.batch_size=null``) this is coordinate-ascent VI with moves; with mini-batches, every
global step after the first lap uses the exact full-data statistics.

Under DDP each rank caches only the summaries of its own shard; the statistics' differences are
summed across ranks at every step (one all-reduce), so every rank holds the same posterior and
takes the same moves. The initialisation reads only the shard, too: priors from the data's
moments summed over ranks, the k-means centres from the first ``init_sample`` points of the
training set (gathered from the ranks that hold them), then one assignment pass over the shard.
Fixed batches are required: the DataModule's reshuffling is switched off for this module (its
training set is already a random split).
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from mixtures.lit.base import MixtureModule
from mixtures.lit.dpmm import DPMMModule
from mixtures.lit.gmm_em import GMMEM
from mixtures.metrics import LogLikelihood
from mixtures.models.dpmm import DPMM
from mixtures.models.memoized import MemoizedVI

__all__ = ["MemoizedDPMMModule"]

_CKPT_KEY = "memoized_vi"


def _map(state, fn):
    """Apply ``fn`` to every tensor of a nested dict / list state."""
    if isinstance(state, dict):
        return {k: _map(v, fn) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return [_map(v, fn) for v in state]
    return fn(state)


class MemoizedDPMMModule(MixtureModule):
    """Dirichlet-process Gaussian mixture trained by memoized VI with moves.

    Args:
        net: the :class:`~mixtures.models.DPMM` (``model.net``: truncation K, covariance,
            priors, init, active threshold).
        moves: merge, split and sort between laps (false: plain memoized / coordinate ascent).
        max_pairs: merge candidates tracked per lap (null: K).
        max_splits: split targets per lap (their children cost 2 components each in the
            local step).
        split_tries: laps a rejected split target keeps refining before it rests.
        init_components: the number of starting clusters (null: K); the splits find the rest.
        init_sample: the k-means of the initialisation runs on the first this many training
            points.
        tol: stop after a lap without accepted moves whose ELBO per point changed by less.
        eval_every_n_epochs: evaluate every this many laps, and at the first and the last.
    """

    #: nothing here reads another rank's points: under DDP the DataModule may keep only this
    #: rank's shard (train.py sets its ``keep_only_shard``)
    reads_only_its_shard = True

    def __init__(self, net: DPMM, moves: bool = True, max_pairs: int | None = None,
                 max_splits: int = 4, split_tries: int = 3, init_components: int | None = None,
                 init_sample: int = 50_000, tol: float | None = 1e-6,
                 eval_every_n_epochs: int = 1) -> None:
        super().__init__(net, eval_every_n_epochs)
        self.save_hyperparameters(ignore=["net"])
        for name, value, low in (("max_splits", max_splits, 0), ("split_tries", split_tries, 1),
                                 ("init_sample", init_sample, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"model.{name} must be an integer ≥ {low}, got {value!r}.")
        k = self.model.num_components
        if init_components is not None and not (isinstance(init_components, int)
                                                and 1 <= init_components <= k):
            raise ValueError(f"model.init_components must be null or an integer in [1, "
                             f"model.net.num_components={k}], got {init_components!r}.")
        if max_pairs is not None and not (isinstance(max_pairs, int) and max_pairs >= 0):
            raise ValueError(f"model.max_pairs must be null or an integer ≥ 0, got "
                             f"{max_pairs!r}.")
        if tol is not None and not (isinstance(tol, int | float) and tol > 0):
            raise ValueError(f"model.tol must be a positive number or null, got {tol!r}.")
        self.automatic_optimization = False
        # DistributedDataParallel refuses a module with nothing to train; there are no gradients
        self._ddp_placeholder = nn.Parameter(torch.zeros(()))
        self.memo: MemoizedVI | None = None
        self._memo_state: dict | None = None
        self._last_elbo: float | None = None
        self.val_elbo, self.test_elbo = LogLikelihood(), LogLikelihood()

    def configure_optimizers(self) -> None:
        return None

    # the step counter of exact EM (checkpoints need global_step to move) and the DPMM's
    # evaluation (Student-t predictive, held-out ELBO, active K)
    _count_step = GMMEM._count_step
    _eval_step = DPMMModule._eval_step
    _eval_epoch_end = DPMMModule._eval_epoch_end

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = self.trainer.datamodule if self._trainer is not None else None
        if stage == "fit" and getattr(dm, "shuffle", False):
            dm.shuffle = False
            rank_zero_info("memoized VI keeps fixed batches: the training data are not "
                           "reshuffled between epochs.")

    def initialize_model(self, x: Tensor) -> None:
        """Deferred to :meth:`on_fit_start`, where each rank reads only its shard."""

    # -- the shard, the summaries and their checkpoint ------------------------------------------
    def _reduce(self):
        if self.trainer.world_size == 1:
            return None
        strategy = self.trainer.strategy
        return lambda t: strategy.reduce(t, reduce_op="sum")

    def _seed_sample(self, batches: list[Tensor]) -> Tensor:
        """The first ``init_sample`` points of the training set, the same on every rank (rank
        r holds points r, r + W, …: gather and interleave)."""
        size = self.hparams.init_sample
        local = torch.cat(batches) if batches else self.model.counts.new_zeros(0, 0)
        world = self.trainer.world_size
        if world == 1:
            return local[:size]
        rows = math.ceil(size / world)
        part = local.new_zeros(rows, self.model.num_features)
        part[:min(rows, local.shape[0])] = local[:rows]
        total = int(self.trainer.strategy.reduce(
            torch.tensor(float(local.shape[0]), device=local.device), reduce_op="sum"))
        gathered = self.trainer.strategy.all_gather(part)  # [W, rows, D]
        return gathered.transpose(0, 1).reshape(-1, part.shape[-1])[:min(size, total)]

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        batches = [b[0].to(self.device) for b in dm.train_dataloader()]
        self.memo = MemoizedVI(self.model, max(len(batches), 1), self.hparams.moves,
                               self.hparams.max_pairs, self.hparams.max_splits,
                               self.hparams.split_tries, reduce=self._reduce())
        if self._memo_state is not None:
            self.memo.load_state_dict(self._memo_state)
            self._memo_state = None
        elif not bool(self.model.initialized):
            self.memo.initialize(batches, self._seed_sample(batches),
                                 self.hparams.init_components)
        else:  # weights without summaries (e.g. another regime's checkpoint): one pass
            self.memo.refresh(batches)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.memo is None:
            return
        state = self.memo.state_dict()
        if self.trainer.world_size > 1:  # every rank's own summaries, gathered to the saver
            state = _map(state, lambda t: self.trainer.strategy.all_gather(t).cpu())
        else:
            state = _map(state, lambda t: t[None].cpu())
        checkpoint[_CKPT_KEY] = {"world_size": self.trainer.world_size, "state": state}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get(_CKPT_KEY)
        if saved is None:
            return
        world = self._trainer.world_size if self._trainer is not None else 1
        if saved["world_size"] != world:
            raise ValueError(f"the checkpoint holds memoized summaries of {saved['world_size']}"
                             f" processes; resume it with {saved['world_size']} "
                             f"(trainer.devices), not {world}.")
        rank = self._trainer.global_rank if self._trainer is not None else 0
        self._memo_state = _map(saved["state"], lambda t: t[rank])

    # -- one lap per epoch ----------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        assert self.memo is not None
        self.memo.visit(batch_idx, batch[0])
        self._count_step()
        if batch_idx == self.trainer.num_training_batches - 1:
            self._end_of_lap()

    def _end_of_lap(self) -> None:
        accepted = self.memo.end_lap()
        elbo = float(self.memo.elbo()) / float(self.model.dataset_size)  # one sync per lap
        if not math.isfinite(elbo):
            raise FloatingPointError(
                f"the ELBO became {elbo} at epoch {self.current_epoch}; standardise the data "
                "(data.standardize), train in float64 (trainer.precision=64) or raise "
                "covariance.min_scale.")
        active = float((self.model.counts > 0).sum())
        self.log_dict({"train/elbo": elbo, "train/active_k": active,
                       "train/merges": float(accepted["merge"]),
                       "train/splits": float(accepted["split"])},
                      prog_bar=False, on_step=False, on_epoch=True, rank_zero_only=False)
        moved = bool(accepted["merge"] or accepted["split"])
        tol, last = self.hparams.tol, self._last_elbo
        self._last_elbo = None if moved else elbo
        if tol is not None and not moved and last is not None and abs(elbo - last) < tol:
            self.trainer.should_stop = True  # before validation: the last lap is evaluated

