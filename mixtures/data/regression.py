"""Regression data sets ``(x, y)`` for conditional density models (``model=mdn``).

- ``data=inverse_sine``: Bishop's (1994) inverse problem, the classic multi-valued case.
- ``data=ring``: a 2-D target on a noisy ring whose centre and radius move with x.
- ``data=heteroscedastic``: a 1-D target whose noise grows with x.
- ``data=diabetes`` (or ``linnerud``): scikit-learn's bundled tabular sets (offline).
- ``data=file data.target_columns=[...]``: your own table (:mod:`mixtures.data.file`).

With ``standardize: true`` (the default) inputs and targets are shifted and scaled by the
training split's mean and standard deviation; the DataModule's ``x_standardizer`` and
``y_standardizer`` (:class:`~mixtures.data.standardize.Standardizer`) hold the maps, so that
models can report densities in the original units (``log p(y) = log p(z) − Σ_j log scale_j``
for ``z = (y − shift) / scale``: ``y_standardizer.log_scale_sum``).

Letters: N points, F input features, D target dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixtures.data.base import InMemoryDataModule

__all__ = [
    "HeteroscedasticDataModule",
    "InverseSineDataModule",
    "RegressionDataModule",
    "RingDataModule",
    "SklearnRegressionDataModule",
    "make_heteroscedastic",
    "make_inverse_sine",
    "make_ring",
]


def _check_size(num_samples: int, noise: float) -> None:
    if not (isinstance(num_samples, int) and num_samples >= 2):
        raise ValueError(f"data.num_samples must be an integer ≥ 2, got {num_samples!r}.")
    if not noise >= 0:
        raise ValueError(f"data.noise must be ≥ 0, got {noise}.")


def make_inverse_sine(num_samples: int = 4000, noise: float = 0.1, seed: int = 0,
                      dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Bishop's inverse sine: ``t = u + 0.3 sin(2πu) + ε`` with ``u ~ U(0, 1)`` and
    ``ε ~ U(−noise, noise)``; the *inverse* problem predicts ``u`` from ``t``, which has up to
    three branches for ``t`` in about (0.35, 0.65).

    Returns:
        inputs ``t`` ``[N, 1]`` and targets ``u`` ``[N, 1]``.
    """
    _check_size(num_samples, noise)
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num_samples, 1, generator=gen, dtype=torch.float64)
    eps = (2 * torch.rand(num_samples, 1, generator=gen, dtype=torch.float64) - 1) * noise
    t = u + 0.3 * torch.sin(2 * math.pi * u) + eps
    return t.to(dtype), u.to(dtype)


