"""In-memory DataModule base: tensors on the training device, served in large slices.

No per-sample ``__getitem__``: a batch is one index operation on a device tensor. Shuffling uses
a generator seeded by (seed, epoch), so a resumed run sees exactly the batches an uninterrupted
run would. Under DDP each rank takes a disjoint shard (training shards are padded to equal size,
like ``DistributedSampler``; evaluation shards are not, so summed metrics stay exact).

Letters: N points, D features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch import Tensor

__all__ = ["InMemoryDataModule", "TensorBatches"]

SPLITS = ("train", "val", "test")


class TensorBatches:
    """Iterable of ``(x,)`` or ``(x, y)`` batches sliced from in-memory tensors.

    Args:
        x: points ``[N, D]``.
        y: labels ``[N]`` or None.
        batch_size: points per batch (per rank); None for the whole shard in one batch.
        shuffle: reshuffle every epoch.
        seed: base seed of the shuffle.
        epoch: callable returning the current epoch (the shuffle's second seed).
        rank: this process's rank; world_size: number of processes.
        pad: pad shards to equal length by wrapping around (training under DDP).
        equal_steps: give every rank the same number of batches (training under DDP).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor | None,
        batch_size: int | None,
        shuffle: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
        equal_steps: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.equal_steps = equal_steps or pad
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch = epoch or (lambda: 0)
        self.rank, self.world_size, self.pad = rank, world_size, pad

    def _shard_size(self) -> int:
        n = self.x.shape[0]
        if self.pad:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        # Training ranks must run the same number of steps (collectives must match): unpadded
        # shards, which differ by at most one point, take the largest shard's batch count (the
        # smaller ones end with an empty batch).
        if self.equal_steps:
            size = math.ceil(self.x.shape[0] / self.world_size)
        else:
            size = self._shard_size()
        if self.batch_size is None:
            return 1 if size > 0 else 0
        return math.ceil(size / self.batch_size)

    def _indices(self) -> Tensor | None:
        n = self.x.shape[0]
        if not self.shuffle and self.world_size == 1:
            return None  # contiguous slices, no gather
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + int(self.epoch()))
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.pad:
            total = math.ceil(n / self.world_size) * self.world_size
            if total > n:  # wrap around, repeatedly when N < world_size / 2
                order = order.repeat(math.ceil(total / n))[:total]
        return order[self.rank :: self.world_size].to(self.x.device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        idx = self._indices()
        size = self.x.shape[0] if idx is None else idx.numel()
        step = size if self.batch_size is None else self.batch_size
        for start in range(0, len(self) * max(step, 1), max(step, 1)):  # may end with empty
            if idx is None:
                sl = slice(start, start + step)
                xb = self.x[sl]
                yb = None if self.y is None else self.y[sl]
            else:
                ib = idx[start : start + step]
                xb = self.x[ib]
                yb = None if self.y is None else self.y[ib]
            yield (xb,) if yb is None else (xb, yb)


class InMemoryDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load` returning ``(x [N, D], y [N] | None)``.

    A *regression* DataModule (``regression = True``) returns real-valued targets
    ``y [N, D_y]`` instead of labels; they are checked, split with ``x`` and passed through
    :meth:`fit_transform_targets` / :meth:`transform_targets`, and :attr:`num_targets` is D_y
    (None for density data).

    Args:
        batch_size: training batch size; None (default) for full-batch training. Need not
            divide N.
        eval_batch_size: batch size for validation / test; None for one batch.
        val_fraction, test_fraction: held-out fractions of the data.
        split_seed: seed of the random split and of the shuffles.
        shuffle: reshuffle the training data every epoch.
    """

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
        self.num_classes: int | None = None

    #: whether ``load`` returns regression targets ``[N, D_y]`` (not class labels ``[N]``)
    regression: bool = False

    # -- to implement -------------------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor | None]:
        """Return all points ``[N, D]`` (floating) and integer labels ``[N]`` or None."""
        raise NotImplementedError

    def fit_transform(self, x_train: Tensor) -> None:
        """Hook to fit a preprocessing transform on the training split (default: none)."""

    def transform(self, x: Tensor) -> Tensor:
        """Preprocessing applied to every split (default: identity)."""
        return x

    def to_original_units(self, means: Tensor, covariances: Tensor) -> tuple[Tensor, Tensor]:
        """Map fitted means ``[K, D]`` and covariances ``[K, D, D]`` back to the data's units."""
        return means, covariances

    def fit_transform_targets(self, y_train: Tensor) -> None:
        """Hook to fit a transform of regression targets on the training split (default: none).
        """

    def transform_targets(self, y: Tensor) -> Tensor:
        """Preprocessing of regression targets ``[N, D_y]`` (default: identity)."""
        return y

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
        if self.regression:
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
        self.fit_transform(x[parts["train"]])
        if self.regression:
            self.fit_transform_targets(y[parts["train"]])
        for name, idx in parts.items():
            target = None if y is None else y[idx]
            if self.regression:
                target = self.transform_targets(target)
            self.splits[name] = (self.transform(x[idx]), target)

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
        """D_y of a regression data set (loading it on first access); None for density data."""
        if not self.regression:
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
        """All training points ``[N_train, D]`` (used to initialise models)."""
        return self.split("train")[0]

    def setup(self, stage: str | None = None) -> None:
        self._ensure_loaded()
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None:
            self.splits = {
                k: (x.to(device), None if y is None else y.to(device))
                for k, (x, y) in self.splits.items()
            }

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _exact_statistics(self) -> bool:
        module = self.trainer.lightning_module if self.trainer is not None else None
        return bool(getattr(module, "exact_statistics", False))

    def _loader(self, name: str, train: bool) -> TensorBatches:
        x, y = self.split(name)
        rank, world = self._rank_world()
        return TensorBatches(
            x, y,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and self.shuffle,
            seed=self.split_seed,
            epoch=self._epoch,
            rank=rank,
            world_size=world,
            # Gradient training needs equal batch counts per rank (padding, as DistributedSampler
            # does); summed statistics (EM) need every point exactly once.
            pad=train and world > 1 and not self._exact_statistics(),
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
