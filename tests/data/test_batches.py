"""Tests of in-memory batching (TensorBatches) and its use by a Lightning Trainer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import Tensor

from mixtures.data import BlobsDataModule, InMemoryDataModule, TensorBatches


def _data(n: int) -> tuple[Tensor, Tensor]:
    """Points ``[N, 2]`` whose first column is the row index; labels ``y = 3 * index``."""
    idx = torch.arange(n)
    x = torch.stack([idx.float(), -idx.float()], dim=1)
    return x, 3 * idx


def _ids(batches: list[tuple[Tensor, ...]]) -> Tensor:
    """Row indices of the points in ``batches``, in order; checks labels stay aligned."""
    for xb, yb in batches:
        assert xb.shape[0] == yb.shape[0]
        assert torch.equal(yb, 3 * xb[:, 0].long())
        assert torch.equal(xb[:, 1], -xb[:, 0])
    if not batches:
        return torch.empty(0, dtype=torch.long)
    return torch.cat([xb[:, 0].long() for xb, _ in batches])


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n", [1, 7, 100])
def test_full_batch(n: int, shuffle: bool) -> None:
    """batch_size None yields one batch holding every point: the tensor itself, shuffled or
    not (a gather of the whole set every epoch cost 0.1 s at 800k × 32 for nothing: sums, means
    and statistics of one batch do not depend on its order)."""
    x, y = _data(n)
    tb = TensorBatches(x, y, batch_size=None, shuffle=shuffle, epoch=lambda: 3)
    batches = list(tb)
    assert len(tb) == len(batches) == 1
    assert batches[0][0].data_ptr() == x.data_ptr()  # no copy
    assert torch.equal(_ids(batches), torch.arange(n))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "bs"), [(10, 3), (100, 64), (65, 64), (5, 8), (12, 4), (1, 1)])
def test_batch_size_need_not_divide(n: int, bs: int, shuffle: bool) -> None:
    """Every point appears exactly once per epoch; only the last batch may be smaller."""
    x, y = _data(n)
    tb = TensorBatches(x, y, batch_size=bs, shuffle=shuffle, seed=3)
    batches = list(tb)
    assert len(tb) == len(batches) == math.ceil(n / bs)
    sizes = [b[0].shape[0] for b in batches]
    assert sizes[:-1] == [bs] * (len(sizes) - 1)
    assert sizes[-1] == n - bs * (len(sizes) - 1)
    assert torch.equal(_ids(batches).sort().values, torch.arange(n))


@pytest.mark.parametrize("bs", [None, 4, 25])
def test_unshuffled_keeps_order(bs: int | None) -> None:
    """Without shuffling the batches follow the original order."""
    x, y = _data(25)
    assert torch.equal(_ids(list(TensorBatches(x, y, batch_size=bs))), torch.arange(25))


def test_without_labels_yields_one_tuple() -> None:
    """With y None each batch is a 1-tuple ``(x,)``."""
    x, _ = _data(10)
    batches = list(TensorBatches(x, None, batch_size=4, shuffle=True))
    assert all(len(b) == 1 for b in batches)
    assert torch.equal(torch.cat([b[0] for b in batches])[:, 0].sort().values, x[:, 0])


@pytest.mark.parametrize("bs", [16, 99])  # (batch_size None: no shuffle, test_full_batch)
def test_shuffle_depends_on_seed_and_epoch(bs: int | None) -> None:
    """The order changes between epochs and seeds but is identical for the same (seed, epoch)."""
    x, y = _data(100)
    epoch = {"now": 0}
    tb = TensorBatches(x, y, batch_size=bs, shuffle=True, seed=7, epoch=lambda: epoch["now"])
    orders = []
    for e in range(3):
        epoch["now"] = e
        orders.append(_ids(list(tb)))
        assert torch.equal(orders[-1].sort().values, torch.arange(100))
    assert not torch.equal(orders[0], torch.arange(100))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    again = TensorBatches(x, y, batch_size=bs, shuffle=True, seed=7, epoch=lambda: 1)
    assert torch.equal(_ids(list(again)), orders[1])
    epoch["now"] = 1
    assert torch.equal(_ids(list(tb)), orders[1])
    other_seed = TensorBatches(x, y, batch_size=bs, shuffle=True, seed=8, epoch=lambda: 1)
    assert not torch.equal(_ids(list(other_seed)), orders[1])


def _shards(n: int, world: int, bs: int | None, shuffle: bool, pad: bool) -> list[list]:
    """The batches of every rank, checking ``len()`` against what each rank yields."""
    x, y = _data(n)
    out = []
    for rank in range(world):
        tb = TensorBatches(x, y, batch_size=bs, shuffle=shuffle, seed=2, epoch=lambda: 5,
                           rank=rank, world_size=world, pad=pad)
        batches = list(tb)
        assert len(tb) == len(batches)
        out.append(batches)
    return out


SHARD_CASES = [
    (n, world, bs)
    for world in (2, 3)
    for n, bs in ((10, 3), (11, 3), (100, 16), (7, None), (3, 5), (1, 2))
] + [(3, 8, 2), (2, 5, None)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "world", "bs"), SHARD_CASES)
def test_ddp_padded_training_shards(n: int, world: int, bs: int | None, shuffle: bool) -> None:
    """With pad=True all ranks get the same number of batches and points; all points covered."""
    shards = _shards(n, world, bs, shuffle, pad=True)
    per_rank = math.ceil(n / world)
    assert len({len(s) for s in shards}) == 1, "ranks would run different numbers of steps"
    for batches in shards:
        assert sum(b[0].shape[0] for b in batches) == per_rank
        if bs is not None:
            assert len(batches) == math.ceil(per_rank / bs)
    ids = torch.cat([_ids(s) for s in shards])
    assert ids.numel() == per_rank * world
    assert torch.equal(ids.unique(), torch.arange(n))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "world", "bs"), SHARD_CASES)
def test_ddp_unpadded_eval_shards(n: int, world: int, bs: int | None, shuffle: bool) -> None:
    """With pad=False the shards are disjoint and hold every point exactly once."""
    shards = _shards(n, world, bs, shuffle, pad=False)
    ids = torch.cat([_ids(s) for s in shards])
    assert ids.numel() == n
    assert torch.equal(ids.sort().values, torch.arange(n))
    sizes = [sum(b[0].shape[0] for b in s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


# -- Lightning integration ----------------------------------------------------------------------
class _MeanModule(L.LightningModule):
    """One parameter fitted to the data mean; records what each training step receives."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(2))
        self.seen: list[tuple[type, torch.device, int]] = []

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0]
        self.seen.append((type(x), x.device, x.shape[0]))
        return ((x - self.p) ** 2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_uses_tensor_batches() -> None:
    """A Trainer fits one epoch on device tensors with ceil(n_train / 64) steps."""
    dm = BlobsDataModule(num_samples=500, batch_size=64)
    model = _MeanModule()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    n_train = dm.train_tensor.shape[0]
    steps = math.ceil(n_train / 64)
    assert n_train == 400
    assert trainer.global_step == steps == len(model.seen)
    assert isinstance(trainer.train_dataloader, TensorBatches)
    assert all(t is Tensor or issubclass(t, Tensor) for t, _, _ in model.seen)
    assert all(dev == model.device for _, dev, _ in model.seen)
    assert sum(size for _, _, size in model.seen) == n_train
    assert [size for _, _, size in model.seen] == [64] * (steps - 1) + [n_train - 64 * (steps - 1)]
    assert not torch.equal(model.p.detach(), torch.zeros(2)), "the parameter was not trained"


# -- DataModule shards under DDP ----------------------------------------------------------------
class _Indexed(InMemoryDataModule):
    """``n`` unlabelled points whose first column is the row index."""

    def __init__(self, n: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n = n

    def load(self) -> tuple[Tensor, None]:
        return _data(self.n)[0], None


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "bs"), [(101, 8), (100, 16), (37, None), (8, 3), (2, 4)])
def test_datamodule_training_shards_are_exact(n: int, bs: int | None, world: int) -> None:
    """Under a simulated world size, the training loaders of all ranks hold every training
    point exactly once per epoch (no padding), with the same number of batches on every rank;
    the data never asks the LightningModule how to shard (the mock trainer has none)."""
    dm = _Indexed(n, batch_size=bs, val_fraction=0.0, test_fraction=0.0, split_seed=4)
    trainer = SimpleNamespace(global_rank=0, world_size=world, current_epoch=0)
    dm.trainer = trainer  # type: ignore[assignment]
    orders = []
    for epoch in (0, 1):
        trainer.current_epoch = epoch
        shards = []
        for rank in range(world):
            trainer.global_rank = rank
            loader = dm.train_dataloader()
            assert not loader.pad
            batches = list(loader)
            assert len(loader) == len(batches)
            shards.append(batches)
        assert len({len(s) for s in shards}) == 1, "ranks would run different numbers of steps"
        ids = torch.cat([b[0][:, 0].long() for s in shards for b in s])
        assert torch.equal(ids.sort().values, torch.arange(n)), "not every point exactly once"
        orders.append(ids)
    if bs is None:  # one batch per rank: the shards are fixed (order within one is moot)
        assert torch.equal(orders[0], orders[1])
    else:
        assert n < 3 or not torch.equal(orders[0], orders[1]), "the shuffle ignored the epoch"


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "bs"), [(101, 8), (37, None), (8, 3)])
def test_a_module_reading_only_its_shard_gets_only_its_shard(n: int, bs: int | None,
                                                            world: int) -> None:
    """With ``keep_only_shard`` (train.py sets it for memoized VI), ``setup`` keeps on each
    rank only that rank's points of every split (none holds all of them), and its loaders give
    exactly the batches of the unsharded DataModule for that rank, as many on every rank."""
    kwargs = dict(batch_size=bs, val_fraction=0.2, test_fraction=0.1, split_seed=4, shuffle=False)
    lengths = set()
    for rank in range(world):
        trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=0,
                                  strategy=SimpleNamespace(root_device=torch.device("cpu")))
        sharded, whole = _Indexed(n, **kwargs), _Indexed(n, **kwargs)
        sharded.trainer = whole.trainer = trainer  # type: ignore[assignment]
        sharded.keep_only_shard = True
        sharded.setup("fit")
        whole.setup("fit")
        assert sharded.shard == (rank, world) and whole.shard is None
        for name in ("train", "val", "test"):
            size = whole.split(name)[0].shape[0]
            assert sharded.full_sizes[name] == size
            assert sharded.split(name)[0].shape[0] == len(range(rank, size, world))
        for make in ("train_dataloader", "val_dataloader", "test_dataloader"):
            got, want = list(getattr(sharded, make)()), list(getattr(whole, make)())
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                assert torch.equal(a[0], b[0])
        lengths.add(len(sharded.train_dataloader()))
        sharded.setup("test")  # a second setup keeps the shard
        assert sharded.split("train")[0].shape[0] == len(range(rank, whole.split("train")[0]
                                                              .shape[0], world))
        sharded.trainer = SimpleNamespace(global_rank=(rank + 1) % world, world_size=world)
        with pytest.raises(RuntimeError, match="new DataModule"):
            sharded.setup("fit")
    assert len(lengths) == 1, "ranks would run different numbers of steps"