def make_ring(num_samples: int = 4000, noise: float = 0.1, seed: int = 0,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """A noisy ring in the plane parametrised by ``x ~ U(0, 1)``: centre ``(x, 0)``, radius
    ``0.5 + x``, angle ``θ ~ U(0, 2π)``, isotropic Gaussian noise of std ``noise``.

    Returns:
        inputs ``[N, 1]`` and 2-D targets ``[N, 2]``.
    """
    _check_size(num_samples, noise)
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    x = torch.rand(num_samples, 1, generator=gen, dtype=f64)
    theta = 2 * math.pi * torch.rand(num_samples, 1, generator=gen, dtype=f64)
    radius = 0.5 + x
    y = torch.cat([x + radius * torch.cos(theta), radius * torch.sin(theta)], -1)
    y = y + noise * torch.randn(num_samples, 2, generator=gen, dtype=f64)
    return x.to(dtype), y.to(dtype)


def make_heteroscedastic(num_samples: int = 4000, noise_min: float = 0.05,
                         noise_max: float = 0.5, seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """``y = sin(1.5 x) + σ(x) ε`` with ``x ~ U(−3, 3)``, ``ε ~ N(0, 1)`` and a noise level
    growing linearly from ``noise_min`` at x = −3 to ``noise_max`` at x = 3.

    Returns:
        inputs ``[N, 1]`` and targets ``[N, 1]``.
    """
    _check_size(num_samples, noise_min)
    if not 0 <= noise_min <= noise_max:
        raise ValueError(f"need 0 ≤ data.noise_min ≤ data.noise_max, got {noise_min}, "
                         f"{noise_max}.")
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    x = 6 * torch.rand(num_samples, 1, generator=gen, dtype=f64) - 3
    sigma = noise_min + (noise_max - noise_min) * (x + 3) / 6
    y = torch.sin(1.5 * x) + sigma * torch.randn(num_samples, 1, generator=gen, dtype=f64)
    return x.to(dtype), y.to(dtype)


class RegressionDataModule(InMemoryDataModule):
    """Base of the regression sets: ``load`` returns ``(x [N, F], y [N, D])``; inputs and
    targets are standardised with the training split's statistics when ``standardize``.

    Args:
        standardize: standardise inputs and targets.
        **kwargs: batch sizes, split fractions and seed of :class:`InMemoryDataModule`.
    """

    kind = "regression"

    def __init__(self, standardize: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.standardize = standardize


class InverseSineDataModule(RegressionDataModule):
    """``data=inverse_sine``; see :func:`make_inverse_sine`."""

    def __init__(self, num_samples: int = 4000, noise: float = 0.1, seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        _check_size(num_samples, noise)
        self.gen_args = dict(num_samples=num_samples, noise=noise, seed=seed)

    def load(self) -> tuple[Tensor, Tensor]:
        return make_inverse_sine(**self.gen_args)

    def _describe(self) -> str:
        return "inverse-sine data"


class RingDataModule(RegressionDataModule):
    """``data=ring``; see :func:`make_ring`."""

    def __init__(self, num_samples: int = 4000, noise: float = 0.1, seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        _check_size(num_samples, noise)
        self.gen_args = dict(num_samples=num_samples, noise=noise, seed=seed)

    def load(self) -> tuple[Tensor, Tensor]:
        return make_ring(**self.gen_args)

    def _describe(self) -> str:
        return "ring data"


class HeteroscedasticDataModule(RegressionDataModule):
    """``data=heteroscedastic``; see :func:`make_heteroscedastic`."""

    def __init__(self, num_samples: int = 4000, noise_min: float = 0.05,
                 noise_max: float = 0.5, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        _check_size(num_samples, noise_min)
        self.gen_args = dict(num_samples=num_samples, noise_min=noise_min,
                             noise_max=noise_max, seed=seed)

    def load(self) -> tuple[Tensor, Tensor]:
        return make_heteroscedastic(**self.gen_args)

    def _describe(self) -> str:
        return "heteroscedastic data"


class SklearnRegressionDataModule(RegressionDataModule):
    """A regression set bundled with scikit-learn (no download): ``diabetes`` (442 patients,
    10 inputs, 1 target: disease progression after one year) or ``linnerud`` (20 men,
    3 exercise inputs, 3 physiological targets).

    Args:
        name: ``diabetes`` or ``linnerud``.
        dtype: ``float32`` or ``float64``.
    """

    NAMES = ("diabetes", "linnerud")

    def __init__(self, name: str = "diabetes", dtype: str = "float32", **kwargs) -> None:
        super().__init__(**kwargs)
        if name not in self.NAMES:
            raise ValueError(f"data.name={name!r} is unknown; choose one of {self.NAMES}.")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"data.dtype must be float32 or float64, got {dtype!r}.")
        self.name, self.dtype = name, getattr(torch, dtype)

    def load(self) -> tuple[Tensor, Tensor]:
        try:
            from sklearn import datasets
        except ImportError as err:  # a dev extra, imported only here
            raise ImportError(
                f"data={self.name} reads scikit-learn's bundled data set: "
                "pip install scikit-learn (or pip install -e '.[dev]')."
            ) from err
        x, y = getattr(datasets, f"load_{self.name}")(return_X_y=True)
        return torch.as_tensor(x).to(self.dtype), torch.as_tensor(y).to(self.dtype)

    def _describe(self) -> str:
        return f"scikit-learn's {self.name} data"
