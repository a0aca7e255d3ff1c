"""Regression data sets: generators, standardisation, targets from files and scikit-learn."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from mixtures.data import (
    FileDataModule,
    HeteroscedasticDataModule,
    InverseSineDataModule,
    RingDataModule,
    SklearnRegressionDataModule,
    TensorBatches,
)
from mixtures.data.regression import make_heteroscedastic, make_inverse_sine, make_ring


def test_inverse_sine_is_bishops_problem_and_multi_valued():
    x, u = make_inverse_sine(20_000, noise=0.1, seed=0)
    assert x.shape == u.shape == (20_000, 1)
    residual = x - (u + 0.3 * torch.sin(2 * math.pi * u))
    assert residual.abs().max() <= 0.1 + 1e-6 and residual.std() > 0.05
    assert 0 <= u.min() and u.max() <= 1
    # with little noise, the targets at x = 0.5 fall on three separate branches
    xs, us = make_inverse_sine(20_000, noise=0.02, seed=0)
    hist = torch.histc(us[(xs[:, 0] - 0.5).abs() < 0.01, 0], bins=20, min=0, max=1)
    assert (hist[[4, 9, 10, 15]] > 100).all()
    assert hist[:3].sum() == hist[5:9].sum() == hist[11:15].sum() == hist[17:].sum() == 0
    x2, u2 = make_inverse_sine(20_000, noise=0.1, seed=0)
    assert torch.equal(x, x2) and torch.equal(u, u2)
    assert not torch.equal(x, make_inverse_sine(20_000, seed=1)[0])


def test_ring_radius_grows_with_x():
    x, y = make_ring(20_000, noise=0.05, seed=0)
    assert x.shape == (20_000, 1) and y.shape == (20_000, 2)
    radius = (y - torch.cat([x, torch.zeros_like(x)], 1)).norm(dim=1)
    assert (radius - (0.5 + x[:, 0])).abs().mean() < 0.05
    angle = torch.atan2(y[:, 1], y[:, 0] - x[:, 0])
    assert torch.histc(angle, bins=8, min=-math.pi, max=math.pi).min() > 2000  # all around


def test_heteroscedastic_noise_grows_linearly():
    x, y = make_heteroscedastic(40_000, noise_min=0.05, noise_max=0.5, seed=0)
    resid = (y - torch.sin(1.5 * x))[:, 0]
    left, right = resid[x[:, 0] < -2.5], resid[x[:, 0] > 2.5]
    assert left.std() == pytest.approx(0.0688, rel=0.1)  # σ(x) on (−3, −2.5): 0.05…0.0875
    assert right.std() == pytest.approx(0.4813, rel=0.1)  # 0.4625…0.5


@pytest.mark.parametrize("cls", [InverseSineDataModule, RingDataModule,
                                 HeteroscedasticDataModule])
def test_standardised_splits_and_the_maps_back(cls):
    dm = cls(num_samples=1000)
    assert dm.kind == "regression" and dm.num_features == 1
    assert dm.num_targets == (2 if cls is RingDataModule else 1)
    x, y = dm.split("train")
    assert x.mean().abs() < 1e-5 and (y.mean(0).abs() < 1e-5).all()
    assert (y.std(0) - 1).abs().max() < 1e-5
    xstd, ystd = dm.x_standardizer, dm.y_standardizer
    raw_x, raw_y = dm.load()
    assert dm.num_classes is None
    # the three splits are a partition of the raw data, in original units after the map back
    back = torch.cat([dm.split(s)[1] for s in ("train", "val", "test")])
    back = back * ystd.scale + ystd.shift
    assert torch.allclose(back.sort(0).values, raw_y.sort(0).values, atol=1e-5)
    xb = dm.split("val")[0] * xstd.scale + xstd.shift
    assert xb.min() >= raw_x.min() - 1e-5


def test_no_standardisation_keeps_units():
    dm = InverseSineDataModule(num_samples=500, standardize=False)
    assert dm.x_standardizer is None and dm.y_standardizer is None
    assert dm.split("train")[1].min() >= 0


def test_batches_keep_inputs_and_targets_aligned_across_ranks():
    x = torch.arange(101, dtype=torch.float32)[:, None]
    y = torch.cat([2 * x, -x], 1)
    seen = []
    for rank in range(3):
        for xb, yb in TensorBatches(x, y, batch_size=8, shuffle=True, seed=3, rank=rank,
                                    world_size=3, pad=True):
            assert yb.shape == (xb.shape[0], 2)
            assert torch.equal(yb[:, 0:1], 2 * xb) and torch.equal(yb[:, 1:], -xb)
            seen.append(xb)
    assert torch.cat(seen).unique().numel() == 101


@pytest.mark.parametrize(("name", "features", "targets"), [("diabetes", 10, 1),
                                                           ("linnerud", 3, 3)])
def test_sklearn_sets_offline(name, features, targets):
    dm = SklearnRegressionDataModule(name=name, val_fraction=0.15, test_fraction=0.15)
    assert dm.num_features == features and dm.num_targets == targets
    y = dm.split("train")[1]
    assert y.shape[1] == targets and torch.isfinite(y).all()
    if name == "diabetes":
        assert sum(dm.split(s)[0].shape[0] for s in ("train", "val", "test")) == 442
        # disease progression is reported back in its units (25 … 346)
        assert 100 < float(dm.y_standardizer.shift[0]) < 200


def test_sklearn_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    dm = SklearnRegressionDataModule(name="diabetes")
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        _ = dm.num_features


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="data.name='boston' is unknown"):
        SklearnRegressionDataModule(name="boston")
    with pytest.raises(ValueError, match="data.num_samples must be an integer ≥ 2"):
        InverseSineDataModule(num_samples=1)
    with pytest.raises(ValueError, match="data.noise must be ≥ 0"):
        RingDataModule(noise=-1.0)
    with pytest.raises(ValueError, match="noise_min ≤ data.noise_max"):
        make_heteroscedastic(100, noise_min=0.5, noise_max=0.1)


def _table(tmp_path, n=200):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = np.column_stack([x[:, 0] * 5 + 100, -x[:, 1]])
    path = tmp_path / "table.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,c,y1,y2",
               comments="")
    return path, x, y


def test_file_with_target_columns_is_a_regression_set(tmp_path):
    path, x, y = _table(tmp_path)
    dm = FileDataModule(str(path), target_columns=[-2, -1], dtype="float64")
    assert dm.kind == "regression" and dm.num_features == 3 and dm.num_targets == 2
    xstd, ystd = dm.x_standardizer, dm.y_standardizer
    xs, ys = dm.split("train")
    assert (ys.mean(0).abs() < 1e-8).all()
    rows = torch.cat([xs * xstd.scale + xstd.shift, ys * ystd.scale + ystd.shift], 1)
    full = torch.as_tensor(np.column_stack([x, y]))
    # every recovered row is a row of the file
    assert (rows[:, None] - full[None]).abs().amax(-1).amin(1).max() < 1e-8
    single = FileDataModule(str(path), target_columns=3)
    assert single.num_features == 4 and single.num_targets == 1
    plain = FileDataModule(str(path))
    assert plain.kind == "points" and plain.num_targets is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_columns": [7]}, r"data.target_columns=\[7\] out of range for 5 columns"),
        ({"target_columns": [0, 1, 2, 3, 4]}, "leaves no input columns"),
        ({"target_columns": [1], "label_column": -1}, "exclude each other"),
        ({"target_columns": []}, "data.target_columns is empty"),
        ({"target_columns": "last"}, "must be an int or a list of ints"),
    ],
)
def test_file_target_column_errors(tmp_path, kwargs, message):
    path, _, _ = _table(tmp_path)
    with pytest.raises(ValueError, match=message):
        _ = FileDataModule(str(path), **kwargs).num_targets


def test_non_finite_targets_are_rejected(tmp_path):
    path, x, y = _table(tmp_path)
    table = np.column_stack([x, y])
    table[11, 4] = np.nan
    np.save(tmp_path / "bad.npy", table)
    with pytest.raises(ValueError, match=r"\(targets\): 1 row\(s\) contain NaN or inf"):
        _ = FileDataModule(str(tmp_path / "bad.npy"), target_columns=[-1]).num_targets
