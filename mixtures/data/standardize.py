"""Per-feature standardisation ``z = (x − shift) / scale``, fitted on the training split.

One :class:`Standardizer` serves inputs and targets of every DataModule. It is a
``torch.nn.Module`` whose ``shift`` and ``scale`` are buffers, so it can be built with a size,
saved in a ``state_dict`` and loaded back (e.g. by a model that reports in original units).

Densities change by the Jacobian of the map: for ``z = (y − shift) / scale``,
``log p(y) = log p(z) − Σ_j log scale_j`` (:attr:`Standardizer.log_scale_sum`).

Letters: N points, K components, D features.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Standardizer"]


class Standardizer(torch.nn.Module):
    """Affine per-feature map ``z = (x − shift) / scale``; identity until :meth:`fit`.

    Args:
        num_features: D.
        dtype: dtype of the identity buffers (:meth:`fit` takes the data's dtype).

    Example:
        >>> s = Standardizer(2).fit(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        >>> s.transform(torch.tensor([[2.0, 1.0]]))
        tensor([[0.7071, 0.0000]])
    """

    shift: Tensor
    scale: Tensor

    def __init__(self, num_features: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"Standardizer needs num_features ≥ 1, got {num_features!r}.")
        self.register_buffer("shift", torch.zeros(num_features, dtype=dtype))  # [D]
        self.register_buffer("scale", torch.ones(num_features, dtype=dtype))  # [D]

    @property
    def num_features(self) -> int:
        """D."""
        return self.shift.shape[0]

    @torch.no_grad()
    def fit(self, x: Tensor, correction: int = 1) -> Standardizer:
        """Set ``shift`` to the mean and ``scale`` to the standard deviation of ``x``.

        A zero standard deviation (a constant feature) and a single point give scale 1.

        Args:
            x: training points ``[N, D]`` (floating).
            correction: the std's degrees-of-freedom correction: 1 (the default, Bessel's
                ``N − 1``, as the DataModules have always used) or 0 (population std, as
                scikit-learn's ``StandardScaler``).

        Returns:
            self, fitted (buffers in ``x``'s dtype and device).
        """
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"Standardizer.fit expects points [N, {self.num_features}], got "
                f"{list(x.shape)}."
            )
        shift = x.mean(0)  # [D]
        if x.shape[0] > 1:
            std = x.std(0, correction=correction)
        else:
            std = torch.ones_like(shift)
        self.shift = shift.clone()
        self.scale = torch.where(std > 0, std, torch.ones_like(std))
        return self

    def _affine(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``shift``, ``scale`` ``[D]`` in ``like``'s dtype and device."""
        return self.shift.to(like), self.scale.to(like)

    def transform(self, x: Tensor) -> Tensor:
        """Standardise ``x [..., D]`` → ``z [..., D]``."""
        shift, scale = self._affine(x)
        return (x - shift) / scale

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`transform`."""
        return self.transform(x)

    def inverse(self, z: Tensor) -> Tensor:
        """Back to original units: ``z [..., D]`` → ``x = z · scale + shift [..., D]``."""
        shift, scale = self._affine(z)
        return z * scale + shift

    @property
    def log_scale_sum(self) -> Tensor:
        """``Σ_j log scale_j`` (a scalar): original-unit log-density = standardised one − this."""
        return self.scale.log().sum()

    def means_to_original(self, means: Tensor) -> Tensor:
        """Component means ``[..., K, D]`` in original units (:meth:`inverse`)."""
        return self.inverse(means)

    def covariances_to_original(self, covariances: Tensor) -> Tensor:
        """Component covariances ``[..., K, D, D]`` in original units: ``S Σ S`` with
        ``S = diag(scale)``."""
        _, s = self._affine(covariances)
        return covariances * s[:, None] * s[None, :]

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"
