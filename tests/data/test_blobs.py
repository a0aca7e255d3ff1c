"""Tests of the synthetic mixture generator and its DataModule."""

from __future__ import annotations

import pytest
import torch

from mixtures.data import BlobsDataModule, make_blobs

F64 = torch.float64


def _cov(x: torch.Tensor) -> torch.Tensor:
    """Biased sample covariance ``[D, D]`` of points ``[N, D]``."""
    xc = x - x.mean(0)
    return xc.T @ xc / x.shape[0]


# -- make_blobs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", ["full", "diag", "scalar", "unit"])
@pytest.mark.parametrize(("n", "d", "k"), [(50, 2, 3), (7, 1, 2), (120, 4, 5)])
def test_make_blobs_shapes_and_dtypes(covariance_type: str, n: int, d: int, k: int) -> None:
    """Points, labels and truth have the documented shapes and dtypes."""
    x, y, truth = make_blobs(n, d, k, covariance_type=covariance_type, seed=1)
    assert x.shape == (n, d) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert truth["weights"].shape == (k,)
    assert truth["means"].shape == (k, d)
    assert truth["covariances"].shape == (k, d, d)
    x64, _, truth64 = make_blobs(n, d, k, covariance_type=covariance_type, seed=1, dtype=F64)
    assert x64.dtype == F64 and truth64["covariances"].dtype == F64


