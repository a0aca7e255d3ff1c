"""In-memory DataModule base: tensors on the training device, served in large slices.

No per-sample ``__getitem__``: a batch is one index operation on a device tensor. Shuffling uses
a generator seeded by (seed, epoch), so a resumed run sees exactly the batches an uninterrupted
run would. Under DDP each rank takes a disjoint shard: every point exactly once per epoch, no
padding, so summed statistics (EM) and summed metrics stay exact. Training shards still give every
rank the same number of batches (collectives must match): a smaller shard may end with an empty
batch, which gradient modules weight by the global batch count. With
:attr:`InMemoryDataModule.keep_only_shard` set (``train.py`` sets it for a module that declares
``reads_only_its_shard``, e.g. memoized VI; the data never asks the model), :meth:`setup` keeps
only this rank's shard of every split: no rank then holds all points on its device (each reads
the source on the host once, to split and standardise it exactly as one process would, and
frees the rest).

A DataModule declares what it provides, :attr:`InMemoryDataModule.kind` (one of
:data:`DATA_KINDS`), and its sizes, :meth:`InMemoryDataModule.sizes`.

Letters: N points, D features, D_y target dimensions, K components, C classes.
"""

from __future__ import annotations

import math
from typing import ClassVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from mixtures.data.batches import TensorBatches
from mixtures.data.standardize import Standardizer

__all__ = ["DATA_KINDS", "InMemoryDataModule", "TensorBatches"]

SPLITS = ("train", "val", "test")

#: what a DataModule provides (its ``kind``) → a description naming the data configs of that kind
DATA_KINDS: dict[str, str] = {
    "points": "unlabelled points (data=blobs, or data=file)",
    "regression": "regression pairs (x, y) (data=inverse_sine, ring, heteroscedastic, diabetes, "
                  "or data=file data.target_columns=[...])",
    "images": "labelled images (data=mnist)",
}


class InMemoryDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load` returning ``(x [N, D], y [N] | None)``.

    A subclass declares its :attr:`kind`. Density data (``points``) may carry integer labels
    ``y [N]``, used only for evaluation (ARI / NMI). A ``regression`` DataModule returns
    real-valued targets ``y [N, D_y]`` instead; they are checked and split with ``x``, and
    :attr:`num_targets` is D_y. With :attr:`standardize` set, features (and regression targets)
    are standardised by the training split's statistics: :attr:`x_standardizer` and
    :attr:`y_standardizer` hold the fitted maps (None when that side is not standardised).

    Args:
        batch_size: training batch size; None (default) for full-batch training. Need not
            divide N.
        eval_batch_size: batch size for validation / test; None for one batch.
        val_fraction, test_fraction: held-out fractions of the data.
        split_seed: seed of the random split and of the shuffles.
        shuffle: reshuffle the training data every epoch.
    """

    #: what the data provides, a key of :data:`DATA_KINDS`
    kind: ClassVar[str] = "points"

    def __init__(
        self,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        for name, bs in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if bs is not None and (not isinstance(bs, int) or bs < 1):
                raise ValueError(
                    f"data.{name} must be a positive integer or null (full batch), got {bs!r}."
                )
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1
                and val_fraction + test_fraction < 1):
            raise ValueError(
                "data.val_fraction and data.test_fraction must be in [0, 1) and sum to < 1 "
                f"(got {val_fraction} and {test_fraction})."
            )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.shuffle = split_seed, shuffle
        self.splits: dict[str, tuple[Tensor, Tensor | None]] = {}
        #: under DDP, keep only this rank's shard of every split at :meth:`setup` (for a module
        #: that reads nothing else; whoever pairs them sets it)
        self.keep_only_shard = False
        #: (rank, world size) when :attr:`splits` hold only this rank's shards, else None
        self.shard: tuple[int, int] | None = None
        #: every split's size over all ranks (set when sharded)
        self.full_sizes: dict[str, int] = {}
        self.num_classes: int | None = None
        #: standardise features (and regression targets) by the training split; set by subclasses
        self.standardize = False
        self.x_standardizer: Standardizer | None = None
        self.y_standardizer: Standardizer | None = None

    # -- to implement -------------------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor | None]:
        """Return all points ``[N, D]`` (floating) and labels ``[N]`` (or, for regression,
        targets ``[N, D_y]``) or None."""
        raise NotImplementedError

    # -- what the data provides ---------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        """The sizes a model needs, by kind (loading the data on first call): ``points`` →
        ``{"num_features": D}``; ``regression`` → ``{"num_features": F, "num_targets": D_y}``;
        ``images`` → ``{"num_classes": C}``."""
        if self.kind == "images":
            if self.num_classes is None:
                self._ensure_loaded()
            if self.num_classes is None:
                raise ValueError(f"{self._describe()} is image data but has no class labels.")
            return {"num_classes": self.num_classes}
        out = {"num_features": self.num_features}
        targets = self.num_targets  # None unless regression
        if targets is not None:
            out["num_targets"] = targets
        return out

    # -- shared machinery ---------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self.splits:
            return
        x, y = self.load()
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        if x.dim() != 2:
            raise ValueError(
                f"data must be a 2-D array [N, D] of points, got shape {list(x.shape)}."
            )
        _check_finite(x, self._describe())
        regression = self.kind == "regression"
        if regression:
            y = self._check_targets(x, y)
        elif y is not None:
            y = torch.as_tensor(y)
            if y.shape != (x.shape[0],):
                raise ValueError(f"labels must have shape [{x.shape[0]}], got {list(y.shape)}.")
            _, y = torch.unique(y, return_inverse=True)  # classes 0..C-1
            self.num_classes = int(y.max()) + 1 if y.numel() else 0
        n = x.shape[0]
        n_val, n_test = int(round(self.val_fraction * n)), int(round(self.test_fraction * n))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise ValueError(f"no training points left after the split of {n} points.")
        gen = torch.Generator().manual_seed(self.split_seed)
        perm = torch.randperm(n, generator=gen)
        parts = dict(zip(SPLITS, perm.split([n_train, n_val, n_test]), strict=True))
        if self.standardize:
            train = parts["train"]
            self.x_standardizer = Standardizer(x.shape[1]).fit(x[train])
            if regression and y is not None:
                self.y_standardizer = Standardizer(y.shape[1]).fit(y[train])
        for name, idx in parts.items():
            xs, ys = x[idx], None if y is None else y[idx]
            if self.x_standardizer is not None:
                xs = self.x_standardizer.transform(xs)
            if self.y_standardizer is not None and ys is not None:
                ys = self.y_standardizer.transform(ys)
            self.splits[name] = (xs, ys)

    def _check_targets(self, x: Tensor, y: Tensor | None) -> Tensor:
        """Regression targets as a finite floating ``[N, D_y]`` tensor of ``x``'s dtype."""
        if y is None:
            raise ValueError(f"{self._describe()} is a regression data set but has no targets.")
        y = torch.as_tensor(y)
        if y.dim() == 1:
            y = y[:, None]
        if y.dim() != 2 or y.shape[0] != x.shape[0] or y.shape[1] < 1:
            raise ValueError(
                f"{self._describe()}: targets must have shape [{x.shape[0]}, D_y], got "
                f"{list(y.shape)}."
            )
        y = y.to(x.dtype)
        _check_finite(y, f"{self._describe()} (targets)")
        return y

    def _describe(self) -> str:
        return type(self).__name__

    @property
    def num_features(self) -> int:
        """D, known once the data is loaded (loading happens on first access)."""
        self._ensure_loaded()
        return int(self.splits["train"][0].shape[1])

    @property
    def num_targets(self) -> int | None:
        """D_y of a regression data set (loading it on first access); None for other kinds."""
        if self.kind != "regression":
            return None
        self._ensure_loaded()
        return int(self.splits["train"][1].shape[1])

    def split(self, name: str) -> tuple[Tensor, Tensor | None]:
        """``(x, y)`` of split ``train`` / ``val`` / ``test`` (on the training device after
        :meth:`setup`)."""
        self._ensure_loaded()
        return self.splits[name]

    @property
    def train_tensor(self) -> Tensor:
        """All training points ``[N_train, D]`` (used to initialise models); only this rank's
        shard when :attr:`shard` is set."""
        return self.split("train")[0]

    def setup(self, stage: str | None = None) -> None:
        self._ensure_loaded()
        self._take_shard()
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None:
            self.splits = {
                k: (x.to(device), None if y is None else y.to(device))
                for k, (x, y) in self.splits.items()
            }

    def _take_shard(self) -> None:
        """With :attr:`keep_only_shard`, keep only this rank's shard (points r, r + W, … of each
        split); the other points are freed before anything moves to the device."""
        rank, world = self._rank_world()
        if self.shard is not None:
            if self.shard != (rank, world):
                raise RuntimeError(
                    f"{self._describe()} holds the shard of rank {self.shard[0]} of "
                    f"{self.shard[1]} processes and cannot serve rank {rank} of {world}; "
                    "build a new DataModule for another process layout.")
            return
        if world == 1 or not self.keep_only_shard:
            return
        self.full_sizes = {k: int(x.shape[0]) for k, (x, _) in self.splits.items()}
        self.splits = {
            k: (x[rank::world].clone(), None if y is None else y[rank::world].clone())
            for k, (x, y) in self.splits.items()
        }
        self.shard = (rank, world)
        rank_zero_info(
            f"each of the {world} processes holds only its shard of the data (rank 0: "
            f"{self.splits['train'][0].shape[0]:,} of {self.full_sizes['train']:,} training "
            "points).")

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _loader(self, name: str, train: bool) -> TensorBatches:
        x, y = self.split(name)
        if self.shard is not None:  # already this rank's points, in the unsharded order
            return TensorBatches(
                x, y,
                batch_size=self.batch_size if train else self.eval_batch_size,
                shuffle=train and self.shuffle, seed=self.split_seed, epoch=self._epoch,
                equal_steps=train,
                max_shard=math.ceil(self.full_sizes[name] / self.shard[1]),
            )
        rank, world = self._rank_world()
        return TensorBatches(
            x, y,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and self.shuffle,
            seed=self.split_seed,
            epoch=self._epoch,
            rank=rank,
            world_size=world,
            # exact shards (every point once per epoch) for every module; training ranks run
            # equally many steps, a smaller shard ending with an empty batch
            equal_steps=train,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)


def _check_finite(x: Tensor, source: str) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.any(-1).nonzero().flatten()
        cols = bad.any(0).nonzero().flatten()
        raise ValueError(
            f"{source}: {rows.numel()} row(s) contain NaN or inf (first at row {int(rows[0])}, "
            f"columns {cols.tolist()[:10]}); remove or impute them before training."
        )
