"""Tests of FileDataModule: formats, labels, standardisation and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mixtures.data import FileDataModule

N, D = 40, 3


def _table() -> np.ndarray:
    """Deterministic features ``[N, D]`` on different scales."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, D)) * np.array([1.0, 10.0, 0.1]) + np.array([5.0, -20.0, 0.3])


def _labels() -> np.ndarray:
    """Non-contiguous labels from {3, 7, 9}, each present."""
    return np.array([3, 7, 9] * (N // 3) + [3] * (N % 3))


def _all_points(dm: FileDataModule) -> torch.Tensor:
    """Every split's points, concatenated (train, val, test)."""
    return torch.cat([dm.split(s)[0] for s in ("train", "val", "test")])


def _all_labels(dm: FileDataModule) -> torch.Tensor:
    return torch.cat([dm.split(s)[1] for s in ("train", "val", "test")])


def _same_rows(a: torch.Tensor, b: np.ndarray) -> bool:
    """Whether ``a`` holds the rows of ``b`` in some order."""
    key = lambda t: t[np.lexsort(t.T[::-1])]  # noqa: E731
    return np.allclose(key(a.double().numpy()), key(np.asarray(b, dtype=np.float64)), atol=1e-5)


def _write_csv(path: Path, arr: np.ndarray, sep: str = ",", header: str | None = None) -> None:
    lines = [] if header is None else [header]
    lines += [sep.join(repr(float(v)) for v in row) for row in arr]
    path.write_text("\n".join(lines) + "\n")


# -- formats ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["npy", "pt", "csv", "csv_header", "tsv", "tsv_header", "txt"])
def test_formats_features_only(tmp_path: Path, fmt: str) -> None:
    """Each format loads the same features, untouched with standardize=False."""
    x = _table()
    if fmt == "npy":
        path = tmp_path / "x.npy"
        np.save(path, x)
    elif fmt == "pt":
        path = tmp_path / "x.pt"
        torch.save(torch.as_tensor(x), path)
    else:
        ext, _, header = fmt.partition("_")
        path = tmp_path / f"x.{ext}"
        sep = "\t" if ext == "tsv" else ","
        _write_csv(path, x, sep, sep.join(["a", "b", "c"]) if header else None)
    dm = FileDataModule(str(path), standardize=False, dtype="float64")
    assert dm.num_features == D
    assert dm.num_classes is None
    assert dm.split("train")[1] is None
    assert sum(dm.split(s)[0].shape[0] for s in ("train", "val", "test")) == N
    assert _same_rows(_all_points(dm), x)


@pytest.mark.parametrize("fmt", ["npz", "pt_dict"])
def test_formats_with_labels(tmp_path: Path, fmt: str) -> None:
    """``.npz`` and ``.pt`` dicts with ``x`` and ``y`` give features and remapped labels."""
    x, y = _table(), _labels()
    if fmt == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, x=x, y=y)
    else:
        path = tmp_path / "d.pt"
        torch.save({"x": torch.as_tensor(x), "y": torch.as_tensor(y)}, path)
    dm = FileDataModule(str(path), standardize=False, dtype="float64")
    assert dm.num_features == D and dm.num_classes == 3
    pts, lab = _all_points(dm), _all_labels(dm)
    assert _same_rows(pts, x)
    mapping = {3: 0, 7: 1, 9: 2}
    # each point keeps its own label: match rows to the original table by their first column
    for row, label in zip(pts.numpy(), lab.tolist(), strict=True):
        i = int(np.argmin(np.abs(x[:, 0] - row[0])))
        assert mapping[int(y[i])] == label


def test_npz_and_pt_without_labels(tmp_path: Path) -> None:
    """An ``.npz`` or ``.pt`` dict without ``y`` has no labels."""
    np.savez(tmp_path / "a.npz", x=_table())
    torch.save({"x": torch.as_tensor(_table())}, tmp_path / "a.pt")
    for name in ("a.npz", "a.pt"):
        dm = FileDataModule(str(tmp_path / name))
        assert dm.num_features == D and dm.num_classes is None


@pytest.mark.parametrize("label_column", [-1, 3, 0, 1])
@pytest.mark.parametrize("ext", ["csv", "npy"])
def test_label_column_removed_and_remapped(tmp_path: Path, label_column: int, ext: str) -> None:
    """The label column leaves the features; labels {3, 7, 9} become 0..2."""
    x, y = _table(), _labels()
    col = label_column % (D + 1)
    table = np.insert(x, col, y, axis=1)  # [N, D + 1]
    path = tmp_path / f"t.{ext}"
    if ext == "npy":
        np.save(path, table)
    else:
        _write_csv(path, table, header="f0,f1,f2,label")
    dm = FileDataModule(str(path), label_column=label_column, standardize=False,
                        dtype="float64")
    assert dm.num_features == D
    assert dm.num_classes == 3
    lab = _all_labels(dm)
    assert set(lab.tolist()) == {0, 1, 2}
    assert lab.dtype == torch.int64
    assert _same_rows(_all_points(dm), x)
    pts = _all_points(dm).numpy()
    mapping = {3: 0, 7: 1, 9: 2}
    for row, label in zip(pts, lab.tolist(), strict=True):
        i = int(np.argmin(np.abs(x[:, 0] - row[0])))
        assert mapping[int(y[i])] == label


# -- standardisation ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_standardize_training_split(tmp_path: Path, dtype: str) -> None:
    """The training split has mean 0 and std 1 per feature; other splits use its transform."""
    np.save(tmp_path / "x.npy", _table())
    dm = FileDataModule(str(tmp_path / "x.npy"), standardize=True, dtype=dtype,
                        val_fraction=0.2, test_fraction=0.2)
    raw = FileDataModule(str(tmp_path / "x.npy"), standardize=False, dtype=dtype,
                         val_fraction=0.2, test_fraction=0.2)
    xt = dm.train_tensor
    assert xt.dtype == getattr(torch, dtype)
    tol = 1e-5 if dtype == "float32" else 1e-10
    assert torch.allclose(xt.mean(0), torch.zeros(D, dtype=xt.dtype), atol=tol)
    assert torch.allclose(xt.std(0), torch.ones(D, dtype=xt.dtype), atol=tol)
    shift, scale = raw.train_tensor.mean(0), raw.train_tensor.std(0)
    for s in ("val", "test"):
        assert torch.allclose(dm.split(s)[0], (raw.split(s)[0] - shift) / scale, atol=tol)
    # the held-out splits are not standardised on their own statistics
    assert not torch.allclose(dm.split("val")[0].mean(0), torch.zeros(D, dtype=xt.dtype),
                              atol=1e-3)


def test_the_standardizer_recovers_raw_moments(tmp_path: Path) -> None:
    """Standardised mean/covariance of the training data map back to the raw ones."""
    np.save(tmp_path / "x.npy", _table())
    dm = FileDataModule(str(tmp_path / "x.npy"), standardize=True, dtype="float64")
    raw = FileDataModule(str(tmp_path / "x.npy"), standardize=False, dtype="float64")
    xs, xr = dm.train_tensor, raw.train_tensor
    means = torch.stack([xs.mean(0), xs[:10].mean(0)])  # [K=2, D]
    covs = torch.stack([torch.cov(xs.T), torch.cov(xs[:10].T)])  # [K=2, D, D]
    std = dm.x_standardizer
    m, c = std.means_to_original(means), std.covariances_to_original(covs)
    assert m.shape == (2, D) and c.shape == (2, D, D)
    assert torch.allclose(m[0], xr.mean(0))
    assert torch.allclose(c[0], torch.cov(xr.T))
    assert torch.allclose(m[1], xr[:10].mean(0))
    assert torch.allclose(c[1], torch.cov(xr[:10].T))
    # float32 estimates come back in float32
    m32, c32 = std.means_to_original(means.float()), std.covariances_to_original(covs.float())
    assert m32.dtype == c32.dtype == torch.float32
    assert torch.allclose(m32[0].double(), xr.mean(0), rtol=1e-4, atol=1e-4)
    assert torch.allclose(c32[0].double(), torch.cov(xr.T), rtol=1e-4, atol=1e-4)


def test_standardize_false_untouched(tmp_path: Path) -> None:
    """standardize=False leaves the data as it is and has no map back (the identity)."""
    x = _table()
    np.save(tmp_path / "x.npy", x)
    dm = FileDataModule(str(tmp_path / "x.npy"), standardize=False, dtype="float64")
    assert _same_rows(_all_points(dm), x)
    assert dm.x_standardizer is None


def test_standardize_constant_column(tmp_path: Path) -> None:
    """A constant feature is shifted to 0, not divided by zero."""
    x = _table()
    x[:, 1] = 4.0
    np.save(tmp_path / "x.npy", x)
    xt = FileDataModule(str(tmp_path / "x.npy"), standardize=True).train_tensor
    assert torch.isfinite(xt).all()
    assert torch.equal(xt[:, 1], torch.zeros_like(xt[:, 1]))


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bad", "row"), [(float("nan"), 7), (float("nan"), 0)])
@pytest.mark.parametrize("ext", ["npy", "csv"])
def test_nan_in_data(tmp_path: Path, bad: float, row: int, ext: str) -> None:
    """NaN in a feature raises ValueError naming NaN and the first bad row."""
    x = _table()
    x[row, 2] = bad
    x[row + 5, 0] = bad
    path = tmp_path / f"x.{ext}"
    np.save(path, x) if ext == "npy" else _write_csv(path, x)
    dm = FileDataModule(str(path))
    with pytest.raises(ValueError, match=rf"2 row\(s\) contain NaN.*first at row {row}\b.*remove"):
        dm.setup("fit")


@pytest.mark.parametrize("bad", [float("inf"), -float("inf")])
def test_inf_in_data(tmp_path: Path, bad: float) -> None:
    """inf in a feature raises ValueError mentioning inf and the row."""
    x = _table()
    x[12, 1] = bad
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"NaN or inf \(first at row 12, columns \[1\]\)"):
        FileDataModule(str(tmp_path / "x.npy")).setup("fit")