@pytest.mark.parametrize("weight_concentration", [None, 0.7])
def test_make_blobs_deterministic_for_seed(weight_concentration: float | None) -> None:
    """The same seed gives identical output; another seed gives different output."""
    kw = dict(num_samples=200, num_features=3, num_components=4,
              weight_concentration=weight_concentration)
    x1, y1, t1 = make_blobs(**kw, seed=5)
    x2, y2, t2 = make_blobs(**kw, seed=5)
    x3, y3, t3 = make_blobs(**kw, seed=6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    for key in t1:
        assert torch.equal(t1[key], t2[key])
    assert not torch.equal(x1, x3)
    assert not torch.equal(t1["means"], t3["means"])


@pytest.mark.parametrize(
    ("k", "d", "separation", "max_std"),
    [(5, 2, 4.0, 1.5), (8, 3, 3.0, 1.0), (4, 1, 2.0, 2.0), (10, 5, 5.0, 1.5), (6, 2, 0.5, 1.0)],
)
def test_make_blobs_means_well_separated(k: int, d: int, separation: float, max_std: float) -> None:
    """Every pair of true means is at least ``separation * max_std`` apart."""
    _, _, truth = make_blobs(10, d, k, separation=separation, min_std=0.5, max_std=max_std,
                             seed=3, dtype=F64)
    dist = torch.cdist(truth["means"], truth["means"])
    dist = dist + torch.diag(torch.full((k,), float("inf"), dtype=F64))
    assert dist.min() >= separation * max_std


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_make_blobs_labels_in_range(seed: int) -> None:
    """Labels are component indices 0..K-1, each component used."""
    k = 6
    _, y, _ = make_blobs(3000, 2, k, seed=seed)
    assert int(y.min()) >= 0 and int(y.max()) < k
    assert torch.bincount(y, minlength=k).min() > 0


@pytest.mark.parametrize("covariance_type", ["full", "diag", "scalar", "unit"])
def test_make_blobs_covariance_structure(covariance_type: str) -> None:
    """The true covariances have the structure their type names, within the std range."""
    k, d, lo, hi = 4, 3, 0.5, 1.5
    _, _, truth = make_blobs(10, d, k, covariance_type=covariance_type, min_std=lo,
                             max_std=hi, seed=7, dtype=F64)
    cov = truth["covariances"]
    eye = torch.eye(d, dtype=F64)
    off = cov * (1 - eye)
    assert torch.allclose(cov, cov.transpose(-1, -2))
    eig = torch.linalg.eigvalsh(cov)  # [K, D]
    if covariance_type == "unit":
        assert torch.allclose(cov, eye.expand(k, d, d))
        return
    assert eig.min() >= lo**2 - 1e-9 and eig.max() <= hi**2 + 1e-9
    if covariance_type == "full":
        assert off.abs().amax() > 0.05, "full covariances should not be diagonal"
    else:
        assert torch.equal(off, torch.zeros_like(off))
    if covariance_type == "scalar":
        diag = torch.diagonal(cov, dim1=-2, dim2=-1)  # [K, D]
        assert torch.allclose(diag, diag[:, :1].expand(k, d))
        assert not torch.allclose(diag[0], diag[1]), "scalars should differ across components"
    if covariance_type == "diag":
        diag = torch.diagonal(cov, dim1=-2, dim2=-1)
        assert not torch.allclose(diag, diag[:, :1].expand(k, d)), "diag should not be scalar"


@pytest.mark.parametrize("covariance_type", ["full", "diag", "scalar", "unit"])
def test_make_blobs_empirical_moments_match_truth(covariance_type: str) -> None:
    """Per-component sample means and covariances are close to the truth."""
    k, d, n = 3, 3, 30_000
    x, y, truth = make_blobs(n, d, k, covariance_type=covariance_type, seed=11, dtype=F64)
    for c in range(k):
        xc = x[y == c]
        assert xc.shape[0] > n / k * 0.9
        assert torch.allclose(xc.mean(0), truth["means"][c], atol=0.06)
        assert torch.allclose(_cov(xc), truth["covariances"][c], atol=0.15)
    freq = torch.bincount(y, minlength=k).to(F64) / n
    assert torch.allclose(freq, truth["weights"], atol=0.02)


def test_make_blobs_equal_weights_by_default() -> None:
    """Without weight_concentration all K weights equal 1/K."""
    _, _, truth = make_blobs(100, 2, 5, seed=0, dtype=F64)
    assert torch.allclose(truth["weights"], torch.full((5,), 0.2, dtype=F64))


@pytest.mark.parametrize("concentration", [0.3, 1.0, 5.0])
def test_make_blobs_dirichlet_weights(concentration: float) -> None:
    """Dirichlet weights are positive, sum to 1, deterministic, not uniform, seed dependent."""
    k = 5
    kw = dict(num_samples=4000, num_features=2, num_components=k,
              weight_concentration=concentration, dtype=F64)
    _, y, t1 = make_blobs(**kw, seed=4)
    _, _, t2 = make_blobs(**kw, seed=4)
    _, _, t3 = make_blobs(**kw, seed=9)
    w = t1["weights"]
    assert (w >= 0).all()
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=F64))
    assert torch.equal(w, t2["weights"])
    assert not torch.allclose(w, t3["weights"])
    assert not torch.allclose(w, torch.full((k,), 1 / k, dtype=F64), atol=1e-3)
    freq = torch.bincount(y, minlength=k).to(F64) / y.numel()
    assert torch.allclose(freq, w, atol=0.03)


def test_make_blobs_dirichlet_leaves_global_rng_alone() -> None:
    """Sampling Dirichlet weights does not reseed the global torch RNG."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_blobs(10, 2, 3, weight_concentration=1.0, seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("bad", ["spherical", "Full", ""])
def test_make_blobs_unknown_covariance_type(bad: str) -> None:
    """An unknown covariance_type raises ValueError listing the choices."""
    with pytest.raises(ValueError, match=r"covariance_type.*'full', 'diag', 'scalar', 'unit'"):
        make_blobs(10, 2, 2, covariance_type=bad)
    with pytest.raises(ValueError, match=r"covariance_type.*'full', 'diag', 'scalar', 'unit'"):
        BlobsDataModule(covariance_type=bad)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(num_samples=0), "num_samples"),
        (dict(num_components=0), "num_components"),
        (dict(min_std=0.0), "min_std"),
        (dict(min_std=2.0, max_std=1.0), "max_std"),
    ],
)
def test_make_blobs_invalid_sizes(kwargs: dict, field: str) -> None:
    """Invalid sizes or std ranges raise ValueError naming the field."""
    args = dict(num_samples=10, num_features=2, num_components=2) | kwargs
    with pytest.raises(ValueError, match=field):
        make_blobs(**args)


# -- BlobsDataModule ----------------------------------------------------------------------------
def _row_index(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index in ``table [N, D]`` of each of ``rows [M, D]`` (exact matches)."""
    dist = torch.cdist(rows.double(), table.double())  # [M, N]
    best = dist.min(1)
    assert (best.values == 0).all(), "a split point is not one of the generated points"
    return best.indices


