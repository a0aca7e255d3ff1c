"""mixtures/callbacks/regression.py: the conditional-density and PIT figures on small inputs,
and the RegressionFigure hook (drawn in the data's original units, through the module's
standardisers)."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import Tensor

from mixtures.callbacks import RegressionFigure
from mixtures.callbacks import regression as regression_callbacks
from mixtures.callbacks.regression import conditional_density_figure, pit_figure
from mixtures.data import InverseSineDataModule
from mixtures.data.standardize import Standardizer
from mixtures.lit.base import take_standardizers

from .mock import logged, make_trainer

GEN = torch.Generator().manual_seed(0)


class _Gaussian(torch.nn.Module):
    """A conditional density ``y | x ~ N(x₁ 1, I)`` in original units, with the hooks the
    regression figures call; it records the data the callback hands it."""

    def __init__(self, num_targets: int, num_features: int = 1) -> None:
        super().__init__()
        self.d = num_targets
        self.x_standardizer = Standardizer(num_features)  # as MDNModule holds them
        self.y_standardizer = Standardizer(num_targets)
        self.pit_histogram: Tensor | None = torch.tensor([[3, 5, 2, 0]] * num_targets)
        self.seen: list[Tensor] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def log_prob_original(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.distributions.Normal(x[..., :1], 1.0).log_prob(y).sum(-1)

    def sample_original(self, x: Tensor, n: int, generator: torch.Generator) -> Tensor:
        return x[:, :1] + torch.randn(n, x.shape[0], self.d, generator=generator)


@pytest.mark.parametrize(("features", "targets"), [(1, 1), (1, 2), (3, 1)])
def test_conditional_density_and_pit_figures(features: int, targets: int) -> None:
    x, y = torch.randn(40, features, generator=GEN), torch.randn(40, targets, generator=GEN)
    fig = conditional_density_figure(_Gaussian(targets), x, y, title="t", grid=12)
    assert isinstance(fig, Figure)
    assert isinstance(pit_figure(torch.tensor([[3, 5, 2, 0]] * targets)), Figure)


def test_regression_figure_hook_draws_in_original_units(monkeypatch) -> None:
    dm = InverseSineDataModule(num_samples=200)  # standardised; raw targets in [0, 1]
    seen = {}

    def spy(module, x, y, title=""):
        seen.update(x=x, y=y)
        return conditional_density_figure(module, x, y, title=title, grid=8)

    monkeypatch.setattr(regression_callbacks, "conditional_density_figure", spy)
    trainer = make_trainer(datamodule=dm, current_epoch=9, max_epochs=10, global_step=5)
    module = _Gaussian(1)
    take_standardizers(module, dm)  # what MDNModule.setup does
    RegressionFigure(every_n_epochs=4, max_points=50).on_validation_epoch_end(trainer, module)
    assert logged(trainer) == [("val/conditional_density", 5), ("val/pit", 5)]
    x_std, y_std = dm.split("val")
    torch.testing.assert_close(seen["y"], dm.y_standardizer.inverse(y_std[:50]))
    torch.testing.assert_close(seen["x"], dm.x_standardizer.inverse(x_std[:50]))
    assert y_std.min() < 0 and 0 <= seen["y"].min() and seen["y"].max() <= 1
