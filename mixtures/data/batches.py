"""In-memory batches: a batch is one index operation on a (device) tensor.

No per-sample ``__getitem__``. Shuffling uses a generator seeded by (seed, epoch), so a resumed
run sees exactly the batches an uninterrupted run would. Under DDP each rank takes every
``world_size``-th point of the (shuffled) order.

Letters: N points, D features, B batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["TensorBatches"]


class TensorBatches:
    """Iterable of ``(x,)`` or ``(x, y)`` batches sliced from in-memory tensors.

    Args:
        x: points ``[N, D]``.
        y: labels ``[N]`` or None.
        batch_size: points per batch (per rank); None for the whole shard in one batch.
        shuffle: reshuffle every epoch (with ``batch_size`` None, a no-op: each rank's one
            batch holds the same points in any order, so they are not gathered again).
        seed: base seed of the shuffle.
        epoch: callable returning the current epoch (the shuffle's second seed).
        rank: this process's rank; world_size: number of processes.
        pad: pad shards to equal length by wrapping around (like ``DistributedSampler``; the
            DataModules no longer use it: their shards are exact).
        equal_steps: give every rank the same number of batches (training under DDP).
        max_shard: when ``x`` is already this rank's shard (``rank`` 0, ``world_size`` 1), the
            largest rank's shard size: with ``equal_steps``, the batch count is that shard's.
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
        max_shard: int | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.equal_steps = equal_steps or pad
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch = epoch or (lambda: 0)
        self.rank, self.world_size, self.pad = rank, world_size, pad
        if max_shard is not None and (world_size != 1 or pad or max_shard < x.shape[0]):
            raise ValueError("max_shard is for a tensor that is already one rank's shard "
                             "(rank 0, world_size 1, no padding, max_shard >= its length).")
        self.max_shard = max_shard

    def _shard_size(self) -> int:
        n = self.x.shape[0]
        if self.pad:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        # Training ranks must run the same number of steps (collectives must match): unpadded
        # shards, which differ by at most one point, take the largest shard's batch count (the
        # smaller ones end with an empty batch).
        if self.equal_steps and self.max_shard is not None:
            size = self.max_shard
        elif self.equal_steps:
            size = math.ceil(self.x.shape[0] / self.world_size)
        else:
            size = self._shard_size()
        if self.batch_size is None:
            return 1 if size > 0 else 0
        return math.ceil(size / self.batch_size)

    def _indices(self) -> Tensor | None:
        n = self.x.shape[0]
        shuffle = self.shuffle and self.batch_size is not None  # one batch: order is moot
        if not shuffle and self.world_size == 1:
            return None  # contiguous slices, no gather (a full batch: the tensor itself)
        if shuffle:
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
