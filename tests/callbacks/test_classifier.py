"""mixtures/callbacks/classifier.py: the posterior and usage figures on small inputs, and the
ClassifierFigure hooks (tags, steps, rank 0 only, the module's mode restored)."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import Tensor

from mixtures.callbacks import ClassifierFigure
from mixtures.callbacks.classifier import ood_figure, posterior_figure, usage_figure

from .mock import logged, make_trainer

GEN = torch.Generator().manual_seed(0)


def test_posterior_and_usage_figures() -> None:
    probs = torch.softmax(torch.randn(3, 10, generator=GEN), -1)
    assert isinstance(posterior_figure(torch.rand(3, 28, 28), probs, torch.tensor([1, 4, 9])),
                      Figure)
    assert isinstance(usage_figure(torch.softmax(torch.randn(10, 2, generator=GEN), -1)), Figure)
    scores = {"in": torch.randn(50, generator=GEN), "noise": torch.randn(40, generator=GEN) + 3,
              "heldout": torch.randn(7, generator=GEN)}
    fig = ood_figure(scores)
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes] == ["noise", "heldout"]
    assert isinstance(ood_figure({"in": torch.ones(3), "noise": torch.ones(3)}), Figure)


class _Classifier(torch.nn.Module):
    """Ten classes from a linear map; a Gaussian-mixture head's hooks."""

    class_log_likelihood = True

    def __init__(self, usage: bool) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(784, 10)
        self.component_usage = torch.full((10, 2), 0.5) if usage else None
        self.ood_scores = {"in": torch.zeros(4), "noise": torch.ones(4)} if usage else {}

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x).log_softmax(-1)


class _Digits:
    image_shape = (1, 28, 28)

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        assert name == "test"
        return torch.rand(12, 784, generator=GEN), torch.arange(12) % 10


@pytest.mark.parametrize("usage", [True, False])
def test_classifier_figure_hooks(usage: bool) -> None:
    module = _Classifier(usage).train()
    cb = ClassifierFigure(every_n_epochs=5, num_digits=2)
    trainer = make_trainer(datamodule=_Digits(), current_epoch=5, max_epochs=20)
    cb.on_validation_end(trainer, module)
    cb.on_test_end(trainer, module)
    tags = ["posteriors", "component_usage"] if usage else ["posteriors"]
    ood = [("test/ood_scores", 5)] if usage else []  # after testing only
    assert logged(trainer) == [(f"{p}/{t}", 5) for p in ("val", "test") for t in tags] + ood
    assert module.training, "the module's mode was not restored"
    silent = make_trainer(datamodule=_Digits(), current_epoch=3, is_global_zero=True)
    cb.on_validation_end(silent, module)  # not due
    cb.on_test_end(silent, torch.nn.Linear(784, 10))  # not a classifier
    cb.on_test_end(make_trainer(datamodule=_Digits(), is_global_zero=False), module)
    assert logged(silent) == []
