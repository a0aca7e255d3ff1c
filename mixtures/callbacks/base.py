"""The base of the TensorBoard figure callbacks: when to draw, and where the figures go.

A figure callback draws only on the global-zero rank, never during the sanity check, only when
a :class:`~lightning.pytorch.loggers.TensorBoardLogger` is attached, and during training every
``every_n_epochs`` epochs (epochs 0, n, 2n, …) and at the last epoch: ``max_epochs`` reached, or
the run asked to stop before validation (EM and the DPMM at convergence), so the last figure
shows the final weights. When the trainer validates only every m epochs
(``trainer.check_val_every_n_epoch``), a figure is drawn at the first validation at or after
each multiple of n.
"""

from __future__ import annotations

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["FigureCallback"]


class FigureCallback(L.Callback):
    """Base of the figure callbacks: :meth:`due` gates, :meth:`log_figure` logs and closes.

    Args:
        every_n_epochs: period in validation epochs (a positive integer).
    """

    def __init__(self, every_n_epochs: int = 10) -> None:
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) \
                or every_n_epochs < 1:
            raise ValueError(
                f"callbacks.*.every_n_epochs must be a positive integer, got {every_n_epochs!r}."
            )
        self.every_n_epochs = int(every_n_epochs)

    @staticmethod
    def tensorboard_loggers(trainer: L.Trainer) -> list[TensorBoardLogger]:
        """The trainer's TensorBoard loggers (possibly none)."""
        return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]

    def can_log(self, trainer: L.Trainer) -> bool:
        """Whether this process should draw at all: global rank 0, not the sanity check, and a
        TensorBoard logger attached."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return False
        return bool(self.tensorboard_loggers(trainer))

    def due(self, trainer: L.Trainer) -> bool:
        """Whether to draw after this validation epoch: :meth:`can_log`, and the epochs since
        the previous validation include a multiple of ``every_n_epochs``, or this is the last
        epoch."""
        if not self.can_log(trainer):
            return False
        epoch, max_epochs = trainer.current_epoch, trainer.max_epochs
        last = (max_epochs is not None and max_epochs > 0 and epoch + 1 >= max_epochs) \
            or bool(getattr(trainer, "should_stop", False))
        gap = getattr(trainer, "check_val_every_n_epoch", None) or 1
        n = self.every_n_epochs
        return epoch // n != (epoch - gap) // n or last

    def log_figure(self, trainer: L.Trainer, tag: str, fig: Figure, step: int) -> None:
        """Add ``fig`` under ``tag`` at ``step`` to every TensorBoard logger, then close it."""
        try:
            for lg in self.tensorboard_loggers(trainer):
                lg.experiment.add_figure(tag, fig, global_step=step, close=False)
        finally:
            plt.close(fig)

    def log_figures(self, trainer: L.Trainer, figures: dict[str, Figure], step: int) -> None:
        """:meth:`log_figure` for each ``tag → figure``."""
        for tag, fig in figures.items():
            self.log_figure(trainer, tag, fig, step)
