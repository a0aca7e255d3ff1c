"""DivergenceGuard names the parameter, gradient or loss that turned non-finite."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import Tensor

from mixtures.callbacks import DivergenceGuard


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.scale = torch.nn.Parameter(torch.ones(3))


TRAINER = SimpleNamespace(global_step=12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_parameter_is_named(bad: float) -> None:
    net = _Net()
    with torch.no_grad():
        net.scale[1] = bad
    guard = DivergenceGuard()
    with pytest.raises(FloatingPointError, match=r"parameter\(s\) 'scale' became non-finite "
                                                 r"at step 12.*learning rate"):
        guard.on_train_batch_end(TRAINER, net, {"loss": torch.tensor(1.0)}, None, 0)
    with pytest.raises(FloatingPointError, match=r"parameter\(s\) 'scale'"):
        guard.on_before_optimizer_step(TRAINER, net, None)


def test_non_finite_gradient_is_named() -> None:
    net = _Net()
    net.layer.weight.grad = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(FloatingPointError,
                       match=r"gradient of parameter\(s\) 'layer.weight'.*before the update"):
        DivergenceGuard().on_before_optimizer_step(TRAINER, net, None)


def test_non_finite_loss_with_finite_parameters() -> None:
    with pytest.raises(FloatingPointError, match=r"training loss became non-finite \(nan\)"):
        DivergenceGuard().on_train_batch_end(TRAINER, _Net(), torch.tensor(float("nan")), None, 0)


def test_finite_training_passes() -> None:
    net, guard = _Net(), DivergenceGuard()
    net.layer.weight.grad = torch.zeros(1, 2)
    guard.on_before_optimizer_step(TRAINER, net, None)
    guard.on_train_batch_end(TRAINER, net, {"loss": torch.tensor(0.5)}, None, 0)
    guard.on_train_batch_end(TRAINER, net, None, None, 0)  # a step that returned nothing


class _Diverging(L.LightningModule):
    """Its second step sets a parameter to NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def training_step(self, batch, batch_idx) -> Tensor:
        if batch_idx == 1:
            with torch.no_grad():
                self.w[0] = float("nan")
        return (batch[0] - self.w).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_stops_a_real_run_naming_the_parameter() -> None:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)
    trainer = L.Trainer(accelerator="cpu", fast_dev_run=3, callbacks=[DivergenceGuard()],
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(FloatingPointError, match=r"parameter\(s\) 'w' became non-finite at step 1"):
        trainer.fit(_Diverging(), train_dataloaders=loader)