@pytest.mark.parametrize(
    ("n", "val", "test", "sizes"),
    [
        (1000, 0.1, 0.1, (800, 100, 100)),
        (1000, 0.2, 0.0, (800, 200, 0)),
        (101, 0.1, 0.25, (66, 10, 25)),
        (50, 0.0, 0.0, (50, 0, 0)),
    ],
)
def test_blobs_splits_disjoint_cover_and_sized(
    n: int, val: float, test: float, sizes: tuple[int, int, int]
) -> None:
    """Splits follow the fractions, are disjoint and together are exactly the generated data."""
    dm = BlobsDataModule(num_samples=n, num_features=3, num_components=4, seed=2,
                         val_fraction=val, test_fraction=test)
    x_all, y_all, _ = make_blobs(n, 3, 4, seed=2)
    got = tuple(dm.split(s)[0].shape[0] for s in ("train", "val", "test"))
    assert got == sizes
    idx = torch.cat([_row_index(dm.split(s)[0], x_all) for s in ("train", "val", "test")])
    assert torch.equal(idx.sort().values, torch.arange(n))
    y_split = torch.cat([dm.split(s)[1] for s in ("train", "val", "test")])
    assert torch.equal(y_split, y_all[idx])


def test_blobs_num_features_and_classes() -> None:
    """num_features is D and num_classes is K once loaded; truth is kept."""
    dm = BlobsDataModule(num_samples=600, num_features=4, num_components=3, seed=0)
    assert dm.num_features == 4
    assert dm.num_classes == 3
    assert dm.truth["means"].shape == (3, 4)
    assert dm.train_tensor.shape == (480, 4)
    y = dm.split("train")[1]
    assert int(y.min()) == 0 and int(y.max()) == 2


def test_blobs_deterministic_across_instances() -> None:
    """Two modules with equal arguments give equal splits; another split_seed does not."""
    kw = dict(num_samples=300, num_features=2, num_components=3, seed=1)
    a, b = BlobsDataModule(**kw), BlobsDataModule(**kw)
    c = BlobsDataModule(**kw, split_seed=1)
    for s in ("train", "val", "test"):
        assert torch.equal(a.split(s)[0], b.split(s)[0])
        assert torch.equal(a.split(s)[1], b.split(s)[1])
    assert not torch.equal(a.train_tensor, c.train_tensor)


def test_blobs_loaders_yield_batches() -> None:
    """Without a trainer the loaders serve the splits in batches of the requested size."""
    dm = BlobsDataModule(num_samples=500, num_features=2, num_components=3, batch_size=64,
                         eval_batch_size=None)
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == len(dm.train_dataloader()) == 7
    assert [b[0].shape[0] for b in train] == [64] * 6 + [16]
    val = list(dm.val_dataloader())
    assert len(val) == 1 and val[0][0].shape == (50, 2)


@pytest.mark.parametrize("field", ["batch_size", "eval_batch_size"])
@pytest.mark.parametrize("bad", [0, -3, 2.5, "8"])
def test_blobs_invalid_batch_size(field: str, bad: object) -> None:
    """A batch size that is not a positive integer raises ValueError naming the field."""
    with pytest.raises(ValueError, match=rf"data\.{field} must be a positive integer"):
        BlobsDataModule(**{field: bad})


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (0.7, 0.4), (1.0, 0.0), (-0.1, 0.2)])
def test_blobs_invalid_fractions(val: float, test: float) -> None:
    """Fractions outside [0, 1) or summing to >= 1 raise ValueError naming the fields."""
    with pytest.raises(ValueError, match=r"data\.val_fraction and data\.test_fraction"):
        BlobsDataModule(val_fraction=val, test_fraction=test)
