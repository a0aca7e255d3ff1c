"""A mock trainer for direct callback-hook calls, and the TensorBoard logger it carries."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import MagicMock

from lightning.pytorch.loggers import TensorBoardLogger


def tensorboard() -> MagicMock:
    """A stand-in TensorBoardLogger (passes ``isinstance``) recording ``add_figure`` calls."""
    return MagicMock(spec=TensorBoardLogger)


def make_trainer(**overrides) -> SimpleNamespace:
    """The trainer attributes the callbacks read: epoch 0 of 10 on rank 0, one TensorBoard
    logger, no data module."""
    fields = dict(sanity_checking=False, is_global_zero=True, current_epoch=0, max_epochs=10,
                  global_step=0, loggers=[tensorboard()], datamodule=None)
    return SimpleNamespace(**(fields | overrides))


def logged(trainer: SimpleNamespace) -> list[tuple[str, int]]:
    """``(tag, step)`` of every figure added to the trainer's mock TensorBoard loggers."""
    out = []
    for lg in trainer.loggers:
        if isinstance(lg, MagicMock):
            for call in lg.experiment.add_figure.call_args_list:
                out.append((call.args[0], call.kwargs["global_step"]))
    return out