def test_nan_in_label_column(tmp_path: Path) -> None:
    """NaN in the label column is reported as such."""
    table = np.insert(_table(), D, _labels(), axis=1)
    table[4, D] = np.nan
    np.save(tmp_path / "t.npy", table)
    with pytest.raises(ValueError, match=r"label column 3 holds NaN"):
        FileDataModule(str(tmp_path / "t.npy"), label_column=-1).setup("fit")


def test_missing_file(tmp_path: Path) -> None:
    """A missing file raises FileNotFoundError naming data.path."""
    dm = FileDataModule(str(tmp_path / "nope.npy"))
    with pytest.raises(FileNotFoundError, match=r"data\.path=.*nope\.npy.*does not exist"):
        dm.setup("fit")


@pytest.mark.parametrize("name", ["x.json", "x.parquet", "x"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    """An unknown extension raises ValueError listing the supported ones."""
    (tmp_path / name).write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"unsupported extension.*'\.npy'.*'\.csv'"):
        FileDataModule(str(tmp_path / name)).setup("fit")


@pytest.mark.parametrize("col", [4, -5, 10])
def test_label_column_out_of_range(tmp_path: Path, col: int) -> None:
    """A label column outside the table raises ValueError naming data.label_column."""
    np.save(tmp_path / "t.npy", np.insert(_table(), D, _labels(), axis=1))  # 4 columns
    with pytest.raises(ValueError, match=rf"data\.label_column={col} is out of range for 4"):
        FileDataModule(str(tmp_path / "t.npy"), label_column=col).setup("fit")


def test_label_column_with_stored_labels(tmp_path: Path) -> None:
    """label_column on a file that already stores y asks to drop label_column."""
    np.savez(tmp_path / "d.npz", x=_table(), y=_labels())
    with pytest.raises(ValueError, match=r"drop data\.label_column"):
        FileDataModule(str(tmp_path / "d.npz"), label_column=-1).setup("fit")


@pytest.mark.parametrize(
    "text",
    ["a,b\n1,2\n3,x\n", "1,2\n3,cat\n", "1;2\n3;4\n"],
)
def test_non_numeric_csv(tmp_path: Path, text: str) -> None:
    """Unparseable text raises ValueError pointing at data.delimiter and numeric values."""
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(ValueError, match=r"could not parse numbers.*data\.delimiter.*numeric"):
        FileDataModule(str(tmp_path / "x.csv")).setup("fit")


def test_custom_delimiter(tmp_path: Path) -> None:
    """data.delimiter reads a semicolon-separated file."""
    _write_csv(tmp_path / "x.txt", _table(), sep=";")
    dm = FileDataModule(str(tmp_path / "x.txt"), delimiter=";", standardize=False,
                        dtype="float64")
    assert _same_rows(_all_points(dm), _table())


@pytest.mark.parametrize("path", ["", "   ", None])
def test_empty_path(path: str | None) -> None:
    """An empty path raises ValueError showing how to set data.path."""
    with pytest.raises(ValueError, match=r"data=file needs data\.path="):
        FileDataModule(path)  # type: ignore[arg-type]


def test_bad_dtype(tmp_path: Path) -> None:
    """An unsupported dtype raises ValueError naming data.dtype."""
    with pytest.raises(ValueError, match=r"data\.dtype must be float32 or float64"):
        FileDataModule(str(tmp_path / "x.npy"), dtype="float16")


def test_not_a_table(tmp_path: Path) -> None:
    """A 3-D array raises ValueError asking for a 2-D table."""
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match=r"expected a 2-D table \[N, D\]"):
        FileDataModule(str(tmp_path / "x.npy")).setup("fit")


@pytest.mark.parametrize("name", ["x.npy", "x.npz"])
def test_corrupt_numpy_file_names_the_path(tmp_path: Path, name: str) -> None:
    """A corrupt .npy / .npz raises ValueError naming data.path and how to re-save it."""
    (tmp_path / name).write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match=rf"data\.path=.*{name}.*could not be read.*np\.save"):
        FileDataModule(str(tmp_path / name)).setup("fit")


@pytest.mark.parametrize("name", ["x.npy", "x.pt"])
def test_zero_feature_columns(tmp_path: Path, name: str) -> None:
    """A table without feature columns says so in the user's terms, not Standardizer's."""
    if name.endswith(".npy"):
        np.save(tmp_path / name, np.zeros((8, 0)))
    else:
        torch.save(torch.zeros(8, 0), tmp_path / name)
    with pytest.raises(ValueError, match=r"no feature columns.*at least one numeric column"):
        FileDataModule(str(tmp_path / name)).setup("fit")
