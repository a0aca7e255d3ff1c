"""EarlyStopping counts evaluations: epochs whose validation skipped evaluation do not spend
patience, and the run ends on an evaluated epoch."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from mixtures.callbacks import EarlyStopping


class _EveryThird(L.LightningModule):
    """Evaluates (logs a constant val/nll) at epochs 0, 3, 6, …, as a MixtureModule with
    eval_every_n_epochs=3 does."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.evaluating = True
        self.evaluated: list[int] = []

    def training_step(self, batch, batch_idx) -> Tensor:
        return (batch[0].mean() - self.w) ** 2

    def on_validation_epoch_start(self) -> None:
        self.evaluating = self.current_epoch % 3 == 0

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        if self.evaluating and not self.trainer.sanity_checking:
            self.evaluated.append(self.current_epoch)
            self.log("val/nll", 1.0)  # never improves

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(callback) -> tuple[_EveryThird, L.Trainer]:
    x = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=8)
    module = _EveryThird()
    trainer = L.Trainer(accelerator="cpu", max_epochs=50, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    return module, trainer


def test_patience_counts_evaluations_and_the_run_ends_on_one() -> None:
    module, trainer = _fit(EarlyStopping(monitor="val/nll", patience=2))
    # best at epoch 0, no improvement at 3 and 6: stops after epoch 6, which was evaluated
    assert module.evaluated == [0, 3, 6]
    assert trainer.current_epoch - 1 == 6


def test_lightning_s_own_spends_patience_on_skipped_epochs() -> None:
    """The behaviour this subclass fixes: the stale value counts on epochs 1 and 2."""
    module, trainer = _fit(LightningEarlyStopping(monitor="val/nll", patience=2))
    assert module.evaluated == [0]
    assert trainer.current_epoch - 1 == 2


@pytest.mark.parametrize("evaluating", [True, False])
def test_modules_without_the_attribute_always_count(evaluating) -> None:
    stopper = EarlyStopping(monitor="val/nll")
    module = SimpleNamespace()
    trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), sanity_checking=False,
                              lightning_module=module)
    assert not stopper._should_skip_check(trainer)
    module.evaluating = evaluating
    assert stopper._should_skip_check(trainer) is not evaluating
