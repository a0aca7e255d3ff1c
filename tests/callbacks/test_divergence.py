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


def test_a_loss_seen_after_a_checked_step_is_reported_with_the_next_check() -> None:
    """After an optimizer step was checked, the batch's loss is read with the next check (one
    host synchronisation per step), and still named with its own step."""
    net, guard = _Net(), DivergenceGuard()
    guard.on_before_optimizer_step(TRAINER, net, None)
    guard.on_train_batch_end(SimpleNamespace(global_step=13), net,
                             {"loss": torch.tensor(float("inf"))}, None, 0)  # deferred
    with pytest.raises(FloatingPointError, match=r"training loss became non-finite \(inf\) at "
                                                 r"step 13"):
        guard.on_train_epoch_end(TRAINER, net)


class _Finite(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.v = torch.nn.Parameter(torch.zeros(3))

    def training_step(self, batch, batch_idx) -> Tensor:
        return (batch[0] - self.w).square().mean() + self.v.square().sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_one_host_synchronisation_per_step(monkeypatch) -> None:
    """Every parameter, gradient and loss of a step is read from the device in one transfer
    (per device): one check per optimizer step plus one per epoch end (it was one transfer per
    tensor, twice a step)."""
    import mixtures.callbacks.divergence as divergence

    calls = []
    original = divergence._finite_flags
    monkeypatch.setattr(divergence, "_finite_flags", lambda ts: calls.append(len(ts))
                        or original(ts))
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=3)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, callbacks=[DivergenceGuard()],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(_Finite(), train_dataloaders=loader)
    steps, epochs = 8, 2
    assert len(calls) == steps + epochs
    # the pre-step checks hold 2 parameters + 2 gradients (+ the previous batch's loss)
    assert calls[:2] == [4, 5]
