"""What every DataModule declares: its kind, its sizes and its standardisers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixtures.data import (
    DATA_KINDS,
    BlobsDataModule,
    FileDataModule,
    HeteroscedasticDataModule,
    InMemoryDataModule,
    InverseSineDataModule,
    MNISTDataModule,
    RingDataModule,
    SklearnRegressionDataModule,
    Standardizer,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import prepare_mnist  # noqa: E402


def test_data_kinds_describe_their_configs() -> None:
    assert set(DATA_KINDS) == {"points", "regression", "images"}
    assert all("data=" in text for text in DATA_KINDS.values())
    assert InMemoryDataModule.kind == "points"


def _table(tmp_path: Path) -> Path:
    """A 5-column table ``[60, 5]`` on different scales, saved as .npy."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", rng.normal(size=(60, 5)) * [1, 10, 0.1, 3, 2] + [0, 5, -1, 2, 9])
    return tmp_path / "t.npy"


def _check(dm: InMemoryDataModule, kind: str, sizes: dict[str, int]) -> None:
    assert dm.kind == kind and kind in DATA_KINDS
    assert dm.sizes() == sizes
    assert dm.num_targets == sizes.get("num_targets")


def test_blobs_are_points() -> None:
    dm = BlobsDataModule(num_samples=50, num_features=3, num_components=2)
    _check(dm, "points", {"num_features": 3})
    assert dm.x_standardizer is None and dm.y_standardizer is None
    assert dm.num_classes == 2  # labels, for evaluation only


@pytest.mark.parametrize("standardize", [True, False])
def test_file_without_targets_is_points(tmp_path: Path, standardize: bool) -> None:
    dm = FileDataModule(str(_table(tmp_path)), standardize=standardize, dtype="float64")
    _check(dm, "points", {"num_features": 5})
    assert dm.y_standardizer is None
    assert (dm.x_standardizer is not None) == standardize
    labelled = FileDataModule(str(_table(tmp_path)), label_column=-1, standardize=standardize)
    _check(labelled, "points", {"num_features": 4})


def test_file_with_targets_is_regression(tmp_path: Path) -> None:
    dm = FileDataModule(str(_table(tmp_path)), target_columns=[0, -1], dtype="float64")
    _check(dm, "regression", {"num_features": 3, "num_targets": 2})
    assert isinstance(dm.x_standardizer, Standardizer) and dm.x_standardizer.num_features == 3
    assert isinstance(dm.y_standardizer, Standardizer) and dm.y_standardizer.num_features == 2
    raw = FileDataModule(str(_table(tmp_path)), target_columns=[0, -1], dtype="float64",
                         standardize=False)
    assert raw.x_standardizer is None and raw.y_standardizer is None
    # the served splits are the raw ones through the standardisers fitted on the training split
    for name in ("train", "val", "test"):
        (xs, ys), (xr, yr) = dm.split(name), raw.split(name)
        torch.testing.assert_close(xs, dm.x_standardizer.transform(xr))
        torch.testing.assert_close(ys, dm.y_standardizer.transform(yr))
    torch.testing.assert_close(dm.y_standardizer.shift, raw.split("train")[1].mean(0))
    torch.testing.assert_close(dm.y_standardizer.scale, raw.split("train")[1].std(0))


@pytest.mark.parametrize(
    ("dm", "sizes"),
    [
        (lambda: InverseSineDataModule(num_samples=100), {"num_features": 1, "num_targets": 1}),
        (lambda: RingDataModule(num_samples=100), {"num_features": 1, "num_targets": 2}),
        (lambda: HeteroscedasticDataModule(num_samples=100),
         {"num_features": 1, "num_targets": 1}),
        (lambda: SklearnRegressionDataModule("diabetes"),
         {"num_features": 10, "num_targets": 1}),
        (lambda: SklearnRegressionDataModule("linnerud"),
         {"num_features": 3, "num_targets": 3}),
    ],
    ids=["inverse_sine", "ring", "heteroscedastic", "diabetes", "linnerud"],
)
def test_regression_sets(dm, sizes: dict[str, int]) -> None:
    dm = dm()
    _check(dm, "regression", sizes)
    assert dm.y_standardizer.log_scale_sum == dm.y_standardizer.scale.log().sum()


def test_regression_without_standardisation() -> None:
    dm = InverseSineDataModule(num_samples=100, standardize=False)
    assert dm.x_standardizer is None and dm.y_standardizer is None


def test_mnist_is_images(tmp_path: Path) -> None:
    """On tiny IDX files: kind ``images``, 10 classes, no standardisers (fixed normalisation)."""
    rng = np.random.default_rng(0)

    def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)

    prepare_mnist.write_idx((digits(30), digits(10), digits(10)), tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), num_val=10)
    _check(dm, "images", {"num_classes": 10})
    assert dm.x_standardizer is None and dm.y_standardizer is None
    assert dm.split("train")[0].shape == (30, 784)
