"""mixtures/callbacks/figures.py: the mixture and weight figures on small inputs, and the
MixtureFigure hook on a mock trainer (the tags and steps it logs, when it stays silent)."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import Tensor

from mixtures.callbacks import MixtureFigure
from mixtures.callbacks.figures import mixture_figure, weight_figure
from mixtures.data import BlobsDataModule
from mixtures.models import GaussianMixtureModel

from .mock import logged, make_trainer

GEN = torch.Generator().manual_seed(0)


def _params(k: int, d: int) -> dict[str, Tensor]:
    a = torch.randn(k, d, d, generator=GEN)
    return {"weights": torch.full((k,), 1.0 / k), "means": torch.randn(k, d, generator=GEN),
            "covariances": a @ a.transpose(-1, -2) + 0.1 * torch.eye(d)}


@pytest.mark.parametrize("d", [1, 2, 3])
def test_mixture_and_weight_figures(d: int) -> None:
    x = torch.randn(30, d, generator=GEN)
    assert isinstance(mixture_figure(x, torch.arange(30) % 3, _params(3, d), title="t"), Figure)
    assert isinstance(weight_figure(torch.tensor([0.7, 0.2, 0.1]), threshold=0.15), Figure)
    assert isinstance(weight_figure(torch.tensor([1.0])), Figure)


def test_weight_figure_equal_weights_draw_equal_bars() -> None:
    """Five equal weights: a linear axis from 0 to 1, bars of equal height 0.2 (a log axis cut
    to the data's range made them look unequal)."""
    fig = weight_figure(torch.full((5,), 0.2), threshold=0.01)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    assert ax.get_ylim() == pytest.approx((0.0, 1.0))
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([0.2] * 5)


class _Mixture(torch.nn.Module):
    """A module holding an initialised two-component mixture as its ``model``."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        super().__init__()
        self.model = GaussianMixtureModel(2, 2)
        self.model.initialize(torch.randn(50, 2, generator=GEN))


def test_mixture_figure_hook() -> None:
    dm = BlobsDataModule(num_samples=40, num_components=2)
    trainer = make_trainer(datamodule=dm, current_epoch=4, global_step=17)
    cb = MixtureFigure(every_n_epochs=2, max_points=10)
    cb.on_validation_epoch_end(trainer, _Mixture())
    assert logged(trainer) == [("val/mixture", 17), ("val/weights", 17)]
    quiet = make_trainer(datamodule=dm, current_epoch=3)
    cb.on_validation_epoch_end(quiet, _Mixture())  # not due
    cb.on_validation_epoch_end(trainer, torch.nn.Linear(2, 2))  # no mixture model
    assert logged(quiet) == [] and len(logged(trainer)) == 2


def test_final_figure_drawn_from_the_final_model() -> None:
    """A model that changed after its last figure (EM / DPMM stop themselves after the
    validation hooks) gets one more figure at the end of training, from its final
    parameters; an unchanged model is not drawn twice."""
    dm = BlobsDataModule(num_samples=40, num_components=2)
    trainer = make_trainer(datamodule=dm, current_epoch=4, global_step=17)
    cb, module = MixtureFigure(every_n_epochs=2, max_points=10), _Mixture()
    cb.on_validation_epoch_end(trainer, module)
    cb.on_train_end(trainer, module)  # unchanged since the figure
    assert logged(trainer) == [("val/mixture", 17), ("val/weights", 17)]
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(0.5)  # the model moves on after the last figure
    trainer.global_step = 18
    cb.on_train_end(trainer, module)
    assert logged(trainer)[2:] == [("val/mixture", 18), ("val/weights", 18)]
    calls = trainer.loggers[0].experiment.add_figure.call_args_list
    assert calls[-1].args[1].axes[0].get_title().startswith("final")
    fresh = make_trainer(datamodule=dm, current_epoch=3)
    MixtureFigure(every_n_epochs=2).on_train_end(fresh, _Mixture())  # never drawn: draw now
    assert [tag for tag, _ in logged(fresh)] == ["val/mixture", "val/weights"]
