"""FigureCallback: epoch gating, ranks, sanity check, loggers; and a real TensorBoard run."""

from __future__ import annotations

import lightning as L
import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from mixtures.callbacks import FigureCallback, MixtureFigure
from mixtures.data import BlobsDataModule
from mixtures.models import GaussianMixtureModel

from .mock import logged, make_trainer, tensorboard


class _Probe(FigureCallback):
    """Logs one figure, tagged ``val/probe`` at the epoch, whenever :meth:`due`."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.due(trainer):
            self.log_figure(trainer, "val/probe", plt.figure(), step=trainer.current_epoch)


def _epochs_logged(every: int, max_epochs: int | None, epochs: int, **trainer_kw) -> list[int]:
    probe, trainer = _Probe(every), make_trainer(max_epochs=max_epochs, **trainer_kw)
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        probe.on_validation_epoch_end(trainer, None)
    return [step for _, step in logged(trainer)]


@pytest.mark.parametrize(("every", "max_epochs", "expected"), [
    (3, 8, [0, 3, 6, 7]),  # every third epoch, and the last
    (1, 4, [0, 1, 2, 3]),
    (5, 5, [0, 4]),
    (4, None, [0, 4]),  # no last epoch known
    (4, -1, [0, 4]),  # -1: unlimited epochs, none is the last
])
def test_logs_every_n_epochs_and_the_last(every: int, max_epochs: int | None,
                                          expected: list[int]) -> None:
    epochs = max_epochs if max_epochs is not None and max_epochs > 0 else 8
    assert _epochs_logged(every, max_epochs, epochs) == expected


def test_nothing_at_sanity_check_on_other_ranks_or_without_tensorboard(tmp_path) -> None:
    assert _epochs_logged(1, 3, 3, sanity_checking=True) == []
    assert _epochs_logged(1, 3, 3, is_global_zero=False) == []
    probe = _Probe(1)
    for loggers in ([], [CSVLogger(tmp_path)]):
        assert not probe.due(make_trainer(loggers=loggers))
        assert not probe.can_log(make_trainer(loggers=loggers))


def test_log_figure_reaches_every_tensorboard_and_closes() -> None:
    trainer = make_trainer(loggers=[tensorboard(), tensorboard()])
    fig = plt.figure()
    _Probe(1).log_figure(trainer, "val/x", fig, step=7)
    assert logged(trainer) == [("val/x", 7), ("val/x", 7)]
    assert not plt.fignum_exists(fig.number)
    broken = tensorboard()
    broken.experiment.add_figure.side_effect = RuntimeError("disk full")
    fig = plt.figure()
    with pytest.raises(RuntimeError):
        _Probe(1).log_figure(make_trainer(loggers=[broken]), "val/x", fig, step=0)
    assert not plt.fignum_exists(fig.number), "a failed write leaks the figure"


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "5"])
def test_every_n_epochs_must_be_positive(bad) -> None:
    with pytest.raises(ValueError, match="every_n_epochs must be a positive integer"):
        _Probe(bad)


class _TinyMixture(L.LightningModule):
    """Two fixed components with the hooks MixtureFigure reads."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

        self.model = GaussianMixtureModel(2, 2)
        with torch.no_grad():
            self.model._load(torch.tensor([[0.0, 0], [3, 3]]), torch.eye(2).expand(2, 2, 2),
                             torch.tensor([0.4, 0.6]))
        self.model.initialized.fill_(True)

    def training_step(self, batch, batch_idx) -> Tensor:
        return (batch[0].mean() - self.p) ** 2

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_mixture_figure_in_a_real_tensorboard_run(tmp_path) -> None:
    """Three epochs with every_n_epochs=2: figures at epochs 0 and 2 (the last), none from the
    sanity check, at the global step."""
    torch.manual_seed(0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=TensorBoardLogger(tmp_path),
                        callbacks=[MixtureFigure(every_n_epochs=2, max_points=50)],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=1,
                        log_every_n_steps=1)
    trainer.fit(_TinyMixture(), datamodule=BlobsDataModule(num_samples=60, num_components=2,
                                                           batch_size=24))
    acc = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0})
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"val/mixture", "val/weights"}
    steps = [e.step for e in acc.Images("val/mixture")]
    assert steps == [2, 6]  # 48 training points, 2 batches per epoch: after epochs 0 and 2


def test_a_run_that_stops_itself_draws_its_last_epoch() -> None:
    """should_stop set before validation (EM, the DPMM at convergence) marks the last epoch."""
    probe = _Probe(25)
    trainer = make_trainer(max_epochs=200, current_epoch=6, should_stop=False)
    assert not probe.due(trainer)
    trainer.should_stop = True
    assert probe.due(trainer)


@pytest.mark.parametrize(("every", "gap", "expected"), [
    (25, 10, [9, 29, 59]),  # validation at epochs 9, 19, …: the first at or after 0, 25, 50
    (2, 3, list(range(2, 60, 3))),  # every validation passes a multiple of 2
    (3, 1, list(range(0, 60, 3))),
])
def test_figures_follow_a_sparser_validation(every: int, gap: int, expected: list[int]) -> None:
    """With trainer.check_val_every_n_epoch = gap, a figure at the first validation at or
    after each multiple of every_n_epochs (not only when the two happen to coincide)."""
    probe, trainer = _Probe(every), make_trainer(max_epochs=100, check_val_every_n_epoch=gap)
    for epoch in range(gap - 1 if gap > 1 else 0, 60, gap):
        trainer.current_epoch = epoch
        probe.on_validation_epoch_end(trainer, None)
    assert [step for _, step in logged(trainer)] == expected


def test_the_last_figure_of_a_converged_em_run_shows_the_final_weights(tmp_path) -> None:
    """EM stops itself at convergence: the last val/mixture image is from its last epoch."""
    from mixtures.lit import GMMEM
    from mixtures.models import GaussianMixtureEM

    dm = BlobsDataModule(num_samples=600, num_components=3, separation=2.0)
    module = GMMEM(GaussianMixtureEM(3, 2), eval_every_n_epochs=10)
    trainer = L.Trainer(accelerator="cpu", max_epochs=200, logger=TensorBoardLogger(tmp_path),
                        callbacks=[MixtureFigure(every_n_epochs=25, max_points=50)],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert bool(module.model.converged.all()) and trainer.current_epoch < 25
    acc = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0})
    acc.Reload()
    # epoch 0 and the converged last epoch (EM takes no optimizer steps: both at global step 0)
    assert len(acc.Images("val/mixture")) == 2


def test_the_last_figure_of_an_early_stopped_dpmm_run_is_of_the_final_model(tmp_path) -> None:
    """A DPMM stopped by early stopping on val/nll (decided after the figure hooks): its last
    val/weights image is drawn from the final model, not from an earlier epoch."""
    from lightning.pytorch.callbacks import EarlyStopping

    from mixtures.callbacks.figures import _same
    from mixtures.lit import DPMMModule
    from mixtures.models import DPMM

    dm = BlobsDataModule(num_samples=600, num_components=3, separation=2.0)
    module = DPMMModule(DPMM(8, 2), tol=None)
    figures = MixtureFigure(every_n_epochs=1000, max_points=50)
    stop = EarlyStopping(monitor="val/nll", min_delta=1e-3, patience=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=200, logger=TensorBoardLogger(tmp_path),
                        callbacks=[figures, stop], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert 1 < trainer.current_epoch < 200  # stopped early
    assert _same(figures._drawn, module.model.mixture_parameters())
    acc = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0})
    acc.Reload()
    assert len(acc.Images("val/weights")) == 2  # epoch 0 and the final model
