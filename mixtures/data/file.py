"""The user's own data from a file (``data=file data.path=...``).

Formats: ``.npy`` (a 2-D array), ``.npz`` (arrays ``x`` and optional ``y``), ``.pt`` (a 2-D
tensor, or a dict with ``x`` and optional ``y``), ``.csv`` / ``.txt`` (numbers, an optional
header line). ``label_column`` picks a column (e.g. ``-1``) holding labels that are removed from
the features and used only for evaluation (ARI / NMI). ``target_columns`` (e.g. ``[-1]`` or
``[3, 4]``) instead makes it a *regression* table: those columns are the targets ``y [N, D_y]``
of a conditional model (``model=mdn``) and the others its inputs.

With ``standardize: true`` the features are shifted and scaled by the training split's mean and
standard deviation (``x_standardizer``, a :class:`~mixtures.data.standardize.Standardizer` that
maps fitted means and covariances back, so ``train`` reports them in the original units).
Regression targets are standardised likewise (``y_standardizer``).

Letters: N points, K components, D features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mixtures.data.base import InMemoryDataModule

__all__ = ["FileDataModule", "load_array"]

FORMATS = (".npy", ".npz", ".pt", ".pth", ".csv", ".txt", ".tsv")


def _read_text(path: Path, delimiter: str | None) -> np.ndarray:
    if delimiter is None:
        delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open() as fh:
        first = fh.readline()
    try:
        [float(v) for v in first.strip().split(delimiter) if v.strip() != ""]
        skip = 0
    except ValueError:
        skip = 1  # a header line
    try:
        arr = np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(
            f"{path}: could not parse numbers ({err}); check data.delimiter (now "
            f"{delimiter!r}) and that every value is numeric (labels must be numbers too)."
        ) from err
    return arr


def load_array(path: str | Path, delimiter: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Read ``x`` (and ``y`` when the file stores it separately) from ``path``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data.path={str(path)!r} does not exist; pass an existing .npy/.npz/.pt/.csv file."
        )
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"data.path has unsupported extension {suffix!r}; use one of {FORMATS}.")
    y = None
    if suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(
                f"data.path={str(path)!r} could not be read as a {suffix} file ({err}); the file "
                f"is corrupt or not a numeric NumPy array — re-save it with np.save / np.savez "
                f"from a numeric array."
            ) from err
        if suffix == ".npy":
            x = loaded
        else:
            with loaded as z:
                if "x" not in z:
                    raise ValueError(f"{path}: an .npz file must hold an array named 'x'.")
                x = z["x"]
                y = z["y"] if "y" in z else None
    elif suffix in (".pt", ".pth"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            if "x" not in obj:
                raise ValueError(f"{path}: a .pt dict must hold a tensor under key 'x'.")
            x, y = obj["x"], obj.get("y")
        else:
            x = obj
    else:
        x = _read_text(path, delimiter)
    x_t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    y_t = None if y is None else torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    return x_t, y_t


class FileDataModule(InMemoryDataModule):
    """Points from ``path``; see the module docstring.

    Args:
        path: the file.
        label_column: index of a label column (e.g. -1), or None.
        target_columns: indices of regression target columns (an int or a list), or None.
        standardize: standardise features (and targets) with the training split's mean and
            std.
        delimiter: column separator for text files (default ``,``; tab for ``.tsv``).
        dtype: ``float32`` or ``float64``.
        **kwargs: batch sizes, split fractions and seed of :class:`InMemoryDataModule`.
    """

    def __init__(
        self,
        path: str,
        label_column: int | None = None,
        target_columns: int | list[int] | None = None,
        standardize: bool = True,
        delimiter: str | None = None,
        dtype: str = "float32",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if path is None or str(path).strip() == "":
            raise ValueError("data=file needs data.path=/path/to/points.(npy|npz|pt|csv).")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"data.dtype must be float32 or float64, got {dtype!r}.")
        self.path = str(path)
        self.label_column = label_column
        if target_columns is not None:
            if label_column is not None:
                raise ValueError(
                    "data.label_column and data.target_columns exclude each other: labels "
                    "are for density models, targets for regression (model=mdn)."
                )
            cols = [target_columns] if isinstance(target_columns, int) else target_columns
            try:
                cols = [int(c) for c in cols]
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"data.target_columns must be an int or a list of ints, got "
                    f"{target_columns!r}."
                ) from err
            if not cols:
                raise ValueError("data.target_columns is empty; give at least one column.")
            target_columns = cols
        self.target_columns = target_columns
        self.standardize = standardize
        self.delimiter = delimiter
        self.dtype = getattr(torch, dtype)

    # The one DataModule whose kind depends on its configuration (read it on the instance).
    @property
    def kind(self) -> str:  # type: ignore[override]
        """``regression`` with ``target_columns``, else ``points``."""
        return "points" if self.target_columns is None else "regression"

    def _describe(self) -> str:
        return f"data file {self.path}"

    def load(self) -> tuple[Tensor, Tensor | None]:
        x, y = load_array(self.path, self.delimiter)
        if x.dim() == 1:
            x = x[:, None]
        if x.dim() != 2:
            raise ValueError(
                f"{self.path}: expected a 2-D table [N, D], got shape {list(x.shape)}."
            )
        if x.shape[1] == 0:
            raise ValueError(
                f"{self.path}: the table has no feature columns (shape {list(x.shape)}); the file "
                "must hold at least one numeric column per point — check data.path and, for a "
                "text file, data.delimiter."
            )
        if self.label_column is not None:
            if y is not None:
                raise ValueError(
                    f"{self.path} already stores labels 'y'; drop data.label_column."
                )
            col = int(self.label_column)
            if not -x.shape[1] <= col < x.shape[1]:
                raise ValueError(
                    f"data.label_column={col} is out of range for {x.shape[1]} columns."
                )
            col %= x.shape[1]
            y = x[:, col]
            if not torch.isfinite(y.double()).all():
                raise ValueError(f"{self.path}: the label column {col} holds NaN or inf.")
            keep = [c for c in range(x.shape[1]) if c != col]
            x = x[:, keep]
            if x.shape[1] == 0:
                raise ValueError(f"{self.path}: no feature columns left besides the labels.")
        if self.target_columns is not None:
            x, y = self._split_targets(x, y)
        return x.to(self.dtype), y

    def _split_targets(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        if y is not None:
            raise ValueError(
                f"{self.path} stores an array 'y' (read as labels); for regression keep "
                "targets as columns of 'x' and name them with data.target_columns."
            )
        d = x.shape[1]
        bad = [c for c in self.target_columns if not -d <= c < d]
        if bad:
            raise ValueError(f"data.target_columns={bad} out of range for {d} columns.")
        cols = sorted({c % d for c in self.target_columns})
        if len(cols) == d:
            raise ValueError(f"{self.path}: data.target_columns leaves no input columns.")
        inputs = [c for c in range(d) if c not in cols]
        return x[:, inputs], x[:, cols].to(self.dtype)
